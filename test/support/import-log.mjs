// `node --import ./test/support/import-log.mjs …` appends the URL of every module the process
// resolves to the file named by $IMPORT_LOG: how a test sees which code a command loaded.
import {appendFileSync} from 'node:fs'
import {register} from 'node:module'
import process from 'node:process'
import {isMainThread} from 'node:worker_threads'

export async function resolve(specifier, context, nextResolve) {
  const result = await nextResolve(specifier, context)
  appendFileSync(process.env.IMPORT_LOG, `${result.url}\n`)
  return result
}

// Loaded first on the main thread, where it registers itself; Node then runs the hooks on their own thread.
if (isMainThread) register(import.meta.url)
