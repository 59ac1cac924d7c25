/**
 * `process --from/--to`, `--catch-up`, `--dry-run`, `--output-dir` and the gaps in `db status`,
 * through oclif as a user runs them, on each engine and against the loopback fake of Heroku.
 */
import {existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {gunzipSync} from 'node:zlib'

import {runCommand} from '@oclif/test'
import {expect} from 'chai'
import {type Kysely, sql} from 'kysely'

import {findDay} from '../../src/lib/db/audit-log-repository.js'
import type {Database} from '../../src/lib/db/schema.js'
import {addDays, daysBetween, todayUtc, yesterdayUtc} from '../../src/lib/dates.js'
import {eventsDigest} from '../../src/lib/processing/events-digest.js'
import {generateEvents} from '../fake-heroku/events.js'
import type {FakeHeroku} from '../fake-heroku/server.js'
import {clearLog, describeOnEngines, insertRecord, openTestDb, snapshot} from '../support/db.js'
import {type JobSuite, openSuiteDatabase, useJobSuite} from '../support/job-suite.js'
import {useEnv} from '../support/helpers.js'
import {MIGRATION_COUNT} from '../support/migrations.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const run = (args: string) => runCommand(args, {root: ROOT})

const lines = (text: string) => text.split('\n').filter(Boolean)

describeOnEngines('process over many days (through oclif)', (engine) => {
  let fake: FakeHeroku
  let db: Kysely<Database>
  let dbVars: JobSuite['dbVars']
  let emptyDbVars: JobSuite['emptyDbVars']

  useJobSuite((suite) => ({fake, db, dbVars, emptyDbVars} = suite), {rateLimitRemaining: 4500, engine: engine.name})

  useEnv(() => ({
    ...dbVars,
    HEROKU_API_URL: fake.url,
    HEROKU_API_TOKEN: fake.token,
    HEROKU_ACCOUNT_ID: 'acme',
    HEROKU_API_MAX_ATTEMPTS: '1',
    LOG_LEVEL: undefined,
    CATCH_UP_DAYS: undefined,
    RATE_LIMIT_RESERVE: undefined,
    OUTPUT_DIR: undefined,
    // These tests are about the days; settle and the archives have suites of their own (test/completeness).
    SETTLE_HOURS: 'off',
    CATCH_UP_ARCHIVES: 'off',
  }))

  describe('usage errors: exit 2, nothing claimed, nothing fetched', () => {
    const yesterday = yesterdayUtc()
    const cases: Array<[string, RegExp | undefined]> = [
      ['process --from 2025-09-01', undefined],
      ['process --to 2025-09-01', undefined],
      ['process --date 2025-09-01 --from 2025-09-01 --to 2025-09-02', undefined],
      ['process --catch-up --date 2025-09-01', undefined],
      ['process --catch-up --from 2025-09-01 --to 2025-09-02', undefined],
      ['process --catch-up --force', undefined],
      ['process --days 5', undefined],
      ['process --catch-up --days 0', undefined],
      ['process --catch-up --days 91', undefined],
      ['process --from 2025-09-10 --to 2025-09-01', /^Error: --from 2025-09-10 is after --to 2025-09-01 — swap them: --from 2025-09-01 --to 2025-09-10\n$/],
      ['process --from 2020-01-01 --to 2021-06-01', /^Error: the range 2020-01-01\.\.2021-06-01 has 518 days, more than the 366 one run takes — split it/],
      ['process --from 2025-02-30 --to 2025-03-01', /^Error: --from "2025-02-30" is not a real calendar date: February 2025 has 28 days/],
      ['process --from 0000-12-30 --to 0001-01-02', /^Error: --from "0000-12-30" is not a real calendar date: there is no year 0 — write a day from 0001-01-01 to 9999-12-31, e.g. 2025-09-28\n$/],
      ['process --from 2025-09-01 --to 2025-09-02 --stale-after 99999999999', /^Error: --stale-after: Expected an integer less than or equal to 525600 but received: 99999999999 — see --help\n$/],
      ['process --catch-up --days 91', /^Error: --days: Expected an integer less than or equal to 90 but received: 91 — see --help\n$/],
      [`process --from ${yesterday} --to ${todayUtc()}`, /^Error: --to \d{4}-\d\d-\d\d is today \(UTC\): its events are not all in yet — /],
    ]
    for (const [args, message] of cases) {
      it(args, async () => {
        const {stdout, stderr, error} = await run(args)
        expect(error?.oclif?.exit, stderr).to.equal(2)
        expect(stdout).to.equal('')
        if (message) expect(stderr).to.match(message)
        expect(await snapshot(db)).to.deep.equal([])
        expect(fake.requests).to.have.length(0)
      })
    }

    it('refuses a malformed CATCH_UP_DAYS or RATE_LIMIT_RESERVE, naming it', async () => {
      process.env.CATCH_UP_DAYS = 'a week'
      const days = await run('process --catch-up')
      expect(days.error?.oclif?.exit).to.equal(2)
      expect(days.stderr).to.match(/^Error: CATCH_UP_DAYS "a week" is not a whole number from 1 to 90 — /)
      delete process.env.CATCH_UP_DAYS
      process.env.RATE_LIMIT_RESERVE = '9000'
      const reserve = await run('process --from 2025-09-01 --to 2025-09-02')
      expect(reserve.error?.oclif?.exit).to.equal(2)
      expect(reserve.stderr).to.match(/RATE_LIMIT_RESERVE "9000" is not a whole number from 0 to 4500/)
      expect(fake.requests).to.have.length(0)
    })

    it('refuses an output directory it cannot write, before claiming anything', async () => {
      const notADir = join(mkdtempSync(join(tmpdir(), 'audit-logger-')), 'a-file')
      writeFileSync(notADir, 'x')
      const {stderr, error} = await run(`process --from 2025-09-01 --to 2025-09-02 --output-dir ${notADir}`)
      expect(error?.oclif?.exit).to.equal(2)
      expect(stderr).to.match(/^Error: cannot write to the output directory .*a-file: EEXIST — check --output-dir/)
      expect(await snapshot(db)).to.deep.equal([])
      expect(fake.requests).to.have.length(0)
    })
  })

  describe('--from/--to', () => {
    it('processes every day oldest first across a leap day, events on stdout, a table on stderr', async () => {
      const days = ['2024-02-28', '2024-02-29', '2024-03-01']
      for (const [i, day] of days.entries()) fake.setEvents(day, generateEvents(day, i + 1))
      const {stdout, stderr, error} = await run('process --from 2024-02-28 --to 2024-03-01 --format json')
      expect(error).to.equal(undefined)
      expect(lines(stdout).map((l) => (JSON.parse(l) as {id: string}).id)).to.deep.equal(days.flatMap((d, i) => generateEvents(d, i + 1).map((e) => e.id)))
      expect(fake.requests.map((r) => r.day)).to.deep.equal(days)
      expect(stderr).to.match(/DATE +OUTCOME +EVENTS +PAGES +DURATION +NOTE/)
      expect(stderr).to.match(/2024-02-29 +SUCCESS +2 +1 /)
      expect(stderr).to.match(/3 day\(s\): 3 SUCCESS\./)
      for (const day of days) expect((await findDay(db, day))?.status).to.equal('SUCCESS')
    })

    it('crosses a year end, skips done days, and exits 1 when one day fails while the others go on', async () => {
      await insertRecord(db, {day: '2024-12-30', status: 'SUCCESS', events: 4})
      fake.script([{kind: 'status', status: 503}], {day: '2024-12-31'})
      const {stderr, error} = await run('process --from 2024-12-30 --to 2025-01-02')
      expect(error?.oclif?.exit).to.equal(1)
      expect(fake.requests.map((r) => r.day)).to.deep.equal(['2024-12-31', '2025-01-01', '2025-01-02'])
      expect(stderr).to.match(/2024-12-30 +skipped \(done\)/)
      expect(stderr).to.match(/2024-12-31 +FAILED .*503/)
      expect(stderr).to.match(/4 day\(s\): 1 skipped \(done\), 1 FAILED, 2 SUCCESS\./)
      expect((await findDay(db, '2025-01-02'))?.status).to.equal('SUCCESS')
    })

    it('stops for the rate budget (RATE_LIMIT_RESERVE), says when to run again, exit 0', async () => {
      process.env.RATE_LIMIT_RESERVE = '500'
      fake.setRateLimitRemaining(503)
      const {stderr, error} = await run('process --from 2025-08-01 --to 2025-08-05')
      expect(error, stderr).to.equal(undefined)
      expect(fake.requests.map((r) => r.day)).to.deep.equal(['2025-08-01', '2025-08-02', '2025-08-03', '2025-08-04'])
      expect(await findDay(db, '2025-08-05')).to.equal(undefined)
      expect(stderr).to.match(/2025-08-05 +not started/)
      expect(stderr).to.include('RateLimit-Remaining 499 is below the reserve of 500, so 1 day(s) were not started')
      expect(stderr).to.include('Run again in about 1 minute(s): audit-logger process --from 2025-08-05 --to 2025-08-05')
    })

    it('stops at the first day the API refuses the token (401): one line saying what to fix, the rest not started, exit 1', async () => {
      process.env.HEROKU_API_TOKEN = 'HRKU-not-the-right-token-000000000000000000'
      const {stderr, error} = await run('process --from 2025-08-01 --to 2025-08-05')
      expect(error?.oclif?.exit).to.equal(1)
      expect(fake.requests, 'one request in all').to.have.length(1)
      expect(await snapshot(db)).to.have.length(1)
      expect((await findDay(db, '2025-08-01'))?.status).to.equal('FAILED')
      expect(stderr).to.match(/2025-08-05 +not started/)
      expect(stderr.match(/^Stopped: .*$/gm)).to.deep.equal([
        'Stopped: Heroku API answered 401 unauthorized: the API token is missing, invalid or expired: set HEROKU_API_TOKEN to a valid token. ' +
          'That is about the account, not 2025-08-01: every other day would get the same answer, so 4 day(s) were not started (left without a record). ' +
          'Fix it, then run again: audit-logger process --from 2025-08-01 --to 2025-08-05',
      ])
    })

    it('writes each SUCCESS day to OUTPUT_DIR (or --output-dir), gzipped JSON lines', async () => {
      const envDir = mkdtempSync(join(tmpdir(), 'audit-logger-env-'))
      const flagDir = mkdtempSync(join(tmpdir(), 'audit-logger-flag-'))
      fake.setEvents('2025-08-02', generateEvents('2025-08-02', 7))
      process.env.OUTPUT_DIR = envDir
      const {error} = await run(`process --from 2025-08-01 --to 2025-08-02 --output-dir ${flagDir}`)
      expect(error).to.equal(undefined)
      expect(readdirSync(envDir), 'the flag wins').to.deep.equal([])
      expect(readdirSync(flagDir).toSorted()).to.deep.equal(['2025-08-01.ndjson.gz', '2025-08-02.ndjson.gz'])
      const events = lines(gunzipSync(readFileSync(join(flagDir, '2025-08-02.ndjson.gz'))).toString()).map((l) => JSON.parse(l) as {id: string})
      expect(events).to.deep.equal(generateEvents('2025-08-02', 7))
      expect(gunzipSync(readFileSync(join(flagDir, '2025-08-01.ndjson.gz'))).toString()).to.equal('')

      const byEnv = await run('process --date 2025-08-03')
      expect(byEnv.error).to.equal(undefined)
      expect(readdirSync(envDir)).to.deep.equal(['2025-08-03.ndjson.gz'])
      expect(byEnv.stderr).to.include(`wrote ${join(envDir, '2025-08-03.ndjson.gz')}`)
    })
  })

  describe('--catch-up', () => {
    it('fetches yesterday and the missing, FAILED, ERROR and abandoned days of the last 7; leaves done and live ones alone', async () => {
      const yesterday = yesterdayUtc()
      const [d1, d2, d3, d4, d5, d6] = daysBetween(addDays(yesterday, -6), addDays(yesterday, -1))
      await insertRecord(db, {day: d1, status: 'SUCCESS', events: 3})
      await insertRecord(db, {day: d2, status: 'FAILED', error: 'outage'})
      await insertRecord(db, {day: d3, status: 'ERROR', error: 'bad body'})
      await insertRecord(db, {day: d4, status: 'PROCESSING', heartbeatSecondsAgo: 5, claimToken: crypto.randomUUID()})
      await insertRecord(db, {day: d5, status: 'PROCESSING', heartbeatSecondsAgo: 30 * 60, claimToken: crypto.randomUUID()})
      // Outside the window: left alone even though it failed.
      await insertRecord(db, {day: addDays(yesterday, -7), status: 'FAILED'})
      for (const day of [d2, d6, yesterday]) fake.setEvents(day, generateEvents(day, 2))
      const live = await findDay(db, d4)

      const {stdout, stderr, error} = await run('process --catch-up')
      expect(error, stderr).to.equal(undefined)
      expect(fake.requests.map((r) => r.day)).to.deep.equal([d2, d3, d5, d6, yesterday])
      expect(lines(stdout)).to.have.length(6)
      expect(stderr).to.match(/catch-up over .*: 5 day\(s\) to process; 2 other day\(s\) are SUCCESS or held by a live run and are left alone/)
      expect(stderr).to.match(/5 day\(s\): 5 SUCCESS\./)
      for (const day of [d2, d3, d5, d6, yesterday]) expect((await findDay(db, day))?.status, day).to.equal('SUCCESS')
      expect(await findDay(db, d1)).to.include({status: 'SUCCESS', events_count: 3, attempts: 1})
      expect(await findDay(db, d4), 'the live run is untouched').to.deep.equal(live)
      expect((await findDay(db, addDays(yesterday, -7)))?.status).to.equal('FAILED')
    })

    it('looks back --days, or CATCH_UP_DAYS, days', async () => {
      const yesterday = yesterdayUtc()
      const two = await run('process --catch-up --days 2')
      expect(two.error).to.equal(undefined)
      expect(fake.requests.map((r) => r.day)).to.deep.equal([addDays(yesterday, -1), yesterday])
      await clearLog(db)
      fake.reset()
      process.env.CATCH_UP_DAYS = '3'
      await run('process --catch-up')
      expect(fake.requests.map((r) => r.day)).to.deep.equal([addDays(yesterday, -2), addDays(yesterday, -1), yesterday])
    })

    it('says there is nothing to do when every day is done, and fetches nothing', async () => {
      for (const day of daysBetween(addDays(yesterdayUtc(), -1), yesterdayUtc())) await insertRecord(db, {day, status: 'SUCCESS'})
      const {stderr, error} = await run('process --catch-up --days 2')
      expect(error).to.equal(undefined)
      expect(stderr).to.match(/nothing to catch up/)
      expect(fake.requests).to.have.length(0)
    })
  })

  describe('--dry-run', () => {
    it('prints the catch-up plan with reasons and the request count, touching neither the API nor the table', async () => {
      const yesterday = yesterdayUtc()
      const [d1, d2, d3] = daysBetween(addDays(yesterday, -3), addDays(yesterday, -1))
      await insertRecord(db, {day: d1, status: 'SUCCESS', events: 1200})
      await insertRecord(db, {day: d2, status: 'FAILED'})
      await insertRecord(db, {day: d3, status: 'PROCESSING', heartbeatSecondsAgo: 5})
      const before = await snapshot(db)
      const {stdout, error} = await run('process --catch-up --days 4 --dry-run')
      expect(error).to.equal(undefined)
      expect(stdout).to.match(/^Dry run — catch-up over .*: 2 of 4 day\(s\) would be fetched\. Nothing was fetched or recorded\./)
      expect(stdout).to.match(new RegExp(`${d1}  SUCCESS +skip: already SUCCESS \\(1200 events\\)`))
      expect(stdout).to.match(new RegExp(`${d2}  FAILED +fetch: retry the FAILED day`))
      expect(stdout).to.match(new RegExp(`${d3}  PROCESSING +skip: held by a live run`))
      expect(stdout).to.match(new RegExp(`${yesterday}  MISSING +fetch: no record yet`))
      expect(stdout).to.match(/API requests: at least 2 \(one per day\); about 4 if each day is as busy as the busiest recorded day \(1200 events; pages of 1000\)/)
      expect(fake.requests).to.have.length(0)
      expect(await snapshot(db)).to.deep.equal(before)
    })

    it('works for a range and a single date, forced or not', async () => {
      await insertRecord(db, {day: '2025-08-02', status: 'SUCCESS', events: 10})
      const before = await snapshot(db)
      const range = await run('process --from 2025-08-01 --to 2025-08-03 --dry-run --force')
      expect(range.stdout).to.match(/3 of 3 day\(s\) would be fetched/)
      expect(range.stdout).to.match(/2025-08-02 {2}SUCCESS +fetch: forced: fetch again \(had 10 events\)/)
      const single = await run('process --date 2025-08-02 --dry-run')
      expect(single.stdout).to.match(/Dry run — 2025-08-02: 0 of 1 day\(s\) would be fetched/)
      expect(single.stdout).to.match(/API requests: none\./)
      expect(fake.requests).to.have.length(0)
      expect(await snapshot(db)).to.deep.equal(before)
    })

    it('on a database never migrated: plans every day as missing, says so, and creates nothing', async () => {
      const fresh = await emptyDbVars('dryrun')
      Object.assign(process.env, fresh)
      const {stdout, error} = await run('process --from 2025-08-01 --to 2025-08-02 --dry-run')
      expect(error).to.equal(undefined)
      expect(stdout).to.include(`Note: the database has ${MIGRATION_COUNT} pending migration(s), so its records were not read: every day is planned as if it had none`)
      expect(stdout).to.match(/2025-08-01 {2}MISSING +fetch/)
      if (fresh.DATABASE_URL) {
        const freshDb = openTestDb(fresh.DATABASE_URL)
        try {
          const tables = await sql<{n: number}>`SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public'`.execute(freshDb)
          expect(tables.rows[0].n, 'no table created, not even kysely_migration').to.equal(0)
        } finally {
          await freshDb.destroy()
        }
      } else {
        expect(existsSync(fresh.AUDIT_LOGGER_DATA_DIR), 'no data directory created').to.equal(false)
      }

      expect(fake.requests).to.have.length(0)
    })
  })

  describe('the digest', () => {
    it('is stored with each SUCCESS and shown by process and db status (shortened) and db status --json (in full)', async () => {
      fake.setEvents('2025-08-01', generateEvents('2025-08-01', 5))
      const digest = eventsDigest(generateEvents('2025-08-01', 5).map((e) => e.id))
      const processed = await run('process --date 2025-08-01')
      expect(processed.stderr).to.include(`2025-08-01 SUCCESS: 5 events in 1 page`)
      expect(processed.stderr).to.include(`digest ${digest.slice(0, 12)}`)
      expect((await findDay(db, '2025-08-01'))?.events_digest).to.equal(digest)
      const status = await run('db status')
      expect(status.stdout).to.match(new RegExp(`2025-08-01\\s+SUCCESS\\s+5\\s+1\\s+\\S+ s\\s+${digest.slice(0, 12)}(\\s|$)`, 'm'))
      const json = JSON.parse((await run('db status --json')).stdout) as {records: Array<{date: string; digest: string | null}>}
      expect(json.records[0]).to.include({date: '2025-08-01', digest})
    })
  })
})

describeOnEngines('db status: missing days', (engine) => {
  let db: Kysely<Database>
  let dbVars: JobSuite['dbVars']
  before(async () => {
    ;({db, dbVars} = await openSuiteDatabase({engine: engine.name}))
  })

  after(() => db.destroy())
  beforeEach(() => clearLog(db))
  useEnv(() => ({...dbVars, LOG_LEVEL: undefined}))

  it('lists the days of the last 30 (or --days) with no record, folded into runs, and --json carries them', async () => {
    const yesterday = yesterdayUtc()
    const window = daysBetween(addDays(yesterday, -29), yesterday)
    // Everything recorded but days 3-5 (a run of three) and yesterday.
    for (const [i, day] of window.entries()) {
      if ((i >= 3 && i <= 5) || day === yesterday) continue
      await insertRecord(db, {day, status: i === 10 ? 'FAILED' : 'SUCCESS'})
    }

    const {stdout, error} = await run('db status')
    expect(error).to.equal(undefined)
    expect(stdout).to.include(
      `Missing days in the last 30 days (${window[0]}..${yesterday}): 4 — ${window[3]}..${window[5]} (3 days), ${yesterday}. ` +
        'Run `audit-logger process --catch-up --days 30` to fetch them.',
    )
    const report = JSON.parse((await run('db status --json')).stdout) as {missing: string[]; window: {from: string; to: string; days: number}}
    expect(report.missing).to.deep.equal([window[3], window[4], window[5], yesterday])
    expect(report.window).to.deep.equal({from: window[0], to: yesterday, days: 30})

    const short = JSON.parse((await run('db status --json --days 2')).stdout) as {missing: string[]}
    expect(short.missing).to.deep.equal([yesterday])
    const wide = await run('db status --days 200')
    expect(wide.stdout).to.match(/Missing days in the last 200 days .*: 174 — .*Run `audit-logger process --from \S+ --to \S+`/)
  })

  it('says none when nothing is missing', async () => {
    for (const day of daysBetween(addDays(yesterdayUtc(), -6), yesterdayUtc())) await insertRecord(db, {day, status: 'SUCCESS'})
    const {stdout} = await run('db status --days 7')
    expect(stdout).to.match(/Missing days in the last 7 days \(\S+\): none/)
  })
})
