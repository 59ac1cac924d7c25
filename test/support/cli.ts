/** Runs the built CLI (bin/run.js) as a real process, the way Heroku Scheduler does. */
import {type ChildProcess, spawn} from 'node:child_process'
import {mkdtempSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'

import {expect} from 'chai'

export const BIN = fileURLToPath(new URL('../../bin/run.js', import.meta.url))

// A working directory without a .env, so a developer's own .env never leaks into a test.
const CWD = mkdtempSync(join(tmpdir(), 'audit-logger-test-'))

export interface CliResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/**
 * The environment of a run: only what is given, plus PATH and HOME, and the run's stand-in for
 * the default embedded data directory (root-hooks.ts), so a run without DATABASE_URL never
 * touches the developer's own.
 */
export function cliEnv(vars: Record<string, string | undefined>): NodeJS.ProcessEnv {
  return {PATH: process.env.PATH, HOME: process.env.HOME, NO_COLOR: '1', AUDIT_LOGGER_DATA_DIR: process.env.AUDIT_LOGGER_DATA_DIR, ...vars}
}

export function startCli(args: string[], env: NodeJS.ProcessEnv): ChildProcess & {result: Promise<CliResult>} {
  const child = spawn(process.execPath, [BIN, ...args], {cwd: CWD, env, stdio: ['ignore', 'pipe', 'pipe']})
  let stdout = ''
  let stderr = ''
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
  const result = new Promise<CliResult>((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (code, signal) => resolve({code, signal, stdout, stderr}))
  })
  return Object.assign(child, {result})
}

export function runCli(args: string[], env: NodeJS.ProcessEnv): Promise<CliResult> {
  return startCli(args, env).result
}

/** Runs the CLI and closes its stdout, as `| head -1` does, once the first bytes arrive. */
export async function runAndCloseStdout(args: string[], env: NodeJS.ProcessEnv): Promise<CliResult & {firstChunk: string}> {
  const run = startCli(args, env)
  let firstChunk = ''
  run.stdout!.removeAllListeners('data')
  run.stdout!.once('data', (chunk: Buffer | string) => {
    firstChunk = chunk.toString()
    run.stdout!.destroy()
  })
  const result = await run.result
  return {...result, firstChunk}
}

/** A run that ended by itself: no signal, no unhandled error, no EPIPE crash, no stack trace. */
export function expectNoCrash(result: CliResult): void {
  expect(result.signal).to.equal(null)
  expect(result.stderr).not.to.match(/unhandled|Unhandled 'error' event|triggerUncaughtException|write EPIPE/i)
  expect(result.stderr, 'no stack trace').not.to.match(/^\s+at .+:\d+:\d+\)?$/m)
}
