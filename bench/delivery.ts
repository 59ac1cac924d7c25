/**
 * Benchmark 5 (`delivery`): `audit-logger deliver` sending a stored 100,000-event day to a
 * loopback intake, against the floor: a bare loop POSTing the same batches (bench/post-floor.mjs).
 * Peak RSS shows memory stays bounded whatever the backlog.
 */
import {writeFileSync} from 'node:fs'
import {createServer} from 'node:http'
import type {AddressInfo} from 'node:net'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'

import {sql} from 'kysely'

import {DEFAULT_SINK_BATCH_BYTES, DEFAULT_SINK_BATCH_EVENTS} from '../src/lib/config.js'
import {addDays, todayUtc} from '../src/lib/dates.js'
import {migrateToLatest} from '../src/lib/db/migrate.js'
import {buildBatch} from '../src/lib/delivery/sink-batch.js'
import {generateEvents} from '../test/fake-heroku/events.js'
import {createScratchDatabase, openTestDb} from '../test/support/db.js'
import {seedEvents} from '../test/support/event-seed.js'
import {measure, median, spread, table, verdict} from './support.js'
import {tmpdir} from 'node:os'

const FLOOR = fileURLToPath(new URL('post-floor.mjs', import.meta.url))
const EVENTS = Number(process.env.BENCH_DELIVERY_EVENTS ?? 100_000)

/** An intake that reads each body, counts its lines, and answers 200: as cheap as a server gets. */
async function leanIntake(): Promise<{url: string; lines: () => number; close: () => Promise<void>}> {
  let lines = 0
  const server = createServer((req, res) => {
    req.on('data', (chunk: Buffer) => {
      for (const byte of chunk) if (byte === 0x0a) lines++
    })
    req.on('end', () => res.end('{"text":"Success","code":0}'))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const {port} = server.address() as AddressInfo
  return {url: `http://127.0.0.1:${port}/bulk`, lines: () => lines, close: () => new Promise((resolve) => server.close(() => resolve()))}
}

export async function deliveryBench(out: (line?: string) => void, bin: string, runs: number): Promise<void> {
  out(`## 5. Delivery: a ${EVENTS.toLocaleString('en')}-event day to a loopback sink (ndjson, ${DEFAULT_SINK_BATCH_EVENTS} events / ${DEFAULT_SINK_BATCH_BYTES.toLocaleString('en')} bytes per request)`)
  const url = await createScratchDatabase('bench')
  const db = openTestDb(url)
  await migrateToLatest(db)
  const day = addDays(todayUtc(), -2)
  const events = generateEvents(day, EVENTS)
  for (let k = 0; k < events.length; k += 10_000) await seedEvents(db, day, JSON.stringify(events.slice(k, k + 10_000)))
  await sql`INSERT INTO audit_events_log (process_date, status, events_count) VALUES (${day}, 'SUCCESS', ${EVENTS})`.execute(db)

  // The floor's batches: the same events, in the store's order, cut the same way.
  const rows = await sql<{id: string; json: string; epoch: string; created_at: string}>`
    SELECT id, event_json AS json, extract(epoch FROM created_at)::text AS epoch, created_at::text AS created_at FROM audit_events WHERE day = ${day} ORDER BY created_at, id`.execute(db)
  const bodies: Buffer[] = []
  for (let k = 0; k < rows.rows.length; ) {
    const batch = buildBatch(rows.rows.slice(k, k + DEFAULT_SINK_BATCH_EVENTS), 'ndjson', DEFAULT_SINK_BATCH_BYTES)
    const length = Buffer.alloc(4)
    length.writeUInt32BE(batch.body.length)
    bodies.push(length, batch.body)
    k += batch.count
  }

  const file = join(tmpdir(), `audit-logger-bench-batches-${process.pid}.bin`)
  writeFileSync(file, Buffer.concat(bodies))
  const intake = await leanIntake()
  const env = {PATH: process.env.PATH, HOME: process.env.HOME, DATABASE_URL: url, SINK_URL: intake.url, LOG_LEVEL: 'warn'}
  const floor = []
  const deliver = []
  for (let i = 0; i < runs; i++) {
    floor.push(await measure(process.execPath, [FLOOR, intake.url, file], env))
    await sql`DELETE FROM audit_sinks`.execute(db)
    const before = intake.lines()
    const run = await measure(bin, ['deliver'], env)
    if (run.code !== 0 || intake.lines() - before !== EVENTS) throw new Error(`deliver sent ${intake.lines() - before} of ${EVENTS} events (exit ${run.code})`)
    deliver.push(run)
  }

  const floorSeconds = median(floor.map((r) => r.seconds))
  const deliverSeconds = median(deliver.map((r) => r.seconds))
  out(
    table([
      {run: 'floor: POST the same batches (node, fetch)', 'median (s)': spread(floor.map((r) => r.seconds)), 'x floor': '1.00', 'peak RSS (MB)': spread(floor.map((r) => r.maxRssMb), 0)},
      {run: 'audit-logger deliver', 'median (s)': spread(deliver.map((r) => r.seconds)), 'x floor': (deliverSeconds / floorSeconds).toFixed(2), 'peak RSS (MB)': spread(deliver.map((r) => r.maxRssMb), 0)},
    ]),
  )
  out(verdict(deliverSeconds <= 2 * floorSeconds, `delivery within 2x the bare POST loop (${(deliverSeconds / floorSeconds).toFixed(2)}x, ${bodies.length / 2} requests)`))
  await intake.close()
  await db.destroy()
}
