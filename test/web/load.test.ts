/**
 * Scenario 20 as a short, bounded check: ten years of records (3,650 rows), a real `serve`
 * process, and 10 connections requesting the page and the JSON API back to back for 2 s each.
 * No request may fail or answer non-2xx, and none may wait anywhere near the pool's connection
 * timeout (5 s): a generous 2 s bound, so the check is about an exhausted pool, not speed. The
 * figures under load are the benchmark's job (npm run bench -- page-load). The page answers from
 * memory while the table is unchanged, so one more round keeps the table changing throughout:
 * then requests go back to the database and the pool is really under load.
 */
import {setTimeout as sleep} from 'node:timers/promises'

import {expect} from 'chai'
import {sql} from 'kysely'

import {migrateToLatest} from '../../src/lib/db/migrate.js'
import {cliEnv, startCli} from '../support/cli.js'
import {createScratchDatabase, describeWithServer, openTestDb} from '../support/db.js'
import {runLoad, tenYearsOfRecordsSql} from '../support/load.js'
import {freePort, waitUntil} from '../support/helpers.js'

describeWithServer('the status page under load (scenario 20, a real serve process)', function () {
  this.timeout(60_000)
  let server: ReturnType<typeof startCli>
  let base: string
  let url: string

  before(async () => {
    url = await createScratchDatabase('load')
    const db = openTestDb(url)
    try {
      await migrateToLatest(db)
      await sql.raw(tenYearsOfRecordsSql()).execute(db)
      const {rows} = await sql<{n: number}>`SELECT count(*)::int AS n FROM audit_events_log`.execute(db)
      expect(rows[0].n).to.equal(3650)
    } finally {
      await db.destroy()
    }

    const port = await freePort()
    base = `http://127.0.0.1:${port}`
    server = startCli(['serve'], cliEnv({DATABASE_URL: url, PORT: String(port), LOG_LEVEL: 'warn'}))
    const deadline = Date.now() + 20_000
    for (;;) {
      if (server.exitCode !== null) throw new Error(`serve exited ${server.exitCode}: ${(await server.result).stderr}`)
      const ok = await fetch(`${base}/api/logs`).then((r) => r.ok, () => false)
      if (ok) break
      if (Date.now() > deadline) throw new Error('serve did not start')
      await sleep(100)
    }
  })

  after(async () => {
    server?.kill('SIGTERM')
    const result = await server?.result
    expect(result?.code, result?.stderr).to.equal(0)
  })

  for (const path of ['/', '/api/logs']) {
    it(`${path}: 10 connections for 2 s, no errors, no non-2xx, no request stuck waiting for a connection`, async () => {
      const result = await runLoad(`${base}${path}`, {connections: 10, durationMs: 2000, maxRequests: 20_000})
      expect(result.requests, 'requests were made').to.be.greaterThan(10)
      expect(result.errors, 'errors').to.equal(0)
      expect(result.non2xx, 'non-2xx answers').to.equal(0)
      expect(Math.max(...result.latenciesMs), 'slowest request (ms)').to.be.below(2000)
    })
  }

  it('/ with the table changing throughout: no errors, no non-2xx, nothing stuck, and the changes show', async () => {
    const writer = openTestDb(url)
    let writing = true
    let changes = 0
    const churn = (async () => {
      while (writing) {
        await sql`UPDATE audit_events_log SET events_count = events_count + 1 WHERE process_date = '2024-12-01'`.execute(writer)
        changes++
        await sleep(20)
      }
    })()
    try {
      const result = await runLoad(`${base}/?from=2024-12-01&to=2024-12-01`, {connections: 10, durationMs: 2000, maxRequests: 20_000})
      expect(changes, 'changes made during the load').to.be.greaterThan(10)
      expect(result.errors, 'errors').to.equal(0)
      expect(result.non2xx, 'non-2xx answers').to.equal(0)
      expect(Math.max(...result.latenciesMs), 'slowest request (ms)').to.be.below(2000)
    } finally {
      writing = false
      await churn
    }

    // The page settles on the table's last state.
    const {rows} = await sql<{n: number}>`SELECT events_count AS n FROM audit_events_log WHERE process_date = '2024-12-01'`.execute(writer)
    await writer.destroy()
    const shown = async () => (await (await fetch(`${base}/?from=2024-12-01&to=2024-12-01`)).text()).includes(`<td class="num">${rows[0].n}</td>`)
    await waitUntil(`the page showing the last events_count, ${rows[0].n}`, shown, 10_000)
  })

}, 'changes the table from this process while a serve process holds the database: only a server admits both')
