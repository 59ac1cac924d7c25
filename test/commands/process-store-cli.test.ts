/** `process` and the event store through the command line: on by default, EVENT_STORE=off, retention. */
import {expect} from 'chai'
import {type Kysely, sql} from 'kysely'

import {storeStats} from '../../src/lib/db/event-queries.js'
import {ensurePartitions, eventRecord, eventStoreFor} from '../../src/lib/db/event-store.js'
import type {Database} from '../../src/lib/db/schema.js'
import type {AuditEvent as ApiEvent} from '../../src/lib/heroku/types.js'
import {addDays, todayUtc} from '../../src/lib/dates.js'
import {generateEvents} from '../fake-heroku/events.js'
import type {FakeHeroku} from '../fake-heroku/server.js'
import {runCli, startCli} from '../support/cli.js'
import {waitForRun} from '../support/helpers.js'
import {describeOnEngines, describeWithServer} from '../support/db.js'
import {useJobSuite} from '../support/job-suite.js'

describeOnEngines('process and the event store (real processes)', function (engine) {
  this.timeout(60_000)
  let fake: FakeHeroku
  let db: Kysely<Database>
  let env: NodeJS.ProcessEnv
  const day = addDays(todayUtc(), -3)

  useJobSuite((suite) => ({fake, db, env} = suite), {engine: engine.name})

  beforeEach(() => fake.setEvents(day, generateEvents(day, 40)))

  it('stores the day by default; with EVENT_STORE=off it stores nothing and the day is SUCCESS all the same', async () => {
    const off = await runCli(['process', '--date', day], {...env, EVENT_STORE: 'off'})
    expect(off.code, off.stderr).to.equal(0)
    expect((await storeStats(db)).events).to.equal(0)
    const on = await runCli(['process', '--date', day, '--force'], env)
    expect(on.code, on.stderr).to.equal(0)
    expect(await storeStats(db)).to.include({events: 40, oldestDay: day, newestDay: day})
  })

  it('a closed stdout (| head -1) does not fail a stored day: SUCCESS, saying the whole day is in the store', async () => {
    fake.setEvents(day, generateEvents(day, 3000))
    const run = startCli(['process', '--date', day, '--format', 'json'], env)
    run.stdout!.removeAllListeners('data')
    run.stdout!.once('data', () => run.stdout!.destroy())
    const result = await run.result
    expect(result.code, result.stderr).to.equal(0)
    expect(result.stderr).to.include(`stdout was closed by its reader before all were written there: the whole day is in the event store (audit-logger events --date ${day})`)
    expect((await storeStats(db)).events).to.equal(3000)
  })

  it('removes events older than EVENT_RETENTION_DAYS at the end of a run, keeping the days’ records', async () => {
    const old = addDays(todayUtc(), -400)
    await ensurePartitions(db, [old])
    const oldEvents = generateEvents(old, 5)
    await eventStoreFor(db).transaction((_trx, append) => append(oldEvents.map((e, k) => eventRecord(old, e as ApiEvent, JSON.stringify(e), k + 1))))
    await sql`INSERT INTO audit_events_log (process_date, status, events_count) VALUES (${old}, 'SUCCESS', 5)`.execute(db)
    const result = await runCli(['process', '--date', day], {...env, EVENT_RETENTION_DAYS: '365'})
    expect(result.code, result.stderr).to.equal(0)
    expect(result.stderr).to.match(new RegExp(`retention \\(365 days\\): events of days before ${addDays(todayUtc(), -365)}: .*the days' records stay`))
    expect((await storeStats(db)).oldestDay).to.equal(day)
    const kept = await sql<{n: number}>`SELECT count(*)::int AS n FROM audit_events_log WHERE process_date = ${old}`.execute(db)
    expect(kept.rows[0].n).to.equal(1)
  })
})

describeWithServer('process and the event store (real processes), its connections killed', function () {
  this.timeout(60_000)
  let fake: FakeHeroku
  let db: Kysely<Database>
  let env: NodeJS.ProcessEnv
  const day = addDays(todayUtc(), -3)

  useJobSuite((suite) => ({fake, db, env} = suite))

  it('connections killed while the day is being stored: the day is fetched again on a fresh connection and stored once', async () => {
    fake.setEvents(day, generateEvents(day, 2500))
    fake.script([{kind: 'delay', ms: 0}, {kind: 'delay', ms: 1500}], {day})
    const run = startCli(['process', '--date', day, '--format', 'json'], env)
    await waitForRun('the second page asked for', run, () => fake.requestsForDay(day).length >= 2)
    const name = new URL(process.env.TEST_DATABASE_URL!).pathname.slice(1)
    // The run's connection with a transaction open (ours has the same application name: not that one).
    const inTransaction = sql<{n: number}>`
      SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE datname = ${name} AND application_name = 'audit-logger' AND xact_start IS NOT NULL AND pid <> pg_backend_pid()`
    await waitForRun('the day’s transaction open', run, async () => (await inTransaction.execute(db)).rows[0].n === 1)
    const killed = await sql<{n: number}>`
      SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
      WHERE datname = ${name} AND application_name = 'audit-logger' AND xact_start IS NOT NULL AND pid <> pg_backend_pid()`.execute(db)
    expect(killed.rows[0].n, 'the day’s transaction was open').to.equal(1)
    const result = await run.result
    expect(result.code, result.stderr).to.equal(0)
    expect(result.stderr).to.match(new RegExp(`${day}: lost the event store's connection .*; fetching the day again on a fresh one`))
    expect(result.stdout.split('\n').filter(Boolean), 'written once').to.have.length(2500)
    expect(await storeStats(db)).to.include({events: 2500})
  })
}, 'kills the run’s connection with pg_terminate_backend while it stores the day')
