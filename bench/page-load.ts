/** Benchmark 3: the status page and the JSON API under load, over ten years of records. */
import {spawn} from 'node:child_process'

import {sql} from 'kysely'

import {migrateToLatest} from '../src/lib/db/migrate.js'
import {createScratchDatabase, openTestDb} from '../test/support/db.js'
import {runLoad, tenYearsOfRecordsSql} from '../test/support/load.js'
import {percentile, table, verdict} from './support.js'
import {freePort} from '../test/support/helpers.js'

export async function pageLoad(out: (line?: string) => void, bin: string): Promise<void> {
  out('## 3. The page under load: 3,650 records, 10 connections, 10 s per route')
  const url = await createScratchDatabase('bench')
  const db = openTestDb(url)
  await migrateToLatest(db)
  await sql.raw(tenYearsOfRecordsSql()).execute(db)
  await db.destroy()

  const port = await freePort()
  const server = spawn(bin, ['serve'], {
    env: {PATH: process.env.PATH, HOME: process.env.HOME, DATABASE_URL: url, PORT: String(port), LOG_LEVEL: 'warn'},
    stdio: ['ignore', 'ignore', 'inherit'],
  })
  try {
    const base = `http://127.0.0.1:${port}`
    await ready(`${base}/healthz`)

    const rows = []
    let allOk = true
    for (const path of ['/', '/api/logs']) {
      await runLoad(`${base}${path}`, {connections: 10, durationMs: 1000, maxRequests: 5000}) // warm-up
      const result = await runLoad(`${base}${path}`, {connections: 10, durationMs: 10_000, maxRequests: 200_000})
      const rps = result.requests / result.seconds
      const p50 = percentile(result.latenciesMs, 50)
      const p99 = percentile(result.latenciesMs, 99)
      rows.push({route: path, requests: result.requests, 'req/s': Math.round(rps), 'p50 (ms)': p50.toFixed(1), 'p99 (ms)': p99.toFixed(1), errors: result.errors, 'non-2xx': result.non2xx})
      const ok = result.errors === 0 && result.non2xx === 0 && p99 < 50 && (path !== '/' || rps >= 1000)
      allOk &&= ok
    }

    // The read cache under churn: the table changing 100 times a second (far more than any real
    // deployment's heartbeats), each change sending the next requests back to the database.
    const writer = openTestDb(url)
    let writing = true
    const churn = (async () => {
      while (writing) {
        await sql`UPDATE audit_events_log SET updated_at = updated_at WHERE process_date = '2015-01-01'`.execute(writer)
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
    })()
    const churned = await runLoad(`${base}/`, {connections: 10, durationMs: 10_000, maxRequests: 200_000})
    writing = false
    await churn
    await writer.destroy()
    rows.push({
      route: '/ (table changing 100x/s)',
      requests: churned.requests,
      'req/s': Math.round(churned.requests / churned.seconds),
      'p50 (ms)': percentile(churned.latenciesMs, 50).toFixed(1),
      'p99 (ms)': percentile(churned.latenciesMs, 99).toFixed(1),
      errors: churned.errors,
      'non-2xx': churned.non2xx,
    })

    out(table(rows))
    out(verdict(allOk, 'no errors, no non-2xx, p99 under 50 ms, at least 1,000 req/s on / (the first two rows)'))
    out('     the page answers from memory until the table changes; in the last row each of the 100 changes a second sends the next requests back to the database (concurrent ones share one read)')
  } finally {
    await stop(server) // before its database is dropped
  }

  await healthFlood(out, bin, url)
}

/**
 * /healthz needs no sign-in, so anyone can flood it: the signed-in page must not slow down for
 * it (it once took the page's p50 from 0.7 ms to 437 ms). The page alone, then the page while 200
 * connections request /healthz back to back.
 */
async function healthFlood(out: (line?: string) => void, bin: string, url: string): Promise<void> {
  out()
  out('## 3b. The signed-in page while /healthz is flooded: 10 connections on /, 200 on /healthz, 5 s each')
  const port = await freePort()
  const server = spawn(bin, ['serve'], {
    env: {PATH: process.env.PATH, HOME: process.env.HOME, DATABASE_URL: url, PORT: String(port), LOG_LEVEL: 'warn', STATUS_PAGE_USERNAME: 'ops', STATUS_PAGE_PASSWORD: 'bench'},
    stdio: ['ignore', 'ignore', 'inherit'],
  })
  try {
    const base = `http://127.0.0.1:${port}`
    await ready(`${base}/healthz`)
    const headers = {authorization: `Basic ${Buffer.from('ops:bench').toString('base64')}`}
    const page = {connections: 10, durationMs: 5000, maxRequests: 100_000, headers}
    const row = (route: string, result: Awaited<ReturnType<typeof runLoad>>) => ({
      route,
      requests: result.requests,
      'req/s': Math.round(result.requests / result.seconds),
      'p50 (ms)': percentile(result.latenciesMs, 50).toFixed(1),
      'p99 (ms)': percentile(result.latenciesMs, 99).toFixed(1),
      errors: result.errors,
      'non-2xx': result.non2xx,
    })
    await runLoad(`${base}/`, {...page, durationMs: 1000}) // warm-up
    const alone = await runLoad(`${base}/`, page)
    const [flooded, health] = await Promise.all([
      runLoad(`${base}/`, page),
      runLoad(`${base}/healthz`, {connections: 200, durationMs: 5000, maxRequests: 1_000_000}),
    ])
    out(table([row('/ signed in, alone', alone), row('/ signed in, /healthz flooded', flooded), row('/healthz (200 connections)', health)]))
    out('     (shown, not judged) /healthz reads the database at most once a second, whatever the load: the flood costs the page CPU time only')
  } finally {
    await stop(server)
  }
}

async function ready(url: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const ok = await fetch(url).then((r) => r.ok, () => false)
    if (ok) return
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

async function stop(server: ReturnType<typeof spawn>): Promise<void> {
  const exited = new Promise((resolve) => server.once('exit', resolve))
  server.kill('SIGTERM')
  await exited
}
