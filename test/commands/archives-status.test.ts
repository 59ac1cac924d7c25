/**
 * `archives status` and what `db status` shows of completeness (each day's settle state and
 * source, the archives line, and their --json), run in this process on each engine, with the
 * rows seeded by SQL as the settle re-read and archives verify/import leave them.
 *
 * Both commands are run through their classes (Command.run) rather than by id: oclif finds a
 * command by id through the manifest and loads it from dist/, both written by the build, so a
 * run by id would test the last build, not these sources.
 */
import {existsSync} from 'node:fs'
import {fileURLToPath} from 'node:url'

import {captureOutput} from '@oclif/test'
import {expect} from 'chai'
import {type Kysely, sql} from 'kysely'

import ArchivesStatus from '../../src/commands/archives/status.js'
import DbStatus from '../../src/commands/db/status.js'
import type {ArchiveMonth} from '../../src/lib/db/archive-queries.js'
import {migrateToLatest} from '../../src/lib/db/migrate.js'
import type {Database} from '../../src/lib/db/schema.js'
import {CHECKSUM, markDay, seedMonth} from '../support/archive-seed.js'
import {openDataDirDb} from '../support/data-dir-db.js'
import {clearLog, describeOnEngines, insertRecord, openTestDb} from '../support/db.js'
import {useEnv} from '../support/helpers.js'
import {type JobSuite, openSuiteDatabase} from '../support/job-suite.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const archivesStatus = (...args: string[]) => captureOutput<ArchiveMonth[]>(() => ArchivesStatus.run(args, ROOT))
const dbStatus = (...args: string[]) => captureOutput(() => DbStatus.run(args, ROOT))

const HOSTILE = '\u001B]0;pwned\u0007\u001B[2J\r\nFORGED\u009B2J\u007F\u2028\u202Egnp.exe'
// What can act on a terminal: C0 controls but the newline, DEL, C1, the line separators, bidi controls.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u0009\u000B-\u001F\u007F-\u009F\u2028\u2029\u202A-\u202E\u2066-\u2069]/

function expectControlFree(text: string, what: string): void {
  const found = CONTROL.exec(text)
  expect(found, `${what} holds U+${found?.[0].charCodeAt(0).toString(16).padStart(4, '0')}`).to.equal(null)
}

describeOnEngines('archives status and db status: completeness (in-process)', (engine) => {
  let db: Kysely<Database>
  let dbVars: JobSuite['dbVars']
  let emptyDbVars: JobSuite['emptyDbVars']
  before(async () => {
    ;({db, dbVars, emptyDbVars} = await openSuiteDatabase({engine: engine.name}))
  })

  after(() => db.destroy())
  beforeEach(() => clearLog(db)) // audit_archives included
  useEnv(() => ({...dbVars, LOG_LEVEL: undefined}))

  async function seedThreeMonths(): Promise<void> {
    await seedMonth(db, {month: '2025-07', status: 'checksum-failed', verifiedAt: '2025-08-01T02:00:00Z', detail: 'checksum: expected c0ffee…, got 0badf00d…'})
    await seedMonth(db, {
      month: '2025-09',
      status: 'consistent',
      verifiedAt: '2025-10-01T03:04:05Z',
      counts: {archive_events: 1200, days_compared: 28, matched: 1190, recovered: 4, not_collected: 6, imported_days: 2, imported_events: 6},
    })
    await seedMonth(db, {
      month: '2025-08',
      status: 'mismatch',
      verifiedAt: '2025-09-02T04:05:06Z',
      detail: `only in store: ev-1, ${HOSTILE}`,
      counts: {archive_events: 900, days_compared: 31, matched: 897, only_in_store: 3},
    })
  }

  describe('archives status', () => {
    it('says no month was verified yet, and how to verify one; --json is []; exit 0', async () => {
      const text = await archivesStatus()
      expect(text.error).to.equal(undefined)
      expect(text.stdout).to.equal('no month verified yet: run audit-logger archives verify\n')
      const json = await archivesStatus('--json')
      expect(json.error).to.equal(undefined)
      expect(JSON.parse(json.stdout)).to.deep.equal([])
    })

    it('lists the months newest first: status, when verified, the counts, imported days/events and the detail', async () => {
      await seedThreeMonths()
      const {stdout, error} = await archivesStatus()
      expect(error).to.equal(undefined)
      const lines = stdout.trimEnd().split('\n')
      expect(lines).to.have.length(4)
      expect(lines[0].split(/\s{2,}/)).to.deep.equal([
        'MONTH',
        'STATUS',
        'VERIFIED (UTC)',
        'ARCHIVE EVENTS',
        'MATCHED',
        'RECOVERED',
        'ONLY IN STORE',
        'NOT COLLECTED',
        'IMPORTED (DAYS/EVENTS)',
        'DETAIL',
      ])
      const cells = lines.slice(1).map((line) => line.trim().split(/\s{2,}/))
      expect(cells.map((c) => c[0])).to.deep.equal(['2025-09', '2025-08', '2025-07'])
      expect(cells[0]).to.deep.equal(['2025-09', 'consistent', '2025-10-01 03:04', '1200', '1190', '4', '0', '6', '2/6', '-'])
      expect(cells[1].slice(0, 9)).to.deep.equal(['2025-08', 'mismatch', '2025-09-02 04:05', '900', '897', '0', '3', '0', '0/0'])
      expect(cells[2].slice(0, 2)).to.deep.equal(['2025-07', 'checksum-failed'])
      expect(lines[3]).to.match(/checksum: expected c0ffee…, got 0badf00d…$/)
    })

    it('shows a hostile detail on one line, its control characters escaped', async () => {
      await seedThreeMonths()
      const {stdout, stderr} = await archivesStatus()
      expectControlFree(stdout, 'archives status')
      expectControlFree(stderr, 'archives status (stderr)')
      expect(stdout.trimEnd().split('\n')).to.have.length(4)
      expect(stdout).to.include('only in store: ev-1, \\x1B]0;pwned\\x07\\x1B[2J FORGED\\x9B2J\\x7F \\u202Egnp.exe')
    })

    it('--json: an array of every field per month, newest first, the detail intact but no control character raw', async () => {
      await seedThreeMonths()
      const {stdout, error, result} = await archivesStatus('--json')
      expect(error).to.equal(undefined)
      expectControlFree(stdout, 'archives status --json')
      const months = JSON.parse(stdout) as ArchiveMonth[]
      expect(result).to.deep.equal(months)
      expect(months.map((m) => m.month)).to.deep.equal(['2025-09', '2025-08', '2025-07'])
      expect(months[1]).to.deep.equal({
        month: '2025-08',
        status: 'mismatch',
        verified_at: '2025-09-02T04:05:06.000Z',
        checksum: CHECKSUM,
        archive_created_at: '2025-08-28T06:00:00.000Z',
        covered_to: '2025-08-28',
        size: 123_456_789_012,
        archive_events: 900,
        days_compared: 31,
        matched: 897,
        recovered: 0,
        only_in_store: 3,
        not_collected: 0,
        imported_days: 0,
        imported_events: 0,
        detail: `only in store: ev-1, ${HOSTILE}`,
      })
      expect(months[0]).to.include({status: 'consistent', recovered: 4, not_collected: 6, imported_days: 2, imported_events: 6, detail: null})
    })

    it('on a database not created (or not migrated) yet: no month, exit 0 — and it creates nothing', async () => {
      const fresh = await emptyDbVars('archives_status')
      Object.assign(process.env, fresh) // put back after the test by useEnv
      const text = await archivesStatus()
      expect(text.error).to.equal(undefined)
      expect(text.stdout).to.equal('no month verified yet: run audit-logger archives verify\n')
      expect(text.stderr).to.include('the archives migration has not run yet')
      const json = await archivesStatus('--json')
      expect(json.error).to.equal(undefined)
      expect(JSON.parse(json.stdout)).to.deep.equal([])
      if (fresh.AUDIT_LOGGER_DATA_DIR) {
        expect(existsSync(fresh.AUDIT_LOGGER_DATA_DIR), 'no embedded database made').to.equal(false)
      } else {
        const scratch = openTestDb(fresh.DATABASE_URL)
        try {
          const {rows} = await sql<{tables: number}>`SELECT count(*)::int AS tables FROM pg_tables WHERE schemaname = 'public'`.execute(scratch)
          expect(rows[0].tables, 'no migration applied').to.equal(0)
        } finally {
          await scratch.destroy()
        }
      }
    })

    it('shows the months of a database migrated since, once verified', async () => {
      const fresh = await emptyDbVars('archives_migrated')
      const other: Kysely<Database> = fresh.DATABASE_URL ? openTestDb(fresh.DATABASE_URL) : await openDataDirDb(fresh.AUDIT_LOGGER_DATA_DIR)
      try {
        await migrateToLatest(other)
        await seedMonth(other, {month: '2024-12', status: 'consistent'})
      } finally {
        await other.destroy()
      }

      Object.assign(process.env, fresh)
      const {stdout, error} = await archivesStatus('--json')
      expect(error).to.equal(undefined)
      expect((JSON.parse(stdout) as ArchiveMonth[]).map((m) => [m.month, m.status])).to.deep.equal([['2024-12', 'consistent']])
    })
  })

  describe('db status', () => {
    async function seedDays(): Promise<void> {
      await insertRecord(db, {day: '2025-09-20', status: 'SUCCESS', events: 4})
      await insertRecord(db, {day: '2025-09-21', status: 'SUCCESS', events: 7})
      await markDay(db, '2025-09-21', {settledAt: '2025-09-22T08:30:00Z', late: 3, vanished: 1, source: 'api', settledDigest: 'ef'.repeat(32)})
      await insertRecord(db, {day: '2025-09-22', status: 'SUCCESS', events: 9})
      await markDay(db, '2025-09-22', {source: 'archive'})
      await insertRecord(db, {day: '2025-09-23', status: 'SUCCESS', events: 5})
      await markDay(db, '2025-09-23', {settledAt: '2025-09-24T08:30:00Z', late: 0, vanished: 0, recovered: 2})
      await insertRecord(db, {day: '2025-09-24', status: 'FAILED', error: 'Heroku API answered 503'})
    }

    it('shows each day’s settle state and source in a SETTLED column, and a line on the archives', async () => {
      await seedDays()
      await seedThreeMonths()
      const {stdout, error} = await dbStatus()
      expect(error).to.equal(undefined)
      expectControlFree(stdout, 'db status')
      const lines = stdout.split('\n')
      const header = lines.findIndex((line) => line.startsWith('DATE'))
      expect(lines[header].split(/\s{2,}/)).to.deep.equal(['DATE', 'STATUS', 'EVENTS', 'ATTEMPTS', 'DURATION', 'DIGEST', 'SETTLED', 'ERROR'])
      const settled = Object.fromEntries(lines.slice(header + 1, header + 6).map((line) => [line.slice(0, 10), line.split(/\s{2,}/)[6]]))
      expect(settled).to.deep.equal({
        '2025-09-24': '-',
        '2025-09-23': 'yes +0, rec +2',
        '2025-09-22': 'archive',
        '2025-09-21': 'yes +3 -1',
        '2025-09-20': '-',
      })
      expect(stdout).to.include('Archives: 3 months — 1 consistent, 1 mismatch, 1 checksum-failed; latest verified 2025-10-01 03:04 UTC (2025-09)\n')
    })

    it('says no month was verified yet on its archives line', async () => {
      await seedDays()
      const {stdout} = await dbStatus()
      expect(stdout).to.include('Archives: no month verified yet: run audit-logger archives verify\n')
    })

    it('--json: each record gets the completeness fields, and "archives" is archives status --json; the old fields stay', async () => {
      await seedDays()
      await seedThreeMonths()
      const {stdout, error} = await dbStatus('--json')
      expect(error).to.equal(undefined)
      expectControlFree(stdout, 'db status --json')
      const report = JSON.parse(stdout) as {records: Array<Record<string, unknown>>; archives: ArchiveMonth[]; counts: Record<string, number>; store: unknown; missing: unknown}
      const byDate = Object.fromEntries(report.records.map((r) => [r.date, r]))
      expect(byDate['2025-09-21']).to.deep.include({
        date: '2025-09-21',
        status: 'SUCCESS',
        events: 7,
        settled_at: '2025-09-22T08:30:00.000Z',
        late_events: 3,
        vanished_events: 1,
        recovered_events: null,
        source: 'api',
        settled_digest: 'ef'.repeat(32),
      })
      expect(byDate['2025-09-22']).to.include({source: 'archive', settled_at: null})
      expect(byDate['2025-09-23']).to.include({recovered_events: 2, late_events: 0, vanished_events: 0})
      expect(byDate['2025-09-20']).to.include({settled_at: null, late_events: null, vanished_events: null, recovered_events: null, source: null, settled_digest: null})
      for (const record of report.records) {
        expect(record).to.have.all.keys(
          'date', 'status', 'events', 'attempts', 'durationSeconds', 'error', 'updatedAt', 'digest',
          'settled_at', 'late_events', 'vanished_events', 'recovered_events', 'source', 'settled_digest',
        )
      }

      expect(report).to.include.all.keys('records', 'counts', 'total', 'migrations', 'window', 'missing', 'store', 'delivery', 'archives')
      expect(report.counts).to.deep.equal({SUCCESS: 4, FAILED: 1})
      const archives = JSON.parse((await archivesStatus('--json')).stdout) as ArchiveMonth[]
      expect(report.archives).to.deep.equal(archives)
      expect(report.archives[1].detail).to.equal(`only in store: ev-1, ${HOSTILE}`)
    })
  })
})
