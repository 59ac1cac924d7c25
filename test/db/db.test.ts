import {randomUUID} from 'node:crypto'
import net from 'node:net'

import {expect} from 'chai'
import {type Kysely, sql} from 'kysely'
import pg from 'pg'

import {claimDay, type ClaimResult, cleanupStale, findDay} from '../../src/lib/db/audit-log-repository.js'
import {connectDb, createDb, describeDatabase, describeDbError, isConnectionError, sslOptions} from '../../src/lib/db/connection.js'
import {migrateToLatest, migrationState} from '../../src/lib/db/migrate.js'
import type {Database} from '../../src/lib/db/schema.js'
import type {PostgresDatabaseConfig} from '../../src/lib/config.js'
import {UsageError} from '../../src/lib/errors.js'
import {backdateHeartbeat, clearLog, createScratchDatabase, describeWithServer, openTestDb} from '../support/db.js'
import {rejectionOf} from '../support/helpers.js'
import {expectDaysAndTimesRoundTrip} from '../support/round-trip.js'

const MIGRATIONS = [
  '2025-10-01T00-00-00_create_audit_events_log',
  '2025-10-02T00-00-00_add_claim_columns',
  '2025-10-03T00-00-00_add_events_digest',
  '2025-10-04T00-00-00_notify_changes',
  '2025-10-05T00-00-00_create_audit_events',
  '2025-10-06T00-00-00_create_sinks',
  '2025-10-07T00-00-00_create_alerts',
  '2025-10-08T00-00-00_create_archives',
]
const SENTINEL = 'Sentinel-Pa55word-7c1e'
const STALE_AFTER = 15

function testUrl(): string {
  expect(process.env.TEST_DATABASE_URL, 'the root hook sets TEST_DATABASE_URL').to.be.a('string')
  return process.env.TEST_DATABASE_URL!
}

/** The same database, with a password the server ignores (trust auth) so leaks can be looked for. */
function withSentinelPassword(url: string): string {
  const parsed = new URL(url)
  parsed.password = SENTINEL
  return parsed.toString()
}

function claim(db: Kysely<Database>, day: string, force = false): Promise<ClaimResult> {
  return claimDay(db, {day, token: randomUUID(), staleAfterMinutes: STALE_AFTER, force})
}

async function rows<T>(db: Kysely<Database>, query: ReturnType<typeof sql<T>>): Promise<T[]> {
  return (await query.execute(db)).rows
}

/** Columns (type, nullability, default) and index definitions of audit_events_log, as text. */
async function tableShape(db: Kysely<Database>): Promise<string[]> {
  const shape = await rows(db, sql<{line: string}>`
    SELECT concat_ws(' ', column_name, data_type, character_maximum_length, is_nullable, column_default) AS line
    FROM information_schema.columns WHERE table_name = 'audit_events_log'
    UNION ALL
    SELECT indexdef FROM pg_indexes WHERE tablename = 'audit_events_log'
    ORDER BY 1`)
  return shape.map((r) => r.line)
}

describeWithServer('database', () => {
  describe('migrations', () => {
    it('create the table, its indexes and the unique day on a fresh database, once', async () => {
      const db = openTestDb(await createScratchDatabase('fresh'))
      try {
        const first = await migrateToLatest(db)
        expect(first.applied).to.deep.equal(MIGRATIONS)
        expect(first.adoptedRows).to.equal(undefined)

        const columns = await rows(db, sql<{column_name: string}>`
          SELECT column_name FROM information_schema.columns WHERE table_name = 'audit_events_log' ORDER BY ordinal_position`)
        expect(columns.map((c) => c.column_name)).to.include.members([
          'id', 'process_date', 'status', 'events_count', 'error_message', 'created_at', 'updated_at',
          'attempts', 'claim_token', 'heartbeat_at', 'started_at', 'finished_at', 'events_digest',
        ])
        const digest = await rows(db, sql<{data_type: string; is_nullable: string}>`
          SELECT data_type, is_nullable FROM information_schema.columns
          WHERE table_name = 'audit_events_log' AND column_name = 'events_digest'`)
        expect(digest).to.deep.equal([{data_type: 'text', is_nullable: 'YES'}])

        const indexes = await rows(db, sql<{indexname: string}>`
          SELECT indexname FROM pg_indexes WHERE tablename = 'audit_events_log'`)
        expect(indexes.map((i) => i.indexname)).to.include.members(['idx_audit_events_log_status', 'idx_audit_events_log_process_date_status'])

        const unique = await rows(db, sql<{column: string}>`
          SELECT a.attname AS column FROM pg_index i
          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
          WHERE i.indrelid = 'audit_events_log'::regclass AND i.indisunique AND NOT i.indisprimary AND i.indnatts = 1`)
        expect(unique.map((u) => u.column)).to.deep.equal(['process_date'])

        const state = await migrationState(db)
        expect(state.map((m) => m.name)).to.deep.equal(MIGRATIONS)
        for (const m of state) expect(m.executedAt, m.name).to.be.instanceOf(Date)

        expect(await migrateToLatest(db)).to.deep.equal({applied: [], adoptedRows: undefined})
      } finally {
        await db.destroy()
      }
    })

    it('apply each migration exactly once when six processes start at once', async () => {
      const url = await createScratchDatabase('race')
      const dbs = Array.from({length: 6}, () => openTestDb(url))
      try {
        const reports = await Promise.all(dbs.map((db) => migrateToLatest(db)))
        const applied = reports.flatMap((r) => r.applied)
        expect(applied.toSorted()).to.deep.equal(MIGRATIONS)
        // One applied the whole batch in order; the others found nothing to do.
        for (const report of reports) expect([[], MIGRATIONS]).to.deep.include(report.applied)
      } finally {
        await Promise.all(dbs.map((db) => db.destroy()))
      }
    })
  })

  describe('adopting the old Python tool’s table', () => {
    const OLD_COLUMNS = sql<{row: string}>`
      SELECT (id, process_date, status, events_count, error_message, created_at, updated_at)::text AS row
      FROM audit_events_log ORDER BY id`
    let db: Kysely<Database>
    let oldValues: string[]
    let report: Awaited<ReturnType<typeof migrateToLatest>>

    before(async () => {
      db = openTestDb(await createScratchDatabase('legacy'))
      // As SQLAlchemy and Alembic left it: no server defaults, times written as naive UTC by Python.
      await sql`
        CREATE TABLE audit_events_log (
          id SERIAL PRIMARY KEY,
          process_date DATE NOT NULL UNIQUE,
          status VARCHAR(20) NOT NULL,
          events_count INTEGER,
          error_message TEXT,
          created_at TIMESTAMP WITHOUT TIME ZONE,
          updated_at TIMESTAMP WITHOUT TIME ZONE
        )`.execute(db)
      await sql`CREATE INDEX idx_audit_events_log_status ON audit_events_log (status)`.execute(db)
      await sql`CREATE INDEX idx_audit_events_log_process_date_status ON audit_events_log (process_date, status)`.execute(db)
      await sql`CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)`.execute(db)
      await sql`INSERT INTO alembic_version VALUES ('3f2a9c1d7b01')`.execute(db)
      await sql`
        INSERT INTO audit_events_log (process_date, status, events_count, error_message, created_at, updated_at) VALUES
          ('2024-09-25', 'SUCCESS', 120, NULL, '2024-09-26 00:05:00.123456', '2024-09-26 00:07:31.654321'),
          ('2024-09-26', 'FAILED', 0, 'HTTP 503 after retries', '2024-09-27 00:05:00', '2024-09-27 00:06:00'),
          ('2024-09-27', 'ERROR', NULL, 'unexpected response', '2024-09-28 00:05:00', '2024-09-28 00:05:09'),
          ('2024-09-28', 'PROCESSING', 0, NULL, '2024-09-29 00:05:00', '2024-09-29 00:05:00'),
          ('2024-12-31', 'SUCCESS', 7, NULL, '2025-01-01 00:05:00', '2025-01-01 00:05:02')`.execute(db)
      oldValues = await rows(db, OLD_COLUMNS).then((r) => r.map((x) => x.row))
      report = await migrateToLatest(db)
    })

    after(() => db?.destroy())

    it('applies every migration and reports the adopted rows', () => {
      expect(report).to.deep.equal({applied: MIGRATIONS, adoptedRows: 5})
    })

    it('keeps every old value, and the alembic_version table', async () => {
      expect(oldValues).to.have.length(5)
      expect((await rows(db, OLD_COLUMNS)).map((x) => x.row)).to.deep.equal(oldValues)
      const alembic = await rows(db, sql<{version_num: string}>`SELECT version_num FROM alembic_version`)
      expect(alembic).to.deep.equal([{version_num: '3f2a9c1d7b01'}])
    })

    it('ends with the same columns, defaults and indexes as a fresh database', async () => {
      const fresh = openTestDb(testUrl())
      try {
        expect(await tableShape(db)).to.deep.equal(await tableShape(fresh))
      } finally {
        await fresh.destroy()
      }
    })

    it('gives the old rows one attempt and no claim, and reads their naive times as UTC', async () => {
      const all = await db.selectFrom('audit_events_log').selectAll().orderBy('id').execute()
      for (const row of all) {
        expect(row, row.process_date).to.include({attempts: 1, claim_token: null, heartbeat_at: null, started_at: null, finished_at: null})
      }

      expect(all[0].process_date).to.equal('2024-09-25')
      expect(all[0].created_at?.toISOString()).to.equal('2024-09-26T00:05:00.123Z')
      expect(all[0].updated_at?.toISOString()).to.equal('2024-09-26T00:07:31.654Z')
    })

    it('runs the claim protocol on the adopted rows', async () => {
      const failed = await claim(db, '2024-09-26')
      expect(failed.claimed && [failed.previousStatus, failed.row.attempts]).to.deep.equal(['FAILED', 2])
      const error = await claim(db, '2024-09-27')
      expect(error.claimed && [error.previousStatus, error.row.attempts]).to.deep.equal(['ERROR', 2])
      // The old run's PROCESSING row has no heartbeat; its updated_at is long past.
      const crashed = await claim(db, '2024-09-28')
      expect(crashed.claimed && [crashed.previousStatus, crashed.row.attempts]).to.deep.equal(['PROCESSING', 2])
      const done = await claim(db, '2024-09-25')
      expect(done.claimed).to.equal(false)

      // A new day takes its id from the old sequence, past the old rows.
      const fresh = await claim(db, '2024-09-29')
      if (!fresh.claimed) expect.fail('could not claim a new day')
      expect(fresh.row).to.include({attempts: 1, events_count: 0, status: 'PROCESSING'})
      expect(fresh.row.id).to.be.above(5)
      expect(await migrateToLatest(db)).to.deep.equal({applied: [], adoptedRows: undefined})
    })
  })

  describe('dates and times whatever the process’s time zone', () => {
    const originalTz = process.env.TZ
    const DAYS = ['2024-12-31', '2025-01-01', '2024-02-29', '2024-03-01']

    afterEach(() => {
      if (originalTz === undefined) delete process.env.TZ
      else process.env.TZ = originalTz
    })

    for (const [zone, offsetMinutes] of [['America/Los_Angeles', [420, 480]], ['Asia/Tokyo', [-540]]] as const) {
      it(`keeps days as strings and reads naive UTC times right under TZ=${zone}`, async () => {
        process.env.TZ = zone
        expect(offsetMinutes, 'Node picked up TZ').to.include(new Date('2024-12-31T12:00:00Z').getTimezoneOffset())
        // The session runs in the same zone, as a developer's local server might.
        const url = new URL(testUrl())
        url.searchParams.set('options', `-c TimeZone=${zone}`)
        const db = openTestDb(url.toString())
        try {
          expect((await rows(db, sql<{TimeZone: string}>`SHOW TimeZone`))[0].TimeZone).to.equal(zone)
          await clearLog(db)
          await expectDaysAndTimesRoundTrip(db, DAYS, (day) => claim(db, day))

          // The cleanup's reason names the heartbeat in UTC, not in the session's zone.
          await backdateHeartbeat(db, '2024-12-31', 16 * 60)
          const lastBeat = (await findDay(db, '2024-12-31'))!.heartbeat_at!
          expect((await cleanupStale(db, STALE_AFTER)).map((c) => c.day)).to.deep.equal(['2024-12-31'])
          const reason = (await findDay(db, '2024-12-31'))!.error_message
          expect(reason).to.include(`no heartbeat since ${lastBeat.toISOString().replace(/\.\d{3}Z$/, 'Z')}`)
        } finally {
          await clearLog(db)
          await db.destroy()
        }
      })
    }
  })

  describe('connection', () => {
    const HEROKU_URL = `postgres://u:${SENTINEL}@ec2-1-2-3-4.compute-1.amazonaws.com:5432/d`
    const config = (url: string, ssl: PostgresDatabaseConfig['ssl'] = 'auto'): PostgresDatabaseConfig => ({kind: 'postgres', url, ssl})

    it('chooses TLS from the host, the URL’s sslmode and DATABASE_SSL', () => {
      const cases: Array<[string, PostgresDatabaseConfig['ssl'], ReturnType<typeof sslOptions>]> = [
        [HEROKU_URL, 'auto', {rejectUnauthorized: false}],
        ['postgres://u:p@localhost:5432/d', 'auto', false],
        ['postgres://u:p@127.0.0.1:5432/d', 'auto', false],
        ['postgres://u:p@[::1]:5432/d', 'auto', false],
        ['postgres:///d?host=/var/run/postgresql', 'auto', false],
        ['postgres://u@%2Fvar%2Frun%2Fpostgresql/d', 'auto', false],
        ['postgres:///d', 'auto', false],
        [`${HEROKU_URL}?sslmode=disable`, 'auto', false],
        ['postgres://u:p@localhost:5432/d?sslmode=require', 'auto', {rejectUnauthorized: false}],
        [`${HEROKU_URL}?sslmode=verify-full`, 'auto', {rejectUnauthorized: true}],
        [HEROKU_URL, 'disable', false],
        [HEROKU_URL, 'verify', {rejectUnauthorized: true}],
        ['postgres://u:p@localhost:5432/d', 'no-verify', {rejectUnauthorized: false}],
        [`${HEROKU_URL}?sslmode=verify-full`, 'no-verify', {rejectUnauthorized: false}],
      ]
      for (const [url, ssl, expected] of cases) {
        expect(sslOptions(config(url, ssl)), `${url} with DATABASE_SSL=${ssl}`).to.deep.equal(expected)
      }
    })

    it('describes the database without its password', () => {
      expect(describeDatabase(config(HEROKU_URL))).to.equal('ec2-1-2-3-4.compute-1.amazonaws.com:5432/d')
      expect(describeDatabase(config('postgres:///d?host=/var/run/postgresql'))).to.equal('/var/run/postgresql/d')
      expect(describeDatabase(config('postgres://u@%2Fvar%2Frun%2Fpostgresql/d'))).to.equal('/var/run/postgresql/d')
      expect(describeDatabase(config('postgres:///d'))).to.equal('localhost/d')
      const encoded = `postgres://u:${encodeURIComponent(`${SENTINEL}@:/?#`)}@db.example.com/d`
      for (const url of [HEROKU_URL, encoded, `${HEROKU_URL}?sslmode=require`]) {
        expect(describeDatabase(config(url))).to.not.include(SENTINEL)
      }
    })

    it('maps pg errors to one safe line', () => {
      const where = 'ec2-1-2-3-4.compute-1.amazonaws.com:5432/d'
      const refused = Object.assign(new Error('connect ECONNREFUSED 10.0.0.1:5432'), {code: 'ECONNREFUSED'})
      expect(describeDbError(refused, config(HEROKU_URL))).to.equal(`cannot reach the database at ${where} (ECONNREFUSED)`)
      const leaky = new Error(`could not connect to ${HEROKU_URL}`)
      const text = describeDbError(leaky, config(HEROKU_URL))
      expect(text).to.include(where)
      expect(text).to.not.include(SENTINEL)
    })

    it('tells connection errors from query errors', async () => {
      const missing = new URL(testUrl())
      missing.pathname = `/audit_logger_test_missing_${randomUUID().slice(0, 8)}`
      const nowhere = createDb(config(missing.toString(), 'disable'))
      const noDatabase = await rejectionOf(sql`SELECT 1`.execute(nowhere))
      await nowhere.destroy()
      expect(isConnectionError(noDatabase), noDatabase.message).to.equal(true)

      const db = createDb(config(testUrl(), 'disable'))
      const syntax = await rejectionOf(sql`SELEC 1`.execute(db))
      await db.destroy()
      expect(isConnectionError(syntax), syntax.message).to.equal(false)

      expect(isConnectionError(Object.assign(new Error('x'), {code: 'ECONNREFUSED'}))).to.equal(true)
      expect(isConnectionError(Object.assign(new Error('password authentication failed'), {code: '28P01'}))).to.equal(true)
      expect(isConnectionError(Object.assign(new Error('duplicate key'), {code: '23505'}))).to.equal(false)
    })

    it('connects to a database that answers', async () => {
      const db = await connectDb(config(withSentinelPassword(testUrl()), 'disable'))
      try {
        expect((await rows(db, sql<{one: number}>`SELECT 1 AS one`))[0].one).to.equal(1)
      } finally {
        await db.destroy()
      }
    })

    it('fails fast on a closed port with a usage error naming host:port, not the password', async () => {
      const started = Date.now()
      const error = await rejectionOf(connectDb(config(`postgres://audit:${SENTINEL}@127.0.0.1:1/audit`)))
      expect(Date.now() - started).to.be.below(5000)
      expect(error).to.be.instanceOf(UsageError)
      expect(error.message).to.include('127.0.0.1:1')
      expect(error.message).to.not.include(SENTINEL)
      expect((error as UsageError).hint ?? '').to.not.include(SENTINEL)
    })

    it('gives up on a server that accepts but never answers within seconds', async function () {
      this.timeout(15_000)
      const sockets = new Set<net.Socket>()
      const silent = net.createServer((socket) => sockets.add(socket))
      await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
      const {port} = silent.address() as net.AddressInfo
      try {
        const started = Date.now()
        const error = await rejectionOf(connectDb(config(`postgres://audit:${SENTINEL}@127.0.0.1:${port}/audit`)))
        expect(Date.now() - started).to.be.within(4000, 9000)
        expect(error).to.be.instanceOf(UsageError)
        expect(error.message).to.include(`127.0.0.1:${port}`).and.to.include('timed out')
        expect(error.message).to.not.include(SENTINEL)
      } finally {
        for (const socket of sockets) socket.destroy()
        await new Promise((resolve) => silent.close(resolve))
      }
    })

    it('survives an idle connection being terminated, and the next query works', async () => {
      const appName = `audit-logger-test-${randomUUID().slice(0, 8)}`
      const idleErrors: string[] = []
      const db = createDb(config(withSentinelPassword(testUrl()), 'disable'), {applicationName: appName, onIdleError: (m) => idleErrors.push(m)})
      const killer = new pg.Client({connectionString: testUrl()})
      await killer.connect()
      try {
        const backendPid = async () => (await rows(db, sql<{pid: number}>`SELECT pg_backend_pid() AS pid`))[0].pid
        const firstPid = await backendPid()
        const killed = await killer.query(
          'SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()',
          [appName],
        )
        expect(killed.rows).to.deep.equal([{ok: true}])

        for (let waited = 0; idleErrors.length === 0 && waited < 5000; waited += 50) await new Promise((r) => setTimeout(r, 50))
        expect(idleErrors).to.have.length(1)
        expect(idleErrors[0]).to.include(describeDatabase(config(testUrl()))).and.to.not.include(SENTINEL)
        expect(await backendPid()).to.be.a('number').and.not.equal(firstPid)
      } finally {
        await killer.end()
        await db.destroy()
      }
    })
  })
}, 'tests PostgreSQL itself: scratch databases, connections, TLS, time zones')
