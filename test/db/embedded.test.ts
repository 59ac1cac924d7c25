/**
 * The embedded engine (PGlite through our Kysely dialect): the same migrations, repositories and
 * queries give the same results as on the PostgreSQL server, and a data directory serves one
 * process at a time. Scenarios run on both engines and their results are compared.
 */
import {type ChildProcess, spawn} from 'node:child_process'
import {existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'

import {expect} from 'chai'
import {type Kysely, sql} from 'kysely'

import {
  busiestDayEvents,
  claimDay,
  type ClaimResult,
  cleanupStale,
  countByStatus,
  dayStates,
  finishDay,
  findDay,
  heartbeat,
  isLive,
  latestDays,
  resetDay,
} from '../../src/lib/db/audit-log-repository.js'
import {describeDbError, openDatabase} from '../../src/lib/db/connection.js'
import {defaultDataDir, type EmbeddedDb, openEmbeddedDb, openStandInEmbeddedDb, prebuiltCluster} from '../../src/lib/db/embedded.js'
import {deleteDays, findDays, listLogs, statusesBetween, summarizeLogs} from '../../src/lib/db/log-queries.js'
import {migrateToLatest, migrationState} from '../../src/lib/db/migrate.js'
import type {Database, ProcessStatus} from '../../src/lib/db/schema.js'
import {UsageError} from '../../src/lib/errors.js'
import {registerSecret} from '../../src/lib/secrets.js'
import {backdateHeartbeat, clearLog, describeWithServer, insertRecord, itWithServer, openTestDb, serverAvailable, snapshot} from '../support/db.js'
import {rejectionOf} from '../support/helpers.js'
import {expectDaysAndTimesRoundTrip} from '../support/round-trip.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const HOLDER = fileURLToPath(new URL('../support/embedded-holder.ts', import.meta.url))
const MIGRATIONS = readdirSync(join(ROOT, 'src/migrations'))
  .filter((f) => f.endsWith('.ts'))
  .map((f) => f.replace(/\.ts$/, ''))
  .sort()
const STALE_AFTER = 15
const JUST_FRESH = 14 * 60
const JUST_STALE = 16 * 60
const DAY = '2025-09-28'
// What the holder process records (see test/support/embedded-holder.ts).
const HOLDER_DAY = '2025-03-01'
const HOLDER_EVENTS = 31

/** Fixed claim tokens, so both engines' results can be compared value for value. */
const token = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`

const scratchDirs: string[] = []
function scratchDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'audit-logger-embedded-'))
  scratchDirs.push(dir)
  return dir
}

function claim(db: Kysely<Database>, day: string, n: number, force = false): Promise<ClaimResult> {
  return claimDay(db, {day, token: token(n), staleAfterMinutes: STALE_AFTER, force})
}

function finish(db: Kysely<Database>, day: string, n: number, status: 'SUCCESS' | 'FAILED' | 'ERROR' = 'SUCCESS', eventsCount = 7) {
  return finishDay(db, {day, token: token(n), status, eventsCount, errorMessage: status === 'SUCCESS' ? null : 'it broke'})
}

/** What a claim says, without the times (which differ between runs). */
function outcome(result: ClaimResult) {
  return result.claimed
    ? {claimed: true, previous: result.previousStatus, status: result.row.status, attempts: result.row.attempts, token: result.row.claim_token}
    : {claimed: false, status: result.current?.status ?? null, token: result.current?.claim_token ?? null}
}

/**
 * A value as both engines should give it, times aside: a Date becomes its kind (valid or not) and
 * an ISO time inside a message becomes <time>, since the two runs happen at different moments.
 */
function comparable(value: unknown): unknown {
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? 'Invalid Date' : 'Date'
  if (typeof value === 'string') return value.replaceAll(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ/g, '<time>')
  if (Array.isArray(value)) return value.map((v) => comparable(v))
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, comparable(v)]))
  return value
}

/** Columns (type, nullability, default) and index definitions of audit_events_log, as text. */
async function tableShape(db: Kysely<Database>): Promise<string[]> {
  const shape = await sql<{line: string}>`
    SELECT concat_ws(' ', column_name, data_type, character_maximum_length, is_nullable, column_default) AS line
    FROM information_schema.columns WHERE table_name = 'audit_events_log'
    UNION ALL
    SELECT indexdef FROM pg_indexes WHERE tablename = 'audit_events_log'
    ORDER BY 1`.execute(db)
  return shape.rows.map((r) => r.line)
}

interface Holder {
  child: ChildProcess
  /** Resolves with each line the holder prints, in order. */
  nextLine(): Promise<string>
  exited: Promise<number | null>
}

/** Another process on `dir`: see test/support/embedded-holder.ts. */
function startHolder(dir: string, mode: 'hold' | 'exit' = 'hold'): Holder {
  const child = spawn(process.execPath, ['--import', 'tsx', HOLDER, dir, mode], {cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe']})
  const lines: string[] = []
  const waiting: Array<(line: string) => void> = []
  let stderr = ''
  let buffered = ''
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk
    for (let i = buffered.indexOf('\n'); i >= 0; i = buffered.indexOf('\n')) {
      const line = buffered.slice(0, i)
      buffered = buffered.slice(i + 1)
      const waiter = waiting.shift()
      if (waiter) waiter(line)
      else lines.push(line)
    }
  })
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
  const nextLine = () =>
    lines.length > 0
      ? Promise.resolve(lines.shift()!)
      : Promise.race([
          new Promise<string>((resolve) => waiting.push(resolve)),
          exited.then((code) => {
            throw new Error(`the holder exited (${code}) before printing; stderr: ${stderr}`)
          }),
        ])
  return {child, nextLine, exited}
}

async function expectReady(holder: Holder): Promise<void> {
  expect(await holder.nextLine()).to.equal('ready')
}

/** A pid no process has: that of a child that has already exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], {stdio: 'ignore'})
  await new Promise((resolve) => child.on('close', resolve))
  return child.pid!
}

describe('embedded database (PGlite)', function () {
  this.timeout(60_000)
  let pgDb: Kysely<Database>
  let lite: EmbeddedDb

  before(async () => {
    // The comparisons need the server; the rest (the data directory, time zones) runs without one.
    if (serverAvailable()) pgDb = openTestDb(process.env.TEST_DATABASE_URL)
    lite = await openEmbeddedDb(scratchDir())
    await migrateToLatest(lite.db)
  })

  after(async () => {
    await pgDb?.destroy()
    await lite?.close()
    for (const dir of scratchDirs.splice(0)) rmSync(dir, {recursive: true, force: true})
  })

  it('unpacks a new data directory (and a dry run\'s stand-in) from the prebuilt cluster: no initdb here', async () => {
    // npm run build makes dist/embedded-cluster.tar.gz; the suite always runs after a build.
    expect(prebuiltCluster(), 'the build made the prebuilt cluster').to.not.equal(undefined)
    // initdb gives every cluster a new system identifier; clusters unpacked from one tarball share it.
    const identity = async (db: Kysely<Database>) => (await sql<{id: string}>`SELECT system_identifier::text AS id FROM pg_control_system()`.execute(db)).rows[0].id
    const first = await openEmbeddedDb(scratchDir())
    const second = await openEmbeddedDb(scratchDir())
    const standIn = await openStandInEmbeddedDb(scratchDir())
    try {
      const ids = [await identity(first.db), await identity(second.db), await identity(standIn.db)]
      expect(new Set(ids).size, ids.join(', ')).to.equal(1)
      // And it is a working cluster: migrations apply, a record goes in.
      await migrateToLatest(first.db)
      await insertRecord(first.db, {day: '2025-09-28', status: 'SUCCESS'})
      expect(await snapshot(first.db)).to.have.length(1)
    } finally {
      await Promise.all([first.close(), second.close(), standIn.close()])
    }
  })

  it('starts PostgreSQL with small shared buffers (its shared memory is resident WebAssembly memory), a stand-in too', async () => {
    const buffers = async (db: Kysely<Database>) => (await sql<{value: string}>`SELECT current_setting('shared_buffers') AS value`.execute(db)).rows[0].value
    const standIn = await openStandInEmbeddedDb(scratchDir())
    try {
      expect(await buffers(lite.db)).to.equal('16MB')
      expect(await buffers(standIn.db)).to.equal('16MB')
    } finally {
      await standIn.close()
    }
  })

  /** Runs a scenario on the server, then on PGlite, each from an empty table (only in suites declared WithServer). */
  async function onBoth<T>(scenario: (db: Kysely<Database>, engine: string) => Promise<T>): Promise<{pg: T; pglite: T}> {
    expect(pgDb, 'a comparison with the server runs only where there is one').to.not.equal(undefined)
    await clearLog(pgDb)
    const onPg = await scenario(pgDb, 'pg')
    await clearLog(lite.db)
    const onPglite = await scenario(lite.db, 'pglite')
    return {pg: onPg, pglite: onPglite}
  }

  async function expectSameOnBoth<T>(scenario: (db: Kysely<Database>, engine: string) => Promise<T>): Promise<T> {
    const results = await onBoth(scenario)
    expect(comparable(results.pglite), 'PGlite gives what PostgreSQL gives').to.deep.equal(comparable(results.pg))
    return results.pg
  }

  describe('defaultDataDir', () => {
    const system = {platform: 'linux' as const, homedir: '/home/ann'}

    it('takes AUDIT_LOGGER_DATA_DIR first, then XDG_DATA_HOME, then the platform’s data folder', () => {
      expect(defaultDataDir({AUDIT_LOGGER_DATA_DIR: '/srv/audit', XDG_DATA_HOME: '/x'}, system)).to.equal('/srv/audit')
      expect(defaultDataDir({AUDIT_LOGGER_DATA_DIR: 'rel/dir'}, system)).to.equal(join(process.cwd(), 'rel/dir'))
      expect(defaultDataDir({XDG_DATA_HOME: '/x/data'}, system)).to.equal('/x/data/audit-logger')
      expect(defaultDataDir({}, system)).to.equal('/home/ann/.local/share/audit-logger')
      expect(defaultDataDir({}, {platform: 'darwin', homedir: '/Users/ann'})).to.equal('/Users/ann/Library/Application Support/audit-logger')
    })

    it('ignores empty values and a relative XDG_DATA_HOME, as the XDG spec says', () => {
      expect(defaultDataDir({AUDIT_LOGGER_DATA_DIR: '  ', XDG_DATA_HOME: ''}, system)).to.equal('/home/ann/.local/share/audit-logger')
      expect(defaultDataDir({XDG_DATA_HOME: 'relative/data'}, system)).to.equal('/home/ann/.local/share/audit-logger')
    })
  })

  describe('migrations', () => {
    it('apply every migration once', async () => {
      const embedded = await openEmbeddedDb(scratchDir())
      try {
        const first = await migrateToLatest(embedded.db)
        expect(first.applied).to.deep.equal(MIGRATIONS)
        expect(first.adoptedRows).to.equal(undefined)
        const state = await migrationState(embedded.db)
        expect(state.map((m) => m.name)).to.deep.equal(MIGRATIONS)
        for (const m of state) expect(m.executedAt, m.name).to.be.instanceOf(Date)
        expect(await migrateToLatest(embedded.db)).to.deep.equal({applied: [], adoptedRows: undefined})
      } finally {
        await embedded.close()
      }
    })

    itWithServer('give the same table (columns, types, defaults, indexes) as on the server', async () => {
      expect(await tableShape(lite.db)).to.deep.equal(await tableShape(pgDb))
    }, 'compares the embedded engine with the server')

    it('apply each migration once when several migrators start at once (the migration lock)', async () => {
      const embedded = await openEmbeddedDb(scratchDir())
      try {
        const reports = await Promise.all(Array.from({length: 4}, () => migrateToLatest(embedded.db)))
        expect(reports.flatMap((r) => r.applied).toSorted()).to.deep.equal(MIGRATIONS)
        for (const report of reports) expect([[], MIGRATIONS]).to.deep.include(report.applied)
        const locks = await sql<{n: number}>`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory'`.execute(embedded.db)
        expect(locks.rows[0].n, 'the migrator released its advisory lock').to.equal(0)
      } finally {
        await embedded.close()
      }
    })

    it('adopt the old tool’s table in place, as on the server', async () => {
      const embedded = await openEmbeddedDb(scratchDir())
      try {
        await sql`
          CREATE TABLE audit_events_log (
            id SERIAL PRIMARY KEY, process_date DATE NOT NULL UNIQUE, status VARCHAR(20) NOT NULL,
            events_count INTEGER, error_message TEXT,
            created_at TIMESTAMP WITHOUT TIME ZONE, updated_at TIMESTAMP WITHOUT TIME ZONE
          )`.execute(embedded.db)
        await sql`
          INSERT INTO audit_events_log (process_date, status, events_count, created_at, updated_at) VALUES
            ('2024-09-25', 'SUCCESS', 120, '2024-09-26 00:05:00.123456', '2024-09-26 00:07:31.654321'),
            ('2024-09-26', 'FAILED', 0, '2024-09-27 00:05:00', '2024-09-27 00:06:00')`.execute(embedded.db)
        expect(await migrateToLatest(embedded.db)).to.deep.equal({applied: MIGRATIONS, adoptedRows: 2})
        const row = await findDay(embedded.db, '2024-09-25')
        expect(row).to.include({process_date: '2024-09-25', attempts: 1, events_count: 120, claim_token: null})
        expect(row?.created_at?.toISOString()).to.equal('2024-09-26T00:05:00.123Z')
      } finally {
        await embedded.close()
      }
    })
  })

  describeWithServer('the same values as through pg', () => {
    it('reads every kind of column the way connection.ts’s parsers do', async () => {
      const query = sql<Record<string, unknown>>`
        SELECT '2024-02-29'::date AS day, '2024-12-31 23:59:59.5'::timestamp AS naive,
               '2024-06-01 12:00:00+02'::timestamptz AS aware, 9007199254740993::int8 AS huge, 42::int8 AS big,
               7::int4 AS int, 1.50::numeric AS numeric, 2.5::float8 AS float, true AS flag, 'x'::varchar AS text,
               '{"a": [1, "b"]}'::json AS json, '{"b": 2}'::jsonb AS jsonb, '\\x01ff'::bytea AS bytes,
               '1 day 02:03:04'::interval AS span, ARRAY['2024-01-01', '2024-01-02']::date[] AS days,
               ARRAY[1, 2]::int8[] AS bigs, ARRAY['a', NULL, 'c,d']::text[] AS texts, NULL::date AS nothing,
               'infinity'::timestamptz AS forever, '00000000-0000-4000-8000-000000000001'::uuid AS id`
      const {pg: onPg, pglite: onPglite} = await onBoth(async (db) => (await query.execute(db)).rows[0])
      expect(onPglite).to.deep.equal(onPg)
      expect(onPglite).to.include({day: '2024-02-29', huge: 9_007_199_254_740_992, big: 42, numeric: '1.50', text: 'x'})
      expect((onPglite.naive as Date).toISOString()).to.equal('2024-12-31T23:59:59.500Z')
      expect((onPglite.aware as Date).toISOString()).to.equal('2024-06-01T10:00:00.000Z')
    })

    it('sends parameters the way pg does: arrays, Dates, objects, Buffers, bigints', async () => {
      const originalTz = process.env.TZ
      // pg writes a Date as local time; in Tokyo that differs from its UTC form even for a naive timestamp.
      process.env.TZ = 'Asia/Tokyo'
      try {
        const at = new Date('2024-12-31T20:00:00.250Z')
        const query = sql<Record<string, unknown>>`
          SELECT ${['2024-01-01', '2024-12-31']}::date[] AS days, ${at}::timestamptz AS aware, ${at}::timestamp AS naive,
                 ${at}::date AS day, ${{a: [1, 'x"y']}}::jsonb AS object, ${['a"b', 'c,d', null]}::text[] AS texts,
                 ${true}::boolean AS flag, ${Buffer.from([1, 2, 255])}::bytea AS bytes, ${12_345_678_901n}::int8 AS big,
                 ${'2024-02-29'}::date = ANY(${['2024-02-29', '2024-03-01']}::date[]) AS found, ${null}::text AS nothing`
        const {pg: onPg, pglite: onPglite} = await onBoth(async (db) => (await query.execute(db)).rows[0])
        expect(onPglite).to.deep.equal(onPg)
        expect(onPglite).to.include({day: '2025-01-01', found: true, big: 12_345_678_901, nothing: null})
        expect(onPglite.texts).to.deep.equal(['a"b', 'c,d', null])
        expect((onPglite.aware as Date).getTime()).to.equal(at.getTime())
      } finally {
        if (originalTz === undefined) delete process.env.TZ
        else process.env.TZ = originalTz
      }
    })

    it('counts changed rows as a bigint for INSERT, UPDATE and DELETE only', async () => {
      const counts = await expectSameOnBoth(async (db) => {
        const run = async (query: ReturnType<typeof sql>) => (await query.execute(db)).numAffectedRows
        return [
          await run(sql`INSERT INTO audit_events_log (process_date, status) VALUES ('2025-01-01', 'SUCCESS'), ('2025-01-02', 'FAILED')`),
          await run(sql`UPDATE audit_events_log SET events_count = 3`),
          await run(sql`UPDATE audit_events_log SET events_count = 3 WHERE status = 'NONE'`),
          await run(sql`SELECT * FROM audit_events_log`),
          await run(sql`DELETE FROM audit_events_log WHERE status = ${'FAILED'}`),
        ]
      })
      expect(counts).to.deep.equal([2n, 2n, 0n, undefined, 1n])
    })

    it('keeps a transaction’s statements together, and rolls back on error', async () => {
      const result = await expectSameOnBoth(async (db, engine) => {
        await db.transaction().execute(async (trx) => {
          await insertRecord(trx, {day: '2025-01-01', status: 'SUCCESS'})
          await insertRecord(trx, {day: '2025-01-02', status: 'SUCCESS'})
        })
        const failed = await rejectionOf(
          db.transaction().execute(async (trx) => {
            await insertRecord(trx, {day: '2025-01-03', status: 'SUCCESS'})
            await insertRecord(trx, {day: '2025-01-01', status: 'SUCCESS'}) // duplicate day
          }),
        )
        expect((failed as Error & {code?: string}).code, engine).to.equal('23505')
        expect(failed, `${engine}: no parameters on the error`).to.not.have.property('params')
        // A statement on `db` while a transaction is open runs outside it: it never sees its rows.
        let inserted!: () => void
        const insertedYet = new Promise<void>((resolve) => {
          inserted = resolve
        })
        const abandoned = db.transaction().execute(async (trx) => {
          await insertRecord(trx, {day: '2025-02-01', status: 'FAILED'})
          inserted()
          await sql`SELECT pg_sleep(0.05)`.execute(trx)
          throw new Error('changed my mind')
        }).catch((error: Error) => error.message)
        await insertedYet
        const countsMeanwhile = await countByStatus(db)
        return {abandoned: await abandoned, countsMeanwhile, days: (await latestDays(db, 10)).map((r) => r.process_date)}
      })
      expect(result).to.deep.equal({abandoned: 'changed my mind', countsMeanwhile: {SUCCESS: 2}, days: ['2025-01-02', '2025-01-01']})
    })
  }, 'compares the embedded engine with the server')

  describe('transactions, streams and closing', () => {
    itWithServer('honours the isolation level and access mode, and savepoints, as the server does', async () => {
      const result = await expectSameOnBoth(async (db) => {
        const isolation = await db.transaction().setIsolationLevel('serializable').setAccessMode('read only').execute(async (trx) => {
          const shown = await sql<{level: string; readOnly: string}>`
            SELECT current_setting('transaction_isolation') AS level, current_setting('transaction_read_only') AS "readOnly"`.execute(trx)
          return shown.rows[0]
        })
        const trx = await db.startTransaction().execute()
        await insertRecord(trx, {day: '2025-01-01', status: 'SUCCESS'})
        const kept = await trx.savepoint('before_second').execute()
        await insertRecord(kept, {day: '2025-01-02', status: 'SUCCESS'})
        const back = await kept.rollbackToSavepoint('before_second').execute()
        await insertRecord(back, {day: '2025-01-03', status: 'FAILED'})
        await (await back.releaseSavepoint('before_second').execute()).commit().execute()
        // A failed statement aborts the transaction: its COMMIT is answered with ROLLBACK.
        const aborted = await db.startTransaction().execute()
        await insertRecord(aborted, {day: '2025-01-04', status: 'SUCCESS'})
        await sql`SELECT 1 / 0`.execute(aborted).catch(() => {})
        const commit = await aborted.commit().execute().then(() => 'committed', (error: Error) => error.name)
        // Several statements without parameters in one query, as a migration may hold.
        await sql`UPDATE audit_events_log SET events_count = 1; UPDATE audit_events_log SET events_count = events_count + 1`.execute(db)
        const rows = await db.selectFrom('audit_events_log').select(['process_date', 'events_count']).orderBy('process_date').execute()
        return {isolation, commit, rows}
      })
      expect(result).to.deep.equal({
        isolation: {level: 'serializable', readOnly: 'on'},
        commit: 'AbortedTransactionError',
        rows: [{process_date: '2025-01-01', events_count: 2}, {process_date: '2025-01-03', events_count: 2}],
      })
    }, 'compares the embedded engine with the server')

    it('streams a result in chunks (PGlite has no cursors: it is read whole, then handed out)', async () => {
      await clearLog(lite.db)
      for (const day of ['2025-01-01', '2025-01-02', '2025-01-03', '2025-01-04', '2025-01-05']) await insertRecord(lite.db, {day, status: 'SUCCESS'})
      const seen: string[] = []
      for await (const row of lite.db.selectFrom('audit_events_log').select('process_date').orderBy('process_date').stream(2)) seen.push(row.process_date)
      expect(seen).to.deep.equal(['2025-01-01', '2025-01-02', '2025-01-03', '2025-01-04', '2025-01-05'])
    })

    it('lets a transaction in progress finish before close() closes the database', async () => {
      const dir = scratchDir()
      const embedded = await openEmbeddedDb(dir)
      await migrateToLatest(embedded.db)
      let firstDone!: () => void
      const first = new Promise<void>((resolve) => {
        firstDone = resolve
      })
      const work = embedded.db.transaction().execute(async (trx) => {
        await insertRecord(trx, {day: '2025-01-01', status: 'SUCCESS'})
        firstDone()
        await new Promise((resolve) => setTimeout(resolve, 200))
        await insertRecord(trx, {day: '2025-01-02', status: 'SUCCESS'})
      })
      await first
      await embedded.close()
      await work

      const again = await openEmbeddedDb(dir)
      try {
        expect((await latestDays(again.db, 10)).map((r) => r.process_date)).to.deep.equal(['2025-01-02', '2025-01-01'])
      } finally {
        await again.close()
      }
    })
  })

  describeWithServer('the claim protocol, on both engines', () => {
    it('claimDay: new, held, retried, stale, fresh, SUCCESS without and with force', async () => {
      const steps = await expectSameOnBoth(async (db) => {
        const out = []
        out.push(outcome(await claim(db, DAY, 1)))
        out.push(outcome(await claim(db, DAY, 2)))
        await insertRecord(db, {day: '2025-09-01', status: 'FAILED', attempts: 2, error: 'HTTP 503', heartbeatSecondsAgo: 3600})
        out.push(outcome(await claim(db, '2025-09-01', 3)))
        await insertRecord(db, {day: '2025-09-02', status: 'PROCESSING', claimToken: token(9), heartbeatSecondsAgo: JUST_STALE})
        out.push(outcome(await claim(db, '2025-09-02', 4)))
        await insertRecord(db, {day: '2025-09-03', status: 'PROCESSING', claimToken: token(9), heartbeatSecondsAgo: JUST_FRESH})
        out.push(outcome(await claim(db, '2025-09-03', 5)))
        await insertRecord(db, {day: '2025-09-04', status: 'SUCCESS', events: 12, heartbeatSecondsAgo: 86_400})
        out.push(outcome(await claim(db, '2025-09-04', 6)), outcome(await claim(db, '2025-09-04', 7, true)))
        out.push(await snapshot(db).then((rows) => rows.length))
        return out
      })
      expect(steps).to.deep.equal([
        {claimed: true, previous: null, status: 'PROCESSING', attempts: 1, token: token(1)},
        {claimed: false, status: 'PROCESSING', token: token(1)},
        {claimed: true, previous: 'FAILED', status: 'PROCESSING', attempts: 3, token: token(3)},
        {claimed: true, previous: 'PROCESSING', status: 'PROCESSING', attempts: 2, token: token(4)},
        {claimed: false, status: 'PROCESSING', token: token(9)},
        {claimed: false, status: 'SUCCESS', token: null},
        {claimed: true, previous: 'SUCCESS', status: 'PROCESSING', attempts: 2, token: token(7)},
        5,
      ])
    })

    for (const start of ['absent', 'FAILED'] as const) {
      it(`lets exactly one of 20 concurrent claims win (row ${start})`, async () => {
        await expectSameOnBoth(async (db, engine) => {
          if (start === 'FAILED') await insertRecord(db, {day: DAY, status: 'FAILED', error: 'earlier failure'})
          const results = await Promise.all(Array.from({length: 20}, (_, i) => claim(db, DAY, 100 + i)))
          const winners = results.filter((r) => r.claimed)
          expect(winners, engine).to.have.length(1)
          const stored = await findDay(db, DAY)
          expect(stored?.claim_token, engine).to.equal(winners[0].row.claim_token)
          for (const loser of results.filter((r) => !r.claimed)) expect(loser.current?.claim_token, engine).to.equal(stored?.claim_token)
          return {attempts: stored?.attempts, losers: results.length - winners.length}
        })
      })
    }

    it('heartbeat and finishDay hold only while the claim is ours (the fence)', async () => {
      const steps = await expectSameOnBoth(async (db) => {
        const out: unknown[] = []
        await claim(db, DAY, 1)
        await backdateHeartbeat(db, DAY, 600)
        out.push(await heartbeat(db, DAY, token(1)), await isLive(db, DAY, STALE_AFTER))
        await backdateHeartbeat(db, DAY, JUST_STALE)
        out.push(await isLive(db, DAY, STALE_AFTER))
        out.push((await cleanupStale(db, STALE_AFTER)).map((c) => c.day))
        out.push(await heartbeat(db, DAY, token(1)), outcome(await claim(db, DAY, 2)))
        out.push(await finish(db, DAY, 1, 'SUCCESS', 99), await finish(db, DAY, 2, 'SUCCESS', 5), await finish(db, DAY, 2, 'FAILED'))
        const row = await findDay(db, DAY)
        out.push({status: row?.status, events: row?.events_count, attempts: row?.attempts, token: row?.claim_token, finished: row?.finished_at instanceof Date})
        await sql`DELETE FROM audit_events_log`.execute(db)
        out.push(await heartbeat(db, DAY, token(2)))
        return out
      })
      expect(steps).to.deep.equal([
        true, true, false, [DAY], false,
        {claimed: true, previous: 'ERROR', status: 'PROCESSING', attempts: 2, token: token(2)},
        false, true, false,
        {status: 'SUCCESS', events: 5, attempts: 2, token: token(2), finished: true},
        false,
      ])
    })

    it('cleanupStale turns only stale PROCESSING rows into ERROR, naming the last sign of life', async () => {
      const result = await expectSameOnBoth(async (db) => {
        await insertRecord(db, {day: '2025-09-01', status: 'PROCESSING', claimToken: token(1), heartbeatSecondsAgo: JUST_FRESH})
        await insertRecord(db, {day: '2025-09-02', status: 'PROCESSING', claimToken: token(2), heartbeatSecondsAgo: JUST_STALE})
        await insertRecord(db, {day: '2025-08-01', status: 'SUCCESS', events: 9, heartbeatSecondsAgo: 86_400 * 30})
        await insertRecord(db, {day: '2024-09-28', status: 'PROCESSING'})
        // The old tool's row: no heartbeat, a naive UTC updated_at.
        await sql`UPDATE audit_events_log SET heartbeat_at = NULL, updated_at = TIMESTAMP '2024-09-29 00:05:00' WHERE process_date = '2024-09-28'`.execute(db)
        const lastBeat = (await findDay(db, '2025-09-02'))!.heartbeat_at!
        const [first, second] = await Promise.all([cleanupStale(db, STALE_AFTER), cleanupStale(db, STALE_AFTER)])
        const cleaned = [...first, ...second]
        const reasons = await db.selectFrom('audit_events_log').select(['process_date', 'status', 'error_message']).orderBy('process_date').execute()
        return {
          cleaned: cleaned.map((c) => c.day).sort(),
          beatMatches: cleaned.find((c) => c.day === '2025-09-02')?.lastSignOfLife?.getTime() === lastBeat.getTime(),
          oldRowSign: cleaned.find((c) => c.day === '2024-09-28')?.lastSignOfLife?.toISOString(),
          staleReasonNamesBeat: reasons.find((r) => r.process_date === '2025-09-02')?.error_message?.includes(lastBeat.toISOString().replace(/\.\d{3}Z$/, 'Z')),
          reasons,
        }
      })
      expect(result).to.deep.include({cleaned: ['2024-09-28', '2025-09-02'], beatMatches: true, oldRowSign: '2024-09-29T00:05:00.000Z', staleReasonNamesBeat: true})
      expect(result.reasons.map((r) => r.status)).to.deep.equal(['ERROR', 'SUCCESS', 'PROCESSING', 'ERROR'])
      expect(result.reasons[0].error_message).to.include('no heartbeat since 2024-09-29T00:05:00Z')
    })

    it('resetDay refuses a live run without force and removes it with force, or stale and FAILED rows', async () => {
      const steps = await expectSameOnBoth(async (db) => {
        const options = {force: false, staleAfterMinutes: STALE_AFTER}
        await claim(db, DAY, 1)
        await insertRecord(db, {day: '2025-09-01', status: 'PROCESSING', claimToken: token(2), heartbeatSecondsAgo: JUST_STALE})
        await insertRecord(db, {day: '2025-09-02', status: 'FAILED', error: 'HTTP 503'})
        const outcomes = []
        for (const [day, force] of [[DAY, false], [DAY, true], ['2025-09-01', false], ['2025-09-02', false], ['2025-09-03', false]] as const) {
          const result = await resetDay(db, day, {...options, force})
          outcomes.push(result.outcome === 'none' ? 'none' : `${result.outcome} ${result.row.status} ${result.row.claim_token}`)
        }

        return {outcomes, left: (await latestDays(db, 10)).length, fenced: await finish(db, DAY, 1)}
      })
      expect(steps).to.deep.equal({
        outcomes: [`refused-live PROCESSING ${token(1)}`, `removed PROCESSING ${token(1)}`, `removed PROCESSING ${token(2)}`, 'removed FAILED null', 'none'],
        left: 0,
        fenced: false,
      })
    })

    it('the read-side queries agree: dayStates, busiestDayEvents, countByStatus, latestDays, statusesBetween, findDays', async () => {
      const result = await expectSameOnBoth(async (db) => {
        const rows: Array<[string, ProcessStatus, number, number]> = [
          ['2025-01-15', 'SUCCESS', 40, 0], ['2024-12-31', 'FAILED', 0, 0], ['2025-02-01', 'ERROR', 0, 0],
          ['2025-01-01', 'SUCCESS', 7, 0], ['2025-01-20', 'PROCESSING', 0, 0], ['2025-01-21', 'PROCESSING', 0, JUST_STALE],
        ]
        for (const [day, status, events, ago] of rows) await insertRecord(db, {day, status, events, heartbeatSecondsAgo: ago})
        return {
          states: await dayStates(db, {from: '2025-01-01', to: '2025-01-31'}, STALE_AFTER),
          busiest: await busiestDayEvents(db),
          counts: await countByStatus(db),
          latest: (await latestDays(db, 3)).map((r) => r.process_date),
          between: [...(await statusesBetween(db, '2024-12-31', '2025-01-15')).entries()].sort(),
          found: (await findDays(db, ['2025-01-01', '2025-02-01', '2030-01-01'])).map((r) => r.process_date),
        }
      })
      expect(result.busiest).to.equal(40)
      expect(result.counts).to.deep.equal({ERROR: 1, FAILED: 1, PROCESSING: 2, SUCCESS: 2})
      expect(result.states.map((s) => `${s.day} ${s.status} ${s.live}`)).to.deep.equal([
        '2025-01-01 SUCCESS false', '2025-01-15 SUCCESS false', '2025-01-20 PROCESSING true', '2025-01-21 PROCESSING false',
      ])
      expect(result.latest).to.deep.equal(['2025-02-01', '2025-01-21', '2025-01-20'])
      expect(result.between).to.deep.equal([['2024-12-31', 'FAILED'], ['2025-01-01', 'SUCCESS'], ['2025-01-15', 'SUCCESS']])
      expect(result.found).to.deep.equal(['2025-02-01', '2025-01-01'])
    })
  }, 'compares the embedded engine with the server')

  describeWithServer('the status page’s queries, on both engines', () => {
    async function seed(db: Kysely<Database>): Promise<void> {
      const rows: Array<[string, ProcessStatus, number]> = [
        ['2025-01-01', 'SUCCESS', 10], ['2025-01-02', 'SUCCESS', 20], ['2025-01-03', 'FAILED', 0],
        ['2025-01-04', 'ERROR', 0], ['2025-01-05', 'PROCESSING', 0], ['2025-01-06', 'SUCCESS', 33],
      ]
      for (const [day, status, events] of rows) await insertRecord(db, {day, status, events, heartbeatSecondsAgo: 0})
    }

    it('listLogs pages newest first with the total, filtered by status and dates', async () => {
      const result = await expectSameOnBoth(async (db) => {
        await seed(db)
        const days = (page: {rows: Array<{process_date: string}>; total: number}) => ({days: page.rows.map((r) => r.process_date), total: page.total})
        return [
          days(await listLogs(db, {}, {offset: 0, limit: 4})),
          days(await listLogs(db, {}, {offset: 4, limit: 4})),
          days(await listLogs(db, {status: 'SUCCESS'}, {offset: 0, limit: 10})),
          days(await listLogs(db, {from: '2025-01-02', to: '2025-01-04'}, {offset: 0, limit: 10})),
          (await listLogs(db, {}, {offset: 0, limit: 1})).rows,
        ]
      })
      expect(result.slice(0, 4)).to.deep.equal([
        {days: ['2025-01-06', '2025-01-05', '2025-01-04', '2025-01-03'], total: 6},
        {days: ['2025-01-02', '2025-01-01'], total: 6},
        {days: ['2025-01-06', '2025-01-02', '2025-01-01'], total: 3},
        {days: ['2025-01-04', '2025-01-03', '2025-01-02'], total: 3},
      ])
    })

    it('summarizeLogs counts and rates', async () => {
      const summary = await expectSameOnBoth(async (db) => {
        await seed(db)
        return [await summarizeLogs(db, {}), await summarizeLogs(db, {from: '2025-01-03', to: '2025-01-05', status: 'SUCCESS'}), await summarizeLogs(db, {from: '2030-01-01'})]
      })
      expect(summary[0]).to.deep.equal({
        total: 6, successful: 3, failed: 2, inProgress: 1, totalEvents: 63,
        successRate: 0.5, failureRate: 2 / 6, averageEventsPerSuccess: 21,
      })
      expect(summary[1]).to.include({total: 3, successful: 0, failed: 2, inProgress: 1})
      expect(summary[2]).to.include({total: 0, successRate: null, averageEventsPerSuccess: null})
    })

    it('deleteDays (= ANY($1::date[]) with an array) keeps a live run without force', async () => {
      const result = await expectSameOnBoth(async (db) => {
        await seed(db)
        const options = {force: false, staleAfterMinutes: STALE_AFTER}
        const first = await deleteDays(db, ['2025-01-01', '2025-01-05', '2025-01-03', '2030-12-31'], options)
        const forced = await deleteDays(db, ['2025-01-05'], {...options, force: true})
        return {first, forced, left: (await latestDays(db, 10)).map((r) => r.process_date)}
      })
      expect(result).to.deep.equal({
        first: {deleted: ['2025-01-01', '2025-01-03'], refusedLive: ['2025-01-05'], missing: ['2030-12-31']},
        forced: {deleted: ['2025-01-05'], refusedLive: [], missing: []},
        left: ['2025-01-06', '2025-01-04', '2025-01-02'],
      })
    })
  }, 'compares the embedded engine with the server')

  describe('dates and times whatever the process’s time zone', () => {
    const originalTz = process.env.TZ
    const DAYS = ['2024-12-31', '2025-01-01', '2024-02-29', '2024-03-01']

    afterEach(async () => {
      if (originalTz === undefined) delete process.env.TZ
      else process.env.TZ = originalTz
      await sql`RESET TimeZone`.execute(lite.db)
    })

    for (const [zone, offsetMinutes] of [['America/Los_Angeles', [420, 480]], ['Asia/Tokyo', [-540]]] as const) {
      it(`keeps days as strings and reads naive UTC times right under TZ=${zone}`, async () => {
        process.env.TZ = zone
        expect(offsetMinutes, 'Node picked up TZ').to.include(new Date('2024-12-31T12:00:00Z').getTimezoneOffset())
        const db = lite.db
        // The session runs in the same zone too, as a developer's local server might.
        await sql`SELECT set_config('TimeZone', ${zone}, false)`.execute(db)
        expect((await sql<{TimeZone: string}>`SHOW TimeZone`.execute(db)).rows[0].TimeZone).to.equal(zone)
        await clearLog(db)
        await expectDaysAndTimesRoundTrip(db, DAYS, (day) => claimDay(db, {day, token: token(1), staleAfterMinutes: STALE_AFTER, force: false}))

        expect((await listLogs(db, {from: '2024-12-31', to: '2025-01-01'}, {offset: 0, limit: 10})).rows.map((r) => r.process_date)).to.deep.equal(['2025-01-01', '2024-12-31'])
        await backdateHeartbeat(db, '2024-12-31', JUST_STALE)
        const lastBeat = (await findDay(db, '2024-12-31'))!.heartbeat_at!
        expect((await cleanupStale(db, STALE_AFTER)).map((c) => c.day)).to.deep.equal(['2024-12-31'])
        const reason = (await findDay(db, '2024-12-31'))!.error_message
        expect(reason).to.include(`no heartbeat since ${lastBeat.toISOString().replace(/\.\d{3}Z$/, 'Z')}`)
      })
    }
  })

  describe('the data directory', () => {
    const lockFile = (dir: string) => join(dir, 'audit-logger.lock')

    it('keeps its rows across a close and a reopen, and says where it is', async () => {
      const dir = scratchDir()
      const first = await openEmbeddedDb(dir)
      expect(first.describe).to.equal(`embedded PostgreSQL (PGlite) at ${dir}`)
      expect(readFileSync(lockFile(dir), 'utf8')).to.equal(`${process.pid}\n`)
      await migrateToLatest(first.db)
      await claim(first.db, DAY, 1)
      expect(await finish(first.db, DAY, 1, 'SUCCESS', 12)).to.equal(true)
      const before = await snapshot(first.db)
      await first.close()
      await first.close()
      expect(existsSync(lockFile(dir)), 'close releases the directory').to.equal(false)

      const again = await openEmbeddedDb(dir)
      try {
        expect(await migrateToLatest(again.db)).to.deep.equal({applied: [], adoptedRows: undefined})
        expect(await snapshot(again.db)).to.deep.equal(before)
        expect(await findDay(again.db, DAY)).to.include({status: 'SUCCESS', events_count: 12, claim_token: token(1)})
      } finally {
        await again.close()
      }

      const closed = await rejectionOf(sql`SELECT 1`.execute(again.db))
      expect(closed.message).to.match(/closed|destroyed/)
    })

    it('refuses a second process with one clear line within seconds, and lets it in once released', async () => {
      const dir = scratchDir()
      const holder = startHolder(dir)
      try {
        await expectReady(holder)
        const started = Date.now()
        const error = await rejectionOf(openEmbeddedDb(dir, {lockWaitMs: 1000}))
        expect(Date.now() - started).to.be.within(900, 3000)
        expect(error).to.be.instanceOf(UsageError)
        expect(error.message).to.equal(`the embedded database at ${dir} is in use by another audit-logger process (pid ${holder.child.pid})`)
        expect((error as UsageError).hint).to.equal('wait for it to finish, or set DATABASE_URL to use PostgreSQL')

        // A waiting opener gets in as soon as the holder lets go.
        const waiting = openEmbeddedDb(dir, {lockWaitMs: 20_000})
        await new Promise((resolve) => setTimeout(resolve, 300))
        holder.child.stdin!.write('close\n')
        expect(await holder.nextLine()).to.equal('closed')
        const embedded = await waiting
        try {
          expect(await findDay(embedded.db, HOLDER_DAY)).to.include({status: 'SUCCESS', events_count: HOLDER_EVENTS})
        } finally {
          await embedded.close()
        }
      } finally {
        holder.child.kill('SIGKILL')
        await holder.exited
      }
    })

    it('a child process is refused while this process holds the directory', async () => {
      const dir = scratchDir()
      const embedded = await openEmbeddedDb(dir)
      try {
        const other = startHolder(dir)
        expect(await other.nextLine()).to.equal(`error the embedded database at ${dir} is in use by another audit-logger process (pid ${process.pid}) — wait for it to finish, or set DATABASE_URL to use PostgreSQL`)
        expect(await other.exited).to.equal(3)
      } finally {
        await embedded.close()
      }
    })

    it('takes over from a holder killed with SIGKILL, with its data intact', async () => {
      const dir = scratchDir()
      const holder = startHolder(dir)
      await expectReady(holder)
      holder.child.kill('SIGKILL')
      await holder.exited
      expect(readFileSync(lockFile(dir), 'utf8'), 'a kill leaves the lock behind').to.equal(`${holder.child.pid}\n`)

      const started = Date.now()
      const embedded = await openEmbeddedDb(dir, {lockWaitMs: 0})
      try {
        expect(Date.now() - started).to.be.below(5000)
        expect(readFileSync(lockFile(dir), 'utf8')).to.equal(`${process.pid}\n`)
        expect(await findDay(embedded.db, HOLDER_DAY)).to.include({status: 'SUCCESS', events_count: HOLDER_EVENTS})
      } finally {
        await embedded.close()
      }
    })

    it('takes over a lock file whose pid is dead, or which was never written and is old', async () => {
      const dir = scratchDir()
      const dead = await deadPid()
      writeFileSync(lockFile(dir), `${dead}\n`)
      const first = await openEmbeddedDb(dir, {lockWaitMs: 0})
      expect(readFileSync(lockFile(dir), 'utf8')).to.equal(`${process.pid}\n`)
      await first.close()

      writeFileSync(lockFile(dir), '')
      const old = new Date(Date.now() - 60_000)
      utimesSync(lockFile(dir), old, old)
      const second = await openEmbeddedDb(dir, {lockWaitMs: 0})
      await second.close()
    })

    it('waits on a lock file being written, naming no pid', async () => {
      const dir = scratchDir()
      writeFileSync(lockFile(dir), '')
      const error = await rejectionOf(openEmbeddedDb(dir, {lockWaitMs: 300}))
      expect(error).to.be.instanceOf(UsageError)
      expect(error.message).to.equal(`the embedded database at ${dir} is in use by another audit-logger process`)
      expect(readFileSync(lockFile(dir), 'utf8'), 'a young lock is left alone').to.equal('')
    })

    it('lets exactly one of several openers take over the same stale lock', async () => {
      const dir = scratchDir()
      writeFileSync(lockFile(dir), `${await deadPid()}\n`)
      const attempts = await Promise.allSettled(Array.from({length: 5}, () => openEmbeddedDb(dir, {lockWaitMs: 300})))
      const opened = attempts.filter((a) => a.status === 'fulfilled').map((a) => (a as PromiseFulfilledResult<EmbeddedDb>).value)
      try {
        expect(opened).to.have.length(1)
        for (const refused of attempts.filter((a) => a.status === 'rejected')) {
          expect((refused as PromiseRejectedResult).reason).to.be.instanceOf(UsageError)
        }
      } finally {
        for (const embedded of opened) await embedded.close()
      }

      expect(existsSync(`${lockFile(dir)}.takeover`)).to.equal(false)
    })

    it('is released by a process that exits without closing', async () => {
      const dir = scratchDir()
      const holder = startHolder(dir, 'exit')
      await expectReady(holder)
      expect(await holder.exited).to.equal(0)
      expect(existsSync(lockFile(dir))).to.equal(false)
    })

    it('is what openDatabase opens for an embedded configuration, saying where, and closing releases it', async () => {
      const dir = scratchDir()
      const opened = await openDatabase({kind: 'embedded', dataDir: dir})
      expect(opened.describe).to.equal(`embedded PostgreSQL (PGlite) at ${dir}`)
      expect(readFileSync(lockFile(dir), 'utf8')).to.equal(`${process.pid}\n`)
      expect(await migrateToLatest(opened.db)).to.deep.include({applied: MIGRATIONS})
      await opened.close()
      await opened.close()
      expect(existsSync(lockFile(dir))).to.equal(false)
    })

    it('describes its errors by the data directory, with secrets redacted', () => {
      registerSecret('Sentinel-Embedded-Secret-5')
      const error = Object.assign(new Error('relation "nope" does not exist near Sentinel-Embedded-Secret-5'), {code: '42P01'})
      expect(describeDbError(error, {kind: 'embedded', dataDir: '/srv/audit'})).to.equal(
        'database error in the embedded database at /srv/audit: relation "nope" does not exist near [redacted]',
      )
    })

    it('reports a data directory it cannot create as a usage error', async () => {
      const file = join(scratchDir(), 'not-a-dir')
      writeFileSync(file, 'x')
      const error = await rejectionOf(openEmbeddedDb(file))
      expect(error).to.be.instanceOf(UsageError)
      expect(error.message).to.include(`cannot create the embedded database directory ${file}`)
      expect((error as UsageError).hint).to.include('AUDIT_LOGGER_DATA_DIR')
    })
  })
})
