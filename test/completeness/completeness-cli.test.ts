/**
 * Completeness through the commands, in this process on each engine against the fake API:
 * `process --catch-up` settles its window and checks the months now over; `archives verify` and
 * `archives import` with their exit codes. The commands are run through their classes, so these
 * sources are tested, not the last build (see archives-status.test.ts).
 */
import {fileURLToPath} from 'node:url'

import {captureOutput} from '@oclif/test'
import {expect} from 'chai'
import {type Kysely, sql} from 'kysely'

import ArchivesImport from '../../src/commands/archives/import.js'
import ArchivesVerify from '../../src/commands/archives/verify.js'
import Process from '../../src/commands/process.js'
import {findDay} from '../../src/lib/db/audit-log-repository.js'
import {eventStoreFor} from '../../src/lib/db/event-store.js'
import {findEvent} from '../../src/lib/db/event-queries.js'
import type {Database} from '../../src/lib/db/schema.js'
import {addDays, yesterdayUtc} from '../../src/lib/dates.js'
import {createAuditClient} from '../../src/lib/heroku/client.js'
import {processDay} from '../../src/lib/processing/process-day.js'
import {type AuditEvent, generateEvents} from '../fake-heroku/events.js'
import type {FakeHeroku} from '../fake-heroku/server.js'
import {CaptureStream, captureLogger} from '../support/capture.js'
import {describeOnEngines} from '../support/db.js'
import {useEnv} from '../support/helpers.js'
import {type JobSuite, useJobSuite} from '../support/job-suite.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const OLD_DAY = '2025-09-02'

describeOnEngines('completeness through the commands (in-process)', (engine) => {
  let fake: FakeHeroku
  let db: Kysely<Database>
  let dbVars: JobSuite['dbVars']

  useJobSuite((suite) => ({fake, db, dbVars} = suite), {fake: {maxPageSize: 1000}, rateLimitRemaining: 4500, engine: engine.name})

  useEnv(() => ({
    ...dbVars,
    HEROKU_API_URL: fake.url,
    HEROKU_API_TOKEN: fake.token,
    HEROKU_ACCOUNT_ID: 'acme',
    HEROKU_API_MAX_ATTEMPTS: '1',
    LOG_LEVEL: undefined,
    EVENT_STORE: undefined,
    EVENT_RETENTION_DAYS: '3650',
    SETTLE_HOURS: undefined,
    CATCH_UP_ARCHIVES: 'off',
    RATE_LIMIT_RESERVE: undefined,
    ALERT_WEBHOOK_URL: undefined,
  }))

  // The fake keeps its events and archives from test to test: each starts from September's defaults.
  beforeEach(() => {
    for (const day of [OLD_DAY, '2025-09-10', '2025-09-11']) fake.setEvents(day, [])
    fake.setArchive('2025-09')
  })

  async function collect(day: string, events: AuditEvent[]): Promise<void> {
    fake.setEvents(day, events)
    const client = createAuditClient({apiUrl: fake.url, token: fake.token, accountId: 'acme', baseDelayMs: 5, maxDelayMs: 20})
    const result = await processDay(
      {db, client, output: new CaptureStream(), logger: captureLogger(), store: eventStoreFor(db)},
      {day, format: 'json', force: false, staleAfterMinutes: 15, heartbeatIntervalMs: 50},
    )
    expect(result.outcome).to.equal('success')
  }

  const catchUp = (...args: string[]) => captureOutput(() => Process.run(['--catch-up', '--format', 'json', ...args], ROOT))
  const verify = (...args: string[]) => captureOutput(() => ArchivesVerify.run(['--format', 'json', ...args], ROOT))
  const importMonth = (...args: string[]) => captureOutput(() => ArchivesImport.run(['--format', 'json', ...args], ROOT))

  describe('process --catch-up: settle', () => {
    it('reads each SUCCESS day of its window once more after SETTLE_HOURS, stores and writes its late events, and not a third time', async () => {
      const day = addDays(yesterdayUtc(), -1)
      const first = generateEvents(day, 12)
      await collect(day, first)
      await collect(yesterdayUtc(), [])
      await sql`UPDATE audit_events_log SET finished_at = now() - interval '30 hours' WHERE process_date = ${day}`.execute(db)
      const late = generateEvents(day, 1, {seed: 42})[0]
      fake.setEvents(day, [...first, late])
      fake.reset()
      process.env.ALERT_WEBHOOK_URL = 'http://127.0.0.1:1/hooks/down'

      const {stdout, stderr, error} = await catchUp('--days', '2')
      expect(error, stderr).to.equal(undefined)
      expect(stderr).to.match(/settling 1 day\(s\)/)
      expect(stdout.split('\n').filter(Boolean).map((line) => (JSON.parse(line) as AuditEvent).id)).to.deep.equal([late.id])
      expect(await findDay(db, day)).to.include({late_events: 1, vanished_events: 0, events_count: 13})
      expect((await db.selectFrom('audit_alerts').select('key').execute()).map((alert) => alert.key)).to.deep.equal([`late-events:${day}:1`])
      expect(fake.requests.map((request) => request.day)).to.deep.equal([day])

      fake.reset()
      const again = await catchUp('--days', '2')
      expect(again.error, again.stderr).to.equal(undefined)
      expect(fake.requests, 'a settled day is not read a third time').to.deep.equal([])
    })

    it('settles nothing with SETTLE_HOURS=off, or before the hours have passed', async () => {
      const day = yesterdayUtc()
      await collect(day, generateEvents(day, 3))
      fake.reset()
      expect((await catchUp('--days', '1')).error).to.equal(undefined)
      expect(fake.requests, 'collected just now').to.deep.equal([])
      await sql`UPDATE audit_events_log SET finished_at = now() - interval '30 hours'`.execute(db)
      process.env.SETTLE_HOURS = 'off'
      expect((await catchUp('--days', '1')).error).to.equal(undefined)
      expect(fake.requests).to.deep.equal([])
      expect((await findDay(db, day))?.settled_at).to.equal(null)
    })
  })

  describe('process --catch-up --dry-run', () => {
    it('says which days it would settle and which months it would check, asking the API nothing', async () => {
      const day = yesterdayUtc()
      await collect(OLD_DAY, generateEvents(OLD_DAY, 2))
      await collect(day, generateEvents(day, 2))
      await sql`UPDATE audit_events_log SET finished_at = now() - interval '30 hours'`.execute(db)
      process.env.CATCH_UP_ARCHIVES = 'on'
      fake.reset()
      const {stdout, error} = await catchUp('--days', '1', '--dry-run')
      expect(error).to.equal(undefined)
      expect(stdout).to.include(`Settle (SETTLE_HOURS=24): 1 day(s) would be read once more: ${day}`)
      expect(stdout).to.match(/Archives: 2025-09(, \d{4}-\d{2})* would be checked/)
      expect(fake.requests).to.deep.equal([])
      expect((await findDay(db, day))?.settled_at).to.equal(null)
    })
  })

  describe('process --catch-up: months now over', () => {
    it('checks a month that is over and was never checked, once; a mismatch exits 1', async () => {
      const events = generateEvents(OLD_DAY, 20)
      await collect(OLD_DAY, events)
      await collect(yesterdayUtc(), [])
      process.env.CATCH_UP_ARCHIVES = 'on'
      process.env.SETTLE_HOURS = 'off'
      process.env.ALERT_WEBHOOK_URL = 'http://127.0.0.1:1/hooks/down'
      fake.setArchive('2025-09', {omitIds: [events[0].id]})
      const {stderr, error} = await catchUp('--days', '1')
      expect(error?.oclif?.exit, stderr).to.equal(1)
      expect(stderr).to.match(/checking 1 month\(s\) against Heroku's archives: 2025-09/)
      expect(stderr).to.include(events[0].id)
      const row = await db.selectFrom('audit_archives').selectAll().executeTakeFirstOrThrow()
      expect(row).to.include({month: '2025-09', status: 'mismatch', only_in_store: 1, matched: 19})
      // Announced once per archive file (the webhook is down here: the alert waits in the table).
      const alerts = await db.selectFrom('audit_alerts').select(['key', 'text']).execute()
      expect(alerts.map((alert) => alert.key)).to.deep.equal([`archive-mismatch:2025-09:${row.checksum!.slice(0, 16)}`])
      expect(alerts[0].text).to.include(events[0].id)

      fake.reset()
      const again = await catchUp('--days', '1')
      expect(again.error, again.stderr).to.equal(undefined)
      expect(fake.requests, 'nothing due: not even the list is asked for').to.deep.equal([])
    })
  })

  describe('archives verify and import', () => {
    it('refuses a month that is not one, or a month to come, with one line and exit 2', async () => {
      for (const [month, message] of [
        ['2025-13', /--month "2025-13" is not a month: there is no month 13/],
        ['2025-9', /--month "2025-9" is not in YYYY-MM form/],
        ['2999-01', /--month 2999-01 has not begun yet/],
      ] as const) {
        const {stderr, error} = await verify('--month', month)
        expect(error?.oclif?.exit, stderr).to.equal(2)
        expect(stderr.trim().split('\n'), 'one line').to.have.length(1)
        expect(stderr).to.match(message)
      }

      expect(fake.requests).to.deep.equal([])
    })

    it('refuses to run without the event store: exit 2', async () => {
      process.env.EVENT_STORE = 'off'
      const {stderr, error} = await verify('--month', '2025-09')
      expect(error?.oclif?.exit).to.equal(2)
      expect(stderr).to.match(/EVENT_STORE=off/)
    })

    it('exit 0 on a consistent month, 1 on a mismatch, with the recovered event on stdout; no --month checks what is due', async () => {
      const events = generateEvents(OLD_DAY, 20)
      await collect(OLD_DAY, events)
      const ok = await verify('--month', '2025-09')
      expect(ok.error, ok.stderr).to.equal(undefined)
      expect(ok.stdout).to.equal('')
      expect(ok.stderr).to.match(/2025-09: consistent: 20 archive event\(s\), 1 stored day\(s\) compared, 20 matched/)

      const extra = {...generateEvents(OLD_DAY, 1, {seed: 9})[0], id: 'only-in-the-archive'}
      fake.setArchive('2025-09', {omitIds: [events[1].id], addEvents: [extra]})
      const due = await verify()
      expect(due.error?.oclif?.exit, due.stderr).to.equal(1)
      expect(due.stderr).to.match(/Heroku lists \d+ archive\(s\); checking 1: 2025-09/)
      expect((JSON.parse(due.stdout) as AuditEvent).id).to.equal(extra.id)
      expect(await findEvent(db, extra.id)).to.not.equal(undefined)

      const none = await verify()
      expect(none.error, 'the same file is not checked again').to.equal(undefined)
      expect(none.stderr).to.match(/none is due/)
    })

    it('import fills the days without a record, then the month is consistent', async () => {
      fake.setEvents('2025-09-10', generateEvents('2025-09-10', 7))
      fake.setEvents('2025-09-11', generateEvents('2025-09-11', 5))
      fake.reset()
      const {stderr, error} = await importMonth('--month', '2025-09')
      expect(error, stderr).to.equal(undefined)
      expect(stderr).to.match(/30 day\(s\) imported with 12 event\(s\)/)
      expect(await findDay(db, '2025-09-10')).to.include({status: 'SUCCESS', source: 'archive', events_count: 7})
      expect(fake.requests.filter((request) => request.path.endsWith('/events'))).to.deep.equal([])
      const missing = await importMonth()
      expect(missing.error?.oclif?.exit, 'import needs --month').to.equal(2)
    })
  })
})
