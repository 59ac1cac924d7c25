import {fileURLToPath} from 'node:url'

import {runCommand} from '@oclif/test'
import {expect} from 'chai'
import {type Kysely, sql} from 'kysely'

import {findDay} from '../../src/lib/db/audit-log-repository.js'
import type {Database} from '../../src/lib/db/schema.js'
import {yesterdayUtc} from '../../src/lib/dates.js'
import {generateEvents} from '../fake-heroku/events.js'
import type {FakeHeroku} from '../fake-heroku/server.js'
import {describeOnEngines, insertRecord, snapshot} from '../support/db.js'
import {type JobSuite, useJobSuite} from '../support/job-suite.js'
import {useEnv} from '../support/helpers.js'
import {MIGRATION_COUNT} from '../support/migrations.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const DAY = '2025-09-28'
const run = (args: string) => runCommand(args, {root: ROOT})

describeOnEngines('commands (through oclif, as a user runs them)', (engine) => {
  let fake: FakeHeroku
  let db: Kysely<Database>
  let dbVars: JobSuite['dbVars']
  let emptyDbVars: JobSuite['emptyDbVars']

  useJobSuite((suite) => ({fake, db, dbVars, emptyDbVars} = suite), {
    fake: {events: {[DAY]: generateEvents(DAY, 1200), [yesterdayUtc()]: generateEvents(yesterdayUtc(), 3)}},
    engine: engine.name,
  })

  useEnv(() => ({
    ...dbVars,
    HEROKU_API_URL: fake.url,
    HEROKU_API_TOKEN: fake.token,
    HEROKU_ACCOUNT_ID: 'acme',
    HEROKU_API_MAX_ATTEMPTS: '1',
    LOG_LEVEL: undefined,
  }))

  describe('--help', () => {
    it('lists every command with a description and an example', async () => {
      const {stdout} = await run('--help')
      for (const command of ['process', 'db init', 'db status', 'db cleanup', 'db reset']) {
        expect(stdout).to.match(new RegExp(`^ {2}${command} +\\S`, 'm'))
        expect(stdout).to.include(`$ audit-logger ${command}`)
      }

      expect(stdout).to.match(/EXIT CODES/)
      const {stdout: dbHelp} = await run('db --help')
      for (const command of ['db init', 'db status', 'db cleanup', 'db reset']) expect(dbHelp).to.include(command)
    })

    it('documents the exit codes and gives examples for process', async () => {
      const {stdout} = await run('process --help')
      expect(stdout).to.match(/Exit codes: 0/)
      expect(stdout).to.include('audit-logger process --date 2025-09-28')
    })
  })

  describe('process', () => {
    it('prints each event on stdout and a summary on stderr, exit 0', async () => {
      const {stdout, stderr, error} = await run(`process --date ${DAY}`)
      expect(error).to.equal(undefined)
      const lines = stdout.split('\n').filter(Boolean)
      expect(lines).to.have.length(1200)
      expect(lines[0]).to.match(/^created_at=\S+ actor\.email=\S* type=\S+ action=\S+ .*id=\S+$/)
      expect(stderr).to.match(new RegExp(`${DAY} SUCCESS: 1200 events in 2 pages`))
      expect(stdout, 'no diagnostics among the events').not.to.match(/SUCCESS|processing/)
    })

    it('defaults to yesterday (UTC)', async () => {
      const {stdout, error} = await run('process')
      expect(error).to.equal(undefined)
      expect(stdout.split('\n').filter(Boolean)).to.have.length(3)
      expect((await findDay(db, yesterdayUtc()))?.status).to.equal('SUCCESS')
    })

    it('writes JSON lines with --format json', async () => {
      const {stdout} = await run(`process --date ${DAY} --format json`)
      const first = JSON.parse(stdout.split('\n')[0])
      expect(first).to.deep.equal(generateEvents(DAY, 1200)[0])
    })

    it('skips a done day with exit 0 and says so', async () => {
      await run(`process --date ${DAY}`)
      const {stdout, stderr, error} = await run(`process --date ${DAY}`)
      expect(error).to.equal(undefined)
      expect(stdout).to.equal('')
      expect(stderr).to.match(/skipped: .*already SUCCESS with 1200 events; use --force/)
    })

    it('exits 1 and records FAILED when the API refuses', async () => {
      process.env.HEROKU_ACCOUNT_ID = 'no-such-account'
      const {stdout, stderr, error} = await run(`process --date ${DAY}`)
      expect(error?.oclif?.exit).to.equal(1)
      expect(stdout).to.equal('')
      expect(stderr).to.match(/FAILED .*404 not_found.*HEROKU_ACCOUNT_ID is wrong/)
      expect((await findDay(db, DAY))?.status).to.equal('FAILED')
    })

    for (const date of ['2025-02-30', '2025-13-01', 'yesterday', "''", '2999-01-01', '0000-01-01']) {
      it(`refuses --date ${date} with one line, exit 2, nothing written (scenario 18)`, async () => {
        const before = await snapshot(db)
        const {stdout, stderr, error} = await run(`process --date ${date}`)
        expect(error?.oclif?.exit).to.equal(2)
        expect(stdout).to.equal('')
        expect(stderr.trim().split('\n')).to.have.length(1)
        expect(stderr).to.match(/^Error: date .* — /)
        expect(await snapshot(db)).to.deep.equal(before)
        expect(fake.requests).to.have.length(0)
      })
    }

    it('refuses a bad --format with exit 2', async () => {
      const {error} = await run(`process --date ${DAY} --format xml`)
      expect(error?.oclif?.exit).to.equal(2)
    })

    it('refuses a missing token with one line naming the variable, exit 2', async () => {
      delete process.env.HEROKU_API_TOKEN
      const {stderr, error} = await run(`process --date ${DAY}`)
      expect(error?.oclif?.exit).to.equal(2)
      expect(stderr).to.match(/^Error: HEROKU_API_TOKEN is not set — /)
      expect(await snapshot(db)).to.deep.equal([])
    })
  })

  describe('db init', () => {
    it('applies migrations on a fresh database, then says none are pending', async () => {
      Object.assign(process.env, await emptyDbVars('init'))
      const first = await run('db init')
      expect(first.error).to.equal(undefined)
      expect(first.stderr).to.match(/applied migrations: .*create_audit_events_log.*add_claim_columns.*add_events_digest/)
      const second = await run('db init')
      expect(second.stderr).to.match(/no migrations pending/)
    })
  })

  describe('db status', () => {
    beforeEach(async () => {
      await insertRecord(db, {day: '2025-09-26', status: 'SUCCESS', events: 10, durationSeconds: 3})
      await insertRecord(db, {day: '2025-09-27', status: 'FAILED', error: 'Heroku API answered 503'})
      await insertRecord(db, {day: '2025-09-28', status: 'PROCESSING', heartbeatSecondsAgo: 5})
    })

    it('shows the latest records, the counts and the migration state', async () => {
      const {stdout, error} = await run('db status')
      expect(error).to.equal(undefined)
      expect(stdout).to.match(/Latest 3 of 3 records/)
      expect(stdout).to.match(/2025-09-26\s+SUCCESS\s+10\s+1\s+3\.0 s/)
      expect(stdout).to.match(/2025-09-27\s+FAILED.*Heroku API answered 503/)
      expect(stdout.indexOf('2025-09-28')).to.be.lessThan(stdout.indexOf('2025-09-26'))
      expect(stdout).to.match(/Counts: FAILED 1, PROCESSING 1, SUCCESS 1/)
      // Other suites may have left empty month partitions behind: their count and size may follow.
      expect(stdout).to.match(/Event store: on, keeping 365 days \(EVENT_RETENTION_DAYS\)\n {2}no events stored[;\n]/)
      expect(stdout).to.include(`Migrations: ${MIGRATION_COUNT} applied, none pending`)
    })

    it('gives the same as JSON, limited', async () => {
      const {stdout} = await run('db status --json --limit 2')
      const report = JSON.parse(stdout)
      expect(report.records.map((r: {date: string}) => r.date)).to.deep.equal(['2025-09-28', '2025-09-27'])
      expect(report.counts).to.deep.equal({FAILED: 1, PROCESSING: 1, SUCCESS: 1})
      expect(report.total).to.equal(3)
      expect(report.migrations.pending).to.deep.equal([])
      expect(report.store).to.include({enabled: true, events: 0, oldestDay: null, newestDay: null, retentionDays: 365})
    })

    it('says so when migrations are pending, without failing', async () => {
      Object.assign(process.env, await emptyDbVars('status'))
      const {stdout, error} = await run('db status')
      expect(error).to.equal(undefined)
      expect(stdout).to.match(new RegExp(`${MIGRATION_COUNT} migration\\(s\\) pending.*\\n.*db init.*\\nEvent store: on, keeping 365 days \\(EVENT_RETENTION_DAYS\\)\\n {2}not created yet: its migration is pending\\n$`))
    })
  })

  describe('db cleanup', () => {
    it('turns only stale PROCESSING records into ERROR and says how many', async () => {
      await insertRecord(db, {day: '2025-09-27', status: 'PROCESSING', heartbeatSecondsAgo: 16 * 60})
      await insertRecord(db, {day: '2025-09-28', status: 'PROCESSING', heartbeatSecondsAgo: 14 * 60})
      const {stdout, error} = await run('db cleanup')
      expect(error).to.equal(undefined)
      expect(stdout).to.match(/Cleaned up 1 stale PROCESSING record\(s\):\n {2}2025-09-27 -> ERROR \(last heartbeat \d{4}-/)
      expect((await findDay(db, '2025-09-27'))?.error_message).to.match(/no heartbeat since \d{4}-\d\d-\d\dT/)
      expect((await findDay(db, '2025-09-28'))?.status).to.equal('PROCESSING')
    })

    it('refuses a --stale-after beyond a year (or any command\'s) with one line, exit 2, changing nothing', async () => {
      await insertRecord(db, {day: DAY, status: 'PROCESSING', heartbeatSecondsAgo: 60 * 60})
      const before = await snapshot(db)
      for (const command of ['db cleanup', `db reset ${DAY} --confirm ${DAY}`, `process --date ${DAY}`]) {
        for (const minutes of ['99999999999', '525601']) {
          const {stdout, stderr, error} = await run(`${command} --stale-after ${minutes}`)
          expect(error?.oclif?.exit, `${command}: ${stderr}`).to.equal(2)
          expect(stdout).to.equal('')
          expect(stderr).to.equal(`Error: --stale-after: Expected an integer less than or equal to 525600 but received: ${minutes} — see --help\n`)
        }
      }

      expect(await snapshot(db)).to.deep.equal(before)
      expect(fake.requests).to.have.length(0)
      const {error} = await run('db cleanup --stale-after 525600')
      expect(error, 'a year is taken').to.equal(undefined)
    })

    it('honours --stale-after and --json', async () => {
      await insertRecord(db, {day: '2025-09-28', status: 'PROCESSING', heartbeatSecondsAgo: 6 * 60})
      const {stdout} = await run('db cleanup --stale-after 5 --json')
      expect(JSON.parse(stdout).cleaned.map((c: {day: string}) => c.day)).to.deep.equal(['2025-09-28'])
    })
  })

  describe('db reset', () => {
    it('needs confirming when not at a terminal', async () => {
      await insertRecord(db, {day: DAY, status: 'FAILED'})
      const {stderr, error} = await run(`db reset ${DAY}`)
      expect(error?.oclif?.exit).to.equal(2)
      // The record it would delete is shown in the message that asks for --confirm.
      expect(stderr).to.match(/would delete the record of 2025-09-28 \(FAILED, 0 events, \d+ attempt\(s\), (last heartbeat \d{4}-\S+|no heartbeat)\) and needs confirming — add --confirm 2025-09-28/)
      expect(await findDay(db, DAY)).not.to.equal(undefined)
      const mismatch = await run(`db reset ${DAY} --confirm 2025-09-27`)
      expect(mismatch.error?.oclif?.exit).to.equal(2)
    })

    it('removes the record and says what it removed', async () => {
      await insertRecord(db, {day: DAY, status: 'FAILED', attempts: 2})
      const {stdout, error} = await run(`db reset ${DAY} --confirm ${DAY}`)
      expect(error).to.equal(undefined)
      expect(stdout).to.match(/Removed the record of 2025-09-28 \(FAILED, 0 events, 2 attempt\(s\)\)/)
      expect(await findDay(db, DAY)).to.equal(undefined)
    })

    it('says when there was nothing to remove, at once: no confirmation asked for', async () => {
      const {stdout, error} = await run(`db reset ${DAY} --confirm ${DAY}`)
      expect(error).to.equal(undefined)
      expect(stdout).to.match(/No record for 2025-09-28/)
      const unasked = await run(`db reset ${DAY}`)
      expect(unasked.error).to.equal(undefined)
      expect(unasked.stdout).to.match(/No record for 2025-09-28: nothing to remove/)
    })

    it('refuses a live PROCESSING record unless --force (scenario 7)', async () => {
      await insertRecord(db, {day: DAY, status: 'PROCESSING', heartbeatSecondsAgo: 2, claimToken: crypto.randomUUID()})
      const before = await snapshot(db)
      const refused = await run(`db reset ${DAY} --confirm ${DAY}`)
      expect(refused.error?.oclif?.exit).to.equal(1)
      expect(refused.stderr).to.match(/being processed by a live run.*add --force/)
      expect(await snapshot(db)).to.deep.equal(before)
      const forced = await run(`db reset ${DAY} --confirm ${DAY} --force`)
      expect(forced.error).to.equal(undefined)
      expect(await findDay(db, DAY)).to.equal(undefined)
    })

    it('refuses year 0 with one line, exit 2, before touching the database', async () => {
      const {stdout, stderr, error} = await run('db reset 0000-01-01 --confirm 0000-01-01')
      expect(error?.oclif?.exit).to.equal(2)
      expect(stdout).to.equal('')
      expect(stderr).to.equal('Error: date "0000-01-01" is not a real calendar date: there is no year 0 — write a day from 0001-01-01 to 9999-12-31, e.g. 2025-09-28\n')
    })

    it('refuses an invalid date with exit 2', async () => {
      const {stderr, error} = await run('db reset 2025-02-30 --confirm 2025-02-30')
      expect(error?.oclif?.exit).to.equal(2)
      expect(stderr).to.match(/February 2025 has 28 days/)
    })
  })

  it('counts a test row fixture the way the table does', async () => {
    await insertRecord(db, {day: DAY, status: 'SUCCESS', events: 4})
    const count = await sql<{n: number}>`SELECT count(*)::int AS n FROM audit_events_log`.execute(db)
    expect(count.rows[0].n).to.equal(1)
  })
})
