/**
 * Real PostgreSQL for the tests: each run gets databases of its own, created here and dropped at
 * the end; nothing else on the server is touched. TEST_DATABASE_ADMIN_URL points at the server
 * (default: postgres@127.0.0.1:5432, trust auth as on the CI machine).
 */
import {randomBytes} from 'node:crypto'

import {Kysely, sql} from 'kysely'
import pg from 'pg'

import {createDb} from '../../src/lib/db/connection.js'
import type {Database} from '../../src/lib/db/schema.js'

export const ADMIN_URL = process.env.TEST_DATABASE_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'

const created: string[] = []

function urlFor(database: string): string {
  const url = new URL(ADMIN_URL)
  url.pathname = `/${database}`
  return url.toString()
}

async function admin<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({connectionString: ADMIN_URL})
  await client.connect()
  try {
    return await work(client)
  } finally {
    await client.end()
  }
}

/** A new, empty database (no tables) for this run; returns its URL. Dropped by dropScratchDatabases. */
export async function createScratchDatabase(label = 'scratch'): Promise<string> {
  const name = `audit_logger_test_${label}_${process.pid}_${randomBytes(3).toString('hex')}`
  await admin((client) => client.query(`CREATE DATABASE ${name}`))
  created.push(name)
  return urlFor(name)
}

export async function dropScratchDatabases(): Promise<void> {
  await admin(async (client) => {
    for (const name of created.splice(0)) await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
  })
}

/** A Kysely instance on a URL, with the project's own pool settings. */
export function openTestDb(url: string): Kysely<Database> {
  return createDb({url, ssl: 'disable'}, {max: 8})
}

/** Empties the table between tests. */
export async function clearLog(db: Kysely<Database>): Promise<void> {
  await sql`TRUNCATE audit_events_log RESTART IDENTITY`.execute(db)
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
