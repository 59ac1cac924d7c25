/**
 * The databases the tests run on.
 *
 * - A PostgreSQL server (TEST_DATABASE_ADMIN_URL, default postgres@127.0.0.1:5432 with trust auth,
 *   as on the CI machine): each run creates databases of its own and drops them at the end;
 *   nothing else on the server is touched.
 * - The embedded engine (PGlite): one data directory per run, opened once and shared by every
 *   suite, since PGlite allows one opener per directory per process.
 *
 * root-hooks.ts probes the server before any test file loads. Without one (and CI unset) the run
 * goes on the embedded engine alone: suites declared with describeWithServer are declared skipped,
 * and listed loudly at the start and the end. Under CI a server is required.
 */
import {randomBytes} from 'node:crypto'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {Kysely, sql} from 'kysely'
import pg from 'pg'

import {createDb} from '../../src/lib/db/connection.js'
import {type EmbeddedDb, openEmbeddedDb} from '../../src/lib/db/embedded.js'
import {migrateToLatest} from '../../src/lib/db/migrate.js'
import type {Database} from '../../src/lib/db/schema.js'
import {redact} from '../../src/lib/secrets.js'

export const ADMIN_URL = process.env.TEST_DATABASE_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'

export type EngineName = 'postgres' | 'embedded'

/**
 * The databases this run created, to drop at the end. On globalThis, like the run's state below:
 * root-hooks.ts (an ES module) drops what the test files (loaded through require) created.
 */
const SCRATCH = Symbol.for('audit-logger.test-scratch-databases')
const created: string[] = ((globalThis as {[SCRATCH]?: string[]})[SCRATCH] ??= [])

function urlFor(database: string): string {
  const url = new URL(ADMIN_URL)
  url.pathname = `/${database}`
  return url.toString()
}

/**
 * Runs `work` on a client of the admin database (not a run's), named 'audit-logger-test' so that
 * tests terminating the tool's connections ('audit-logger…') never terminate it.
 */
export async function admin<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({connectionString: ADMIN_URL, application_name: 'audit-logger-test'})
  await client.connect()
  try {
    return await work(client)
  } finally {
    await client.end()
  }
}

/** Does the server answer within a couple of seconds? Undefined if so, else why not (no password in it). */
export async function probeServer(timeoutMs = 2000): Promise<string | undefined> {
  const client = new pg.Client({connectionString: ADMIN_URL, connectionTimeoutMillis: timeoutMs, query_timeout: timeoutMs})
  client.on('error', () => {})
  try {
    await client.connect()
    await client.query('SELECT 1')
    return undefined
  } catch (error) {
    const {code, message} = error as {code?: string; message?: string}
    const text = String(message ?? error)
    return redact(code && !text.includes(code) ? `${text} (${code})` : text)
  } finally {
    await client.end().catch(() => {})
  }
}

/** The server's address for messages, without a password. */
export function adminTarget(): string {
  const url = new URL(ADMIN_URL)
  return `${url.hostname}${url.port ? `:${url.port}` : ''}`
}

/** A new, empty database (no tables) for this run; returns its URL. Dropped by dropScratchDatabases. */
export async function createScratchDatabase(label = 'scratch'): Promise<string> {
  const name = `audit_logger_test_${label}_${process.pid}_${randomBytes(3).toString('hex')}`
  await admin((client) => client.query(`CREATE DATABASE ${name}`))
  created.push(name)
  return urlFor(name)
}

export async function dropScratchDatabases(): Promise<void> {
  if (created.length === 0) return
  await admin(async (client) => {
    for (const name of created.splice(0)) await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
  })
}

// --- which engines this run has -----------------------------------------------------------

/**
 * The run's state lives on globalThis: mocha loads root-hooks.ts as an ES module but the test
 * files through require (tsx compiles them to CommonJS), so each side has its own copy of this
 * module, and only a global is seen by both.
 */
interface RunState {
  server: boolean
  notRun: Array<{title: string; why: string}>
  tempDir?: string
  embedded?: Promise<EmbeddedDb>
  embeddedOpen?: EmbeddedDb
}

const RUN_STATE = Symbol.for('audit-logger.test-run')
const globals = globalThis as {[RUN_STATE]?: RunState}

function run(): RunState {
  const state = globals[RUN_STATE]
  if (!state) throw new Error('the test engines are not set up: run mocha with --require test/support/root-hooks.ts')
  return state
}

/** Called once by root-hooks.ts, before any test file loads. */
export function setServerAvailable(server: boolean): void {
  globals[RUN_STATE] = {server, notRun: []}
}

export function serverAvailable(): boolean {
  return run().server
}

/** The suites this run declared skipped for want of a server, with why. */
export function suitesNotRun(): ReadonlyArray<{title: string; why: string}> {
  return run().notRun
}

function skipForWantOfServer(title: string, why: string, fn: (this: Mocha.Suite) => void): void {
  run().notRun.push({title, why})
  describe.skip(title, fn)
}

/**
 * A suite that needs the PostgreSQL server: it starts bin/run.js processes that share the
 * database, or tests the server connection itself. Without a server it is declared skipped (its
 * tests count as skipped) and named in the run's closing list; under CI the run requires the server.
 */
export function describeWithServer(title: string, fn: (this: Mocha.Suite) => void, why = 'needs a PostgreSQL server'): void {
  if (serverAvailable()) describe(title, fn)
  else skipForWantOfServer(title, why, fn)
}

/** A test that compares with, or needs, the server; as describeWithServer, for one test. */
export function itWithServer(title: string, fn: (this: Mocha.Context) => Promise<void>, why = 'needs a PostgreSQL server'): void {
  if (serverAvailable()) {
    it(title, fn)
  } else {
    run().notRun.push({title, why})
    it.skip(title, fn)
  }
}

export interface TestEngine {
  name: EngineName
  /** The run's database on this engine, migrated; destroy() it in `after` as usual. */
  open(): Promise<Kysely<Database>>
}

/** The database, after checking it is the engine the suite is named for. */
async function onEngine(name: EngineName, db: Kysely<Database>): Promise<Kysely<Database>> {
  const {rows} = await sql<{version: string}>`SELECT version() AS version`.execute(db)
  if (rows[0].version.includes('PGlite') !== (name === 'embedded')) throw new Error(`the [${name}] copy of a suite got ${rows[0].version}`)
  return db
}

const ENGINES: TestEngine[] = [
  {name: 'postgres', open: async () => onEngine('postgres', openTestDb(process.env.TEST_DATABASE_URL))},
  {name: 'embedded', open: async () => onEngine('embedded', await openEmbeddedTestDb())},
]

/**
 * Declares the suite once per engine, as "<title> [postgres]" and "<title> [embedded]", so the
 * same tests prove the repositories and the day job on both. Without a server only the embedded
 * copy runs; the other is declared skipped and listed.
 */
export function describeOnEngines(title: string, body: (this: Mocha.Suite, engine: TestEngine) => void): void {
  for (const engine of ENGINES) {
    const name = `${title} [${engine.name}]`
    const fn = function (this: Mocha.Suite) {
      body.call(this, engine)
    }
    if (engine.name === 'embedded' || serverAvailable()) describe(name, fn)
    else skipForWantOfServer(name, 'its embedded copy ran; this one needs a PostgreSQL server', fn)
  }
}

// --- the run's embedded database ------------------------------------------------------------

/** A scratch directory for this run (the embedded database, a stand-in data folder); removed at the end. */
export function runTempDir(): string {
  const state = run()
  state.tempDir ??= mkdtempSync(join(tmpdir(), 'audit-logger-test-run-'))
  return state.tempDir
}

/** The run's one embedded database, migrated; opened on first use. */
function sharedEmbedded(): Promise<EmbeddedDb> {
  const state = run()
  state.embedded ??= (async () => {
    const embedded = await openEmbeddedDb(join(runTempDir(), 'embedded'))
    await migrateToLatest(embedded.db)
    state.embeddedOpen = embedded
    return embedded
  })()
  return state.embedded
}

/** A handle on the run's shared embedded database, whose destroy() leaves it open for the next suite. */
function handleOn(embedded: EmbeddedDb): Kysely<Database> {
  const handle = embedded.db.withoutPlugins()
  handle.destroy = async () => {}
  return handle
}

/** The run's embedded database, migrated (opened on first use). */
export async function openEmbeddedTestDb(): Promise<Kysely<Database>> {
  return handleOn(await sharedEmbedded())
}

/** Opens the shared embedded database now, so that openTestDb() can hand it out synchronously. */
export async function prepareEmbedded(): Promise<void> {
  await sharedEmbedded()
}

/** Closes the shared embedded database, if opened, and removes the run's scratch directory. */
export async function closeEmbedded(): Promise<void> {
  const state = run()
  const opening = state.embedded
  state.embedded = undefined
  state.embeddedOpen = undefined
  if (opening) await (await opening).close()
  if (state.tempDir) rmSync(state.tempDir, {recursive: true, force: true})
  state.tempDir = undefined
}

/**
 * A Kysely instance on a URL, with the project's own pool settings. Without a URL: the run's
 * main database, which is the embedded one when the run has no server (TEST_DATABASE_URL is set
 * only when it has one), so suites written against TEST_DATABASE_URL run on either.
 */
export function openTestDb(url?: string): Kysely<Database> {
  if (url) return createDb({url, ssl: 'disable'}, {max: 8})
  const {embeddedOpen} = run()
  if (!embeddedOpen) throw new Error('no TEST_DATABASE_URL, and the embedded test database is not open (root-hooks.ts opens it in runs without a server)')
  return handleOn(embeddedOpen)
}

/**
 * A suite's database on `engine`: opened before the suite (and handed to `use`), emptied before
 * each test, emptied and closed after the suite.
 */
export function useEngineDb(engine: TestEngine, use: (db: Kysely<Database>) => void): void {
  let db: Kysely<Database> | undefined
  before(async () => {
    db = await engine.open()
    use(db)
  })

  after(async () => {
    if (!db) return
    await clearLog(db)
    await db.destroy()
  })

  beforeEach(() => clearLog(db!))
}

/** Empties the processing record, the event store, the sinks' outbox, the alerts and the archive checks between tests. */
export async function clearLog(db: Kysely<Database>): Promise<void> {
  await sql`TRUNCATE audit_events_log, audit_events, audit_sink_days, audit_sinks, audit_alerts, audit_archives RESTART IDENTITY`.execute(db)
}

/** Inserts a record as a test fixture; times are offsets in seconds from the database's now(). */
export async function insertRecord(
  db: Kysely<Database>,
  record: {
    day: string
    status: string
    events?: number
    error?: string | null
    attempts?: number
    heartbeatSecondsAgo?: number | null
    claimToken?: string | null
    durationSeconds?: number
  },
): Promise<void> {
  const heartbeat = record.heartbeatSecondsAgo === undefined || record.heartbeatSecondsAgo === null
    ? sql`NULL`
    : sql`now() - make_interval(secs => ${record.heartbeatSecondsAgo})`
  const finished = record.status === 'PROCESSING' ? sql`NULL` : sql`now()`
  await sql`
    INSERT INTO audit_events_log
      (process_date, status, events_count, error_message, created_at, updated_at, attempts, claim_token, heartbeat_at, started_at, finished_at)
    VALUES (${record.day}, ${record.status}, ${record.events ?? 0}, ${record.error ?? null},
      now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc', ${record.attempts ?? 1}, ${record.claimToken ?? null},
      ${heartbeat}, now() - make_interval(secs => ${record.durationSeconds ?? 0}), ${finished})
  `.execute(db)
}

/** Every column of every row, as text, for byte-for-byte comparisons. */
export async function snapshot(db: Kysely<Database>): Promise<string[]> {
  const rows = await sql<{row: string}>`SELECT audit_events_log::text AS row FROM audit_events_log ORDER BY process_date`.execute(db)
  return rows.rows.map((r) => r.row)
}

/** Moves a day's heartbeat into the past by the database's clock, as if its run stopped beating then. */
export async function backdateHeartbeat(db: Kysely<Database>, day: string, secondsAgo: number): Promise<void> {
  await sql`
    UPDATE audit_events_log SET heartbeat_at = now() - make_interval(secs => ${secondsAgo}) WHERE process_date = ${day}
  `.execute(db)
}
