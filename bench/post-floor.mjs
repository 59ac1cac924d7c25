/**
 * The floor for the delivery benchmark: POST prepared batches to an intake one after another over
 * fetch, nothing else (no database, no encoding). What `audit-logger deliver` adds is its own cost.
 *
 *   node bench/post-floor.mjs SINK_URL BATCHES_FILE
 *
 * BATCHES_FILE holds the bodies, each preceded by its length as a 4-byte big-endian integer.
 */
import {readFileSync} from 'node:fs'

const [url, file] = process.argv.slice(2)
const data = readFileSync(file)
let offset = 0
let requests = 0
while (offset < data.length) {
  const length = data.readUInt32BE(offset)
  const body = data.subarray(offset + 4, offset + 4 + length)
  offset += 4 + length
  const response = await fetch(url, {method: 'POST', headers: {'Content-Type': 'application/x-ndjson', Authorization: 'Bearer floor'}, body})
  await response.arrayBuffer()
  if (!response.ok) throw new Error(`HTTP ${response.status}`)
  requests++
}

process.stderr.write(`${requests} requests\n`)
