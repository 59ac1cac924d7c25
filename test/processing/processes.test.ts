/**
 * Races, crashes and faults with real processes (bin/run.js), a real PostgreSQL and the loopback
 * fake of Heroku: what Heroku Scheduler and one-off dynos actually do.
 */
import {setTimeout as sleep} from 'node:timers/promises'

import {expect} from 'chai'
import {type Kysely, sql} from 'kysely'

import {findDay} from '../../src/lib/db/audit-log-repository.js'
import type {Database} from '../../src/lib/db/schema.js'
import {generateEvents} from '../fake-heroku/events.js'
import type {FakeHeroku} from '../fake-heroku/server.js'
import {runCli, startCli} from '../support/cli.js'
import {createScratchDatabase, describeWithServer, openTestDb} from '../support/db.js'
import {useJobSuite} from '../support/job-suite.js'
import {waitForRun} from '../support/helpers.js'

const DAY = '2025-06-15'

describeWithServer('real processes', function () {
  this.timeout(60_000)
  let fake: FakeHeroku
  let db: Kysely<Database>
  let env: NodeJS.ProcessEnv

  useJobSuite((suite) => ({fake, db, env} = suite), {fake: {events: {[DAY]: generateEvents(DAY, 2500)}}})

  it('scenario 1: 20 runs of one date on a fresh database: exactly one fetches it, all exit 0', async () => {
    const fresh = await createScratchDatabase('race')
    // The winner's first page is slow, so the others arrive while it holds the claim.
    fake.script([{kind: 'delay', ms: 2500}], {day: DAY})
    const runs = Array.from({length: 20}, () => startCli(['process', '--date', DAY], {...env, DATABASE_URL: fresh}))
    const results = await Promise.all(runs.map((r) => r.result))

    for (const result of results) expect(result.code, result.stderr).to.equal(0)
    const writers = results.filter((r) => r.stdout.length > 0)
    expect(writers).to.have.length(1)
    expect(writers[0].stdout.split('\n').filter(Boolean)).to.have.length(2500)
    expect(fake.requestsForDay(DAY), 'one day of requests: 3 pages').to.have.length(3)
    for (const other of results.filter((r) => r.stdout.length === 0)) {
      expect(other.stderr).to.match(/being processed by another run|already SUCCESS/)
    }

    const freshDb = openTestDb(fresh)
    try {
      const rows = await freshDb.selectFrom('audit_events_log').selectAll().execute()
      expect(rows).to.have.length(1)
      expect(rows[0]).to.include({status: 'SUCCESS', events_count: 2500, attempts: 1})
    } finally {
      await freshDb.destroy()
    }
  })

  describe('scenarios 3 and 4: kill -9 mid-fetch, then recovery', () => {
    async function killMidFetch() {
      fake.script([{kind: 'hang'}], {day: DAY})
      const run = startCli(['process', '--date', DAY], env)
      await waitForRun('the request and the PROCESSING row', run, async () =>
        fake.requestsForDay(DAY).length > 0 && (await findDay(db, DAY))?.status === 'PROCESSING')
      run.kill('SIGKILL')
      const result = await run.result
      expect(result.signal).to.equal('SIGKILL')
      return result
    }

    it('leaves the row PROCESSING, never SUCCESS, and writes no event', async () => {
      const result = await killMidFetch()
      expect(result.stdout).to.equal('')
      await sleep(200)
      expect((await findDay(db, DAY))?.status).to.equal('PROCESSING')
    })

    it('a later run takes over the stale claim and ends SUCCESS, attempt counted', async () => {
      await killMidFetch()
      // While the heartbeat is fresh the day is left alone.
      const early = await runCli(['process', '--date', DAY], env)
      expect(early.code).to.equal(0)
      expect(early.stderr).to.match(/being processed by another run/)

      await sql`UPDATE audit_events_log SET heartbeat_at = now() - interval '16 minutes'`.execute(db)
      const later = await runCli(['process', '--date', DAY], env)
      expect(later.code, later.stderr).to.equal(0)
      expect(later.stderr).to.match(/took over a PROCESSING record \(attempt 2\)/)
      expect(later.stdout.split('\n').filter(Boolean)).to.have.length(2500)
      expect(await findDay(db, DAY)).to.include({status: 'SUCCESS', attempts: 2, events_count: 2500})
    })

    it('db cleanup turns the dead run into ERROR, naming its last heartbeat', async () => {
      await killMidFetch()
      await sql`UPDATE audit_events_log SET heartbeat_at = timestamptz '2025-06-16T03:04:05Z'`.execute(db)
      const cleanup = await runCli(['db', 'cleanup'], env)
      expect(cleanup.code).to.equal(0)
      expect(cleanup.stdout).to.match(/Cleaned up 1 stale PROCESSING record/)
      const row = await findDay(db, DAY)
      expect(row?.status).to.equal('ERROR')
      expect(row?.error_message).to.include('2025-06-16T03:04:05Z')
    })
  })

  it('scenario 7: db reset refuses a live run, then --force clears it and the old run hits the fence', async () => {
    // Long enough for the two resets below to run first even on a busy machine.
    fake.script([{kind: 'delay', ms: 8000}], {day: DAY})
    const old = startCli(['process', '--date', DAY], env)
    await waitForRun('the PROCESSING row', old, async () => (await findDay(db, DAY))?.status === 'PROCESSING')

    const refused = await runCli(['db', 'reset', DAY, '--confirm', DAY], env)
    expect(refused.code).to.equal(1)
    expect(refused.stderr).to.match(/live run/)
    expect((await findDay(db, DAY))?.status).to.equal('PROCESSING')

    const forced = await runCli(['db', 'reset', DAY, '--confirm', DAY, '--force'], env)
    expect(forced.code, forced.stderr).to.equal(0)
    const result = await old.result
    expect(result.code).to.equal(1)
    expect(result.stderr).to.match(/lost the claim/)
    expect(result.stdout, 'a run that lost its claim writes no events').to.equal('')
    expect(await findDay(db, DAY)).to.equal(undefined)
  })

  it('scenario 9: an unreachable database fails within seconds, exit 2, one line, no password', async () => {
    const started = Date.now()
    const result = await runCli(['process', '--date', DAY], {...env, DATABASE_URL: 'postgres://audit:Sentinel-DB-Pass-9@127.0.0.1:1/audit'})
    expect(result.code).to.equal(2)
    expect(Date.now() - started).to.be.lessThan(15_000)
    expect(result.stderr.trim().split('\n')).to.have.length(1)
    expect(result.stderr).to.match(/cannot reach the database at 127\.0\.0\.1:1\/audit \(ECONNREFUSED\)/)
    expect(result.stderr + result.stdout).not.to.include('Sentinel-DB-Pass-9')
    expect(fake.requests).to.have.length(0)
  })

  it('exits 2 for a missing variable, with one line and no stack trace', async () => {
    const result = await runCli(['process', '--date', DAY], {...env, HEROKU_ACCOUNT_ID: ''})
    expect(result.code).to.equal(2)
    expect(result.stderr).to.match(/^Error: HEROKU_ACCOUNT_ID is not set — .+\n$/)
    expect(result.stderr).not.to.match(/at .*\.js:\d+/)
  })
}, 'starts bin/run.js processes that share the database')
