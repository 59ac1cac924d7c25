/**
 * The load loop (test/support/load.ts) on a thread of its own, so a server started in the bench's
 * own process does not share its event loop with the clients measuring it.
 */
import {Worker, isMainThread, parentPort, workerData} from 'node:worker_threads'

import {type LoadResult, runLoad} from '../test/support/load.js'

type LoadOptions = Parameters<typeof runLoad>[1]

if (!isMainThread && workerData?.loadWorker) {
  const {url, options} = workerData as {url: string; options: LoadOptions}
  parentPort!.postMessage(await runLoad(url, options))
}

/** runLoad(url, options), run on a worker thread. */
export function runLoadInWorker(url: string, options: LoadOptions): Promise<LoadResult> {
  // Workers get no loader hooks of their own: register tsx there before loading this file.
  const here = JSON.stringify(import.meta.url)
  const worker = new Worker(`import {register} from 'tsx/esm/api'; register(); await import(${here})`, {eval: true, workerData: {loadWorker: true, url, options}})
  return new Promise((resolve, reject) => {
    worker.once('message', (result: LoadResult) => {
      resolve(result)
      void worker.terminate()
    })
    worker.once('error', reject)
  })
}
