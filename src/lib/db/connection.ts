import {Kysely, PostgresDialect} from 'kysely'
import pg from 'pg'

import type {DatabaseConfig, PostgresDatabaseConfig} from '../config.js'
import {UsageError} from '../errors.js'
import {redact, withoutUserinfo} from '../secrets.js'
import {registerPool} from './event-store.js'
import type {Database} from './schema.js'

const OID = {int8: 20, date: 1082, timestamp: 1114} as const

/** What the PostgreSQL functions below need of the configuration. */
export type PostgresTarget = Pick<PostgresDatabaseConfig, 'url' | 'ssl'>

/**
 * Kysely never converts driver values, so the conversions live here, per pool rather than
 * globally: a `date` stays 'YYYY-MM-DD' whatever the process's time zone, a naive `timestamp`
 * (the old tool wrote UTC) is read as UTC, and bigint counts become numbers. The embedded
 * engine's dialect (pglite-dialect.ts) reads values through these same parsers.
 */
export const typeParsers = {
  getTypeParser(oid: number, format?: string) {
    switch (oid) {
      case OID.date: {
        return (value: string) => value
      }

      case OID.timestamp: {
        return (value: string) => new Date(`${value.replace(' ', 'T')}Z`)
      }

      case OID.int8: {
        return (value: string) => Number(value)
      }

      default: {
        return pg.types.getTypeParser(oid, format as 'text')
      }
    }
  },
}

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '::1', '[::1]', ''])

/**
 * TLS for the connection. Heroku Postgres requires TLS with a certificate Node cannot verify, and
 * its DATABASE_URL carries no sslmode, so `auto` means: no TLS for loopback and sockets, TLS
 * without verification elsewhere, unless the URL's sslmode says otherwise. DATABASE_SSL overrides.
 */
export function sslOptions(config: PostgresTarget): false | {rejectUnauthorized: boolean} {
  const url = new URL(config.url)
  const mode = config.ssl === 'auto' ? sslModeFromUrl(url) : config.ssl
  if (mode === 'disable') return false
  if (mode === 'verify') return {rejectUnauthorized: true}
  return {rejectUnauthorized: false}
}

function sslModeFromUrl(url: URL): Exclude<PostgresTarget['ssl'], 'auto'> {
  const sslmode = url.searchParams.get('sslmode')
  if (sslmode === 'disable' || sslmode === 'allow' || sslmode === 'prefer') return 'disable'
  if (sslmode === 'verify-ca' || sslmode === 'verify-full') return 'verify'
  if (sslmode === 'require' || sslmode === 'no-verify') return 'no-verify'
  const host = url.searchParams.get('host') ?? hostOf(url)
  return LOOPBACK_HOSTS.has(host) || host.startsWith('/') ? 'disable' : 'no-verify'
}

/** The URL's host as pg reads it: a socket directory may be percent-encoded (postgres://u@%2Ftmp/d). */
function hostOf(url: URL): string {
  try {
    return decodeURIComponent(url.hostname)
  } catch {
    return url.hostname
  }
}

/** The URL without TLS parameters: pg lets them override the `ssl` option we compute. */
export function withoutSslParams(url: string): string {
  const parsed = new URL(url)
  for (const key of ['sslmode', 'ssl', 'sslcert', 'sslkey', 'sslrootcert', 'uselibpqcompat']) parsed.searchParams.delete(key)
  return parsed.toString()
}

/**
 * host:port/database for messages; never the user or the password. Read from what follows the
 * URL's last @, not from the parsed URL: a password holding an unencoded / ? or # ends the
 * parser's user:password part early, and the rest of it would show as the host, port or path.
 */
export function describeDatabase(config: PostgresTarget): string {
  let url: URL
  try {
    url = new URL(withoutUserinfo(config.url))
  } catch {
    return 'the server named in DATABASE_URL'
  }

  const host = url.searchParams.get('host') ?? (hostOf(url) || 'localhost')
  return `${host}${url.port ? `:${url.port}` : ''}${url.pathname}`
}

/**
 * Does the URL's user:password part (up to its last @) hold a / ? or #, which every URL parser
 * (WHATWG's, pg's, libpq's) takes as the end of the authority? Then the connection went to the
 * wrong place, and the fix is to percent-encode them.
 */
export function looksMisSplit(url: string): boolean {
  const start = url.indexOf('//')
  const at = url.lastIndexOf('@')
  return start >= 0 && at > start && /[/?#]/.test(url.slice(start + 2, at))
}

export interface CreateDbOptions {
  /** Pool size; a CLI run needs few connections. */
  max?: number
  /** Called when an idle connection dies (e.g. the server restarts); the pool replaces it. */
  onIdleError?: (message: string) => void
  applicationName?: string
}

export function createDb(config: PostgresTarget, options: CreateDbOptions = {}): Kysely<Database> {
  const pool = new pg.Pool({
    connectionString: withoutSslParams(config.url),
    ssl: sslOptions(config),
    max: options.max ?? 4,
    // An unreachable database must fail within seconds, not hang a scheduler run.
    connectionTimeoutMillis: 5000,
    idleTimeoutMillis: 10_000,
    application_name: options.applicationName ?? 'audit-logger',
    types: typeParsers,
  })
  // Without a listener, an idle client's error (server restart, pg_terminate_backend) crashes the process.
  pool.on('error', (error) => options.onIdleError?.(describeDbError(error, config)))
  // The pool listens only while a client is idle: one checked out (a query in flight, a transaction)
  // whose connection is terminated emits 'error' with no listener, which crashes the process. The
  // query in flight is rejected with the same error and reported by whoever ran it; the pool then
  // drops the dead client on release. So this listener only has to exist.
  pool.on('connect', (client) => client.on('error', ignoreInUseError))
  const db = new Kysely<Database>({dialect: new PostgresDialect({pool})})
  registerPool(db, pool)
  return db
}

const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET'])

/** One safe line for a database error: what failed and where, never the password. */
export function describeDbError(error: unknown, config: DatabaseConfig | PostgresTarget): string {
  const {code, message} = (error ?? {}) as {code?: string; message?: string}
  const text = redact(String(message ?? error))
  // The embedded database runs in this process: there is no server to reach, only queries that fail.
  if ('dataDir' in config) return `database error in the embedded database at ${config.dataDir}: ${text}`
  const where = describeDatabase(config)
  if (code && UNREACHABLE_CODES.has(code)) return `cannot reach the database at ${where} (${code})`
  if (/timeout/i.test(text) && /connect/i.test(text)) return `cannot reach the database at ${where} (connection timed out)`
  return `database error at ${where}: ${text}`
}

function ignoreInUseError(): void {
  // Reported through the rejected query (see createDb).
}

/** Is this error about reaching or logging in to the server (as opposed to a failing query)? */
export function isConnectionError(error: unknown): boolean {
  const {code, message} = (error ?? {}) as {code?: string; message?: string}
  if (code && (UNREACHABLE_CODES.has(code) || code.startsWith('28') || code === '3D000' || code === '57P03')) return true
  return typeof message === 'string' && /(timeout expired|connection terminated|self[- ]signed|certificate|does not support SSL|SSL)/i.test(message)
}

/**
 * Connection-level failures: unreachable, refused, terminated (pg_terminate_backend, a restart),
 * shutting down, out of connection slots, or not accepting connections at all — as opposed to a
 * statement the database refused. What failed this way may succeed on a fresh connection.
 */
export function isDatabaseUnreachable(error: unknown): boolean {
  if (isConnectionError(error)) return true
  const {code, message} = (error ?? {}) as {code?: string; message?: string}
  if (code && (code.startsWith('08') || ['57P01', '57P02', '57P03', '53300'].includes(code))) return true
  return typeof message === 'string' && /(connection terminated|terminating connection|not currently accepting connections|the database system is (starting up|shutting down)|Connection closed|Client has encountered a connection error)/i.test(message)
}

/**
 * Opens the database and checks it answers, so a bad DATABASE_URL is a usage error (exit 2)
 * reported before anything is claimed.
 */
export async function connectDb(config: PostgresTarget, options: CreateDbOptions = {}): Promise<Kysely<Database>> {
  const db = createDb(config, options)
  try {
    await db.selectNoFrom((eb) => eb.val(1).as('one')).execute()
    return db
  } catch (error) {
    await db.destroy().catch(() => {})
    throw new UsageError(describeDbError(error, config), connectHint(error, config.url))
  }
}

export interface OpenedDatabase {
  db: Kysely<Database>
  /** Closes the pool, or the embedded database and the lock on its directory. Safe to call again. */
  close(): Promise<void>
  /** Which database, for one line on stderr: the embedded path, or host and database name; never a password. */
  describe: string
}

/**
 * Opens the configured database: PostgreSQL at DATABASE_URL (checked to answer, as connectDb),
 * or the embedded one in its data directory (held by this process until close). Either failing
 * to open is a usage error. With `createMissing: false`, an embedded database not created yet is
 * not created: an empty stand-in is opened instead. PGlite is loaded only here, so a
 * DATABASE_URL run never loads it.
 */
export async function openDatabase(config: DatabaseConfig, options: CreateDbOptions & {createMissing?: boolean} = {}): Promise<OpenedDatabase> {
  if (config.kind === 'embedded') {
    const {embeddedDatabaseExists, openEmbeddedDb, openStandInEmbeddedDb} = await import('./embedded.js')
    const open = options.createMissing === false && !embeddedDatabaseExists(config.dataDir) ? openStandInEmbeddedDb : openEmbeddedDb
    const {db, close, describe} = await open(config.dataDir)
    return {db, close, describe}
  }

  const db = await connectDb(config, options)
  let closing: Promise<void> | undefined
  return {db, close: () => (closing ??= db.destroy()), describe: `PostgreSQL at ${describeDatabase(config)}`}
}

/**
 * What to do about a failed first connection. A server that answered about TLS is running: the
 * hint says how to change TLS, not to check that it runs.
 */
function connectHint(error: unknown, url: string): string {
  const message = String((error as {message?: unknown} | null)?.message ?? '')
  if (/does not support SSL/i.test(message)) {
    return 'the server does not offer TLS: set DATABASE_SSL=disable (or sslmode=disable in DATABASE_URL) to connect without it, on a network you trust'
  }

  if (/self[- ]signed|certificate|unable to verify/i.test(message)) {
    return "the server's certificate could not be verified: DATABASE_SSL=no-verify keeps TLS without checking it (as Heroku Postgres needs), or install its CA"
  }

  return looksMisSplit(url)
    ? 'if the password in DATABASE_URL holds a /, ? or #, percent-encode it (%2F, %3F, %23): unencoded, it ends the user:password part early; and check that the database server is running'
    : 'check DATABASE_URL and that the database server is running'
}
