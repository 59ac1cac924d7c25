import {isUtf8} from 'node:buffer'
import {once} from 'node:events'

import {Kysely, PostgresDialect, sql} from 'kysely'
import type pg from 'pg'
import {from as copyFrom} from 'pg-copy-streams'

import type {AuditEvent} from '../heroku/types.js'
import {jsonArrayElements} from '../output/json-elements.js'
import type {Database} from './schema.js'

/*
 * The event store (table audit_events, 2025-10-05 migration): writing a day's events in bulk
 * inside the day's own transaction, and the month partitions they go to.
 */

/** An event as it is stored: its JSON text as the API sent it, and the columns searches use. */
export interface EventRecord {
  day: string
  id: string
  /** The event's JSON text, or its UTF-8 bytes (a view into the page: no copy until it is loaded). */
  json: string | Uint8Array
  createdAt: string
  type: string
  action: string
  actorEmail: string | null
  actorId: string | null
  appName: string | null
  appId: string | null
  ownerEmail: string | null
  teamName: string | null
  ipAddress: string | null
  account: string | null
}

/** An event the store cannot keep: the day fails, naming it, and nothing of it is stored. */
export class UnstorableEvent extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'UnstorableEvent'
  }
}

/**
 * Longest value kept in a search column. An index entry must stay far below PostgreSQL's limit
 * (about 2,700 bytes); real emails, app names and addresses are much shorter. The whole value is
 * always in the stored JSON.
 */
export const MAX_COLUMN_CHARS = 256

/** A search column's value: a string, without NUL (text cannot hold it), cut to MAX_COLUMN_CHARS. */
function column(value: unknown): string | null {
  if (typeof value !== 'string' && typeof value !== 'number') return null
  const text = String(value).replaceAll('\u0000', '')
  return text.length > MAX_COLUMN_CHARS ? text.slice(0, MAX_COLUMN_CHARS) : text
}

function field(object: unknown, name: string): unknown {
  return typeof object === 'object' && object !== null ? (object as Record<string, unknown>)[name] : undefined
}

/** Earliest and latest instants PostgreSQL's timestamptz and JavaScript's Date both hold. */
const EARLIEST = Date.parse('0001-01-01T00:00:00.000Z')
const LATEST = Date.UTC(9999, 11, 31, 23, 59, 59, 999)

/**
 * An event's id and created_at (as an ISO instant), checked: throws UnstorableEvent, naming the
 * event as `where` says (called only then), for an id that is not a usable string or a created_at that is not a real time.
 */
export function eventIdentity(event: AuditEvent, where: () => string): {id: string; createdAt: string} {
  if (typeof event.id !== 'string' || event.id === '' || event.id.includes('\u0000') || event.id.length > MAX_COLUMN_CHARS) {
    throw new UnstorableEvent(`${where()} has no usable id (a non-empty string of at most ${MAX_COLUMN_CHARS} characters): nothing of the day is stored`)
  }

  if (typeof event.created_at === 'string' && isCanonicalInstant(event.created_at)) return {id: event.id, createdAt: event.created_at}
  const created = typeof event.created_at === 'string' ? Date.parse(event.created_at) : Number.NaN
  if (Number.isNaN(created) || created < EARLIEST || created > LATEST) {
    throw new UnstorableEvent(`${where()} (id ${event.id}) has no created_at that is a real time: nothing of the day is stored`)
  }

  return {id: event.id, createdAt: new Date(created).toISOString()}
}

/** UTC to the second, or to the millisecond: the shapes Heroku writes, and what toISOString would give back (no fraction, or "Z" instead of ".000Z", aside). */
const CANONICAL_INSTANT = /^(\d{4})-(\d{2})-(\d{2})T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{3})?Z$/

/**
 * Is this created_at already an exact UTC instant that needs no normalising: a real calendar
 * date, from year 1? Most are, and checking them is several times cheaper than Date.parse and
 * toISOString (a month's archive holds millions). Anything else takes the long way.
 */
function isCanonicalInstant(text: string): boolean {
  const parts = CANONICAL_INSTANT.exec(text)
  if (!parts) return false
  const year = Number(parts[1])
  const month = Number(parts[2])
  const day = Number(parts[3])
  if (year < 1 || month < 1 || month > 12 || day < 1) return false
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0)
  return day <= (month === 2 ? (leap ? 29 : 28) : [4, 6, 9, 11].includes(month) ? 30 : 31)
}

/**
 * The record of one event of `day`. Throws UnstorableEvent for an event without an id or a
 * created_at that is a real time: it could be neither found nor ordered.
 */
export function eventRecord(
  day: string,
  event: AuditEvent,
  json: string | Uint8Array,
  position: number,
  /** The event's eventIdentity, when the caller has it already. */
  identity?: {id: string; createdAt: string},
): EventRecord {
  const {id, createdAt} = identity ?? eventIdentity(event, () => `event ${position} of ${day}`)
  const account = field(event.enterprise_account, 'name') ?? field(event.enterprise_account, 'id')
  return {
    day,
    id,
    json,
    createdAt,
    type: column(event.type) ?? '',
    action: column(event.action) ?? '',
    actorEmail: column(field(event.actor, 'email')),
    actorId: column(field(event.actor, 'id')),
    appName: column(field(event.app, 'name')),
    appId: column(field(event.app, 'id')),
    ownerEmail: column(field(event.owner, 'email')),
    teamName: column(field(event.team, 'name')),
    ipAddress: column(field(event.request, 'ip_address')),
    account: column(account),
  }
}

/**
 * Each event's JSON text as the API sent it: its bytes in the page (views, not copies: a big day's
 * events are not decoded into strings only to be encoded again for COPY); JSON.stringify of the
 * parsed event where the bytes cannot be used (not UTF-8, or not matching the parsed events).
 */
export function eventTexts(events: readonly AuditEvent[], body?: Uint8Array): Array<string | Uint8Array> {
  if (body && isUtf8(body)) {
    const spans = jsonArrayElements(body)
    if (spans && spans.length === events.length * 2) {
      const bytes = asBuffer(body)
      return events.map((_, k) => bytes.subarray(spans[2 * k], spans[2 * k + 1]))
    }
  }

  return events.map((event) => JSON.stringify(event))
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

/** The event's JSON as text. */
export function jsonText(json: string | Uint8Array): string {
  return typeof json === 'string' ? json : asBuffer(json).toString('utf8')
}

const COLUMNS = ['day', 'id', 'event_json', 'created_at', 'type', 'action', 'actor_email', 'actor_id', 'app_name', 'app_id', 'owner_email', 'team_name', 'ip_address', 'account'] as const

function values(record: EventRecord): Array<string | null> {
  return [
    record.day,
    record.id,
    jsonText(record.json),
    record.createdAt,
    record.type,
    record.action,
    record.actorEmail,
    record.actorId,
    record.appName,
    record.appId,
    record.ownerEmail,
    record.teamName,
    record.ipAddress,
    record.account,
  ]
}

const COPY_ESCAPES: Record<string, string> = {'\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r'}
const NEEDS_ESCAPE = /[\\\t\n\r]/

/** One value in COPY's text format: \N for NULL; backslash, tab, newline and CR escaped. */
function copyValue(value: string | null): string {
  if (value === null) return '\\N'
  return NEEDS_ESCAPE.test(value) ? value.replaceAll(/[\\\t\n\r]/g, (c) => COPY_ESCAPES[c]) : value
}

/** Does this UTF-8 text hold a byte COPY's text format escapes? */
function needsEscape(bytes: Buffer): boolean {
  return bytes.includes(0x5c) || bytes.includes(0x09) || bytes.includes(0x0a) || bytes.includes(0x0d)
}

/**
 * Writes pages of rows in COPY's text format as UTF-8 into one buffer, reused from page to page
 * and grown as needed, each event's JSON copied from the page's bytes: a big day's COPY data
 * then makes next to no garbage. What it returns is valid until the next call.
 */
export function copyWriter(): (records: readonly EventRecord[]) => Buffer {
  let bytes = Buffer.allocUnsafe(1024 * 1024)
  let used = 0
  const room = (size: number) => {
    if (used + size <= bytes.length) return
    const bigger = Buffer.allocUnsafe(Math.max(2 * bytes.length, used + size))
    bytes.copy(bigger, 0, 0, used)
    bytes = bigger
  }

  // UTF-8 takes at most 3 bytes for each UTF-16 unit.
  const text = (value: string) => {
    room(value.length * 3)
    used += bytes.write(value, used)
  }

  const v = copyValue
  return (records) => {
    used = 0
    for (const r of records) {
      // `day` and `createdAt` are ours, never escaped.
      text(`${r.day}\t${v(r.id)}\t`)
      const json = typeof r.json === 'string' ? undefined : asBuffer(r.json)
      if (json && !needsEscape(json)) {
        room(json.length)
        used += json.copy(bytes, used)
      } else {
        text(v(jsonText(r.json)))
      }

      text(`\t${r.createdAt}\t${v(r.type)}\t${v(r.action)}\t${v(r.actorEmail)}\t${v(r.actorId)}\t${v(r.appName)}\t${v(r.appId)}\t${v(r.ownerEmail)}\t${v(r.teamName)}\t${v(r.ipAddress)}\t${v(r.account)}\n`)
    }

    return bytes.subarray(0, used)
  }
}

/**
 * Appends records to audit_events (or the transaction's load target, or `into`), within the
 * transaction it was handed with. The records are encoded before it returns: the caller may drop
 * them while the promise is pending, and must wait for it before the next call.
 */
export type AppendEvents = (records: readonly EventRecord[], into?: LoadTarget) => Promise<void>

/** Where a store transaction's loader writes: the store itself, or the staging table (see staging-queries.ts). */
export type LoadTarget = 'audit_events' | 'audit_staged_events' | MonthTable

/** A month's table being loaded before it is attached as the store's partition (see staging-queries.ts, newMonthTable). */
export type MonthTable = `audit_events_y${string}`

export interface EventStore {
  /**
   * Runs `work` in one transaction on a connection of its own, handing it the transaction and a
   * bulk loader into audit_events, or into `into` (COPY on PostgreSQL). Committed when `work`
   * resolves, rolled back when it throws: a day's events are stored together with its record, or
   * not at all.
   */
  transaction<T>(work: (trx: Kysely<Database>, append: AppendEvents) => Promise<T>, into?: LoadTarget): Promise<T>
}

/** The pools behind the PostgreSQL databases createDb made, so their store can COPY on a client of its own. */
const pools = new WeakMap<Kysely<Database>, pg.Pool>()

export function registerPool(db: Kysely<Database>, pool: pg.Pool): void {
  pools.set(db, pool)
}

/** Does the table `name` (a month partition, or a month's table being loaded) exist, as this session sees it? */
export async function partitionExists(db: Kysely<Database>, name: string): Promise<boolean> {
  const found = await sql<{exists: boolean}>`SELECT to_regclass(${name}) IS NOT NULL AS exists`.execute(db)
  return found.rows[0]?.exists === true
}

/** Is `db` a PostgreSQL server's (rather than the embedded engine, which runs inside this process)? */
export function onServer(db: Kysely<Database>): boolean {
  return pools.has(db)
}

/** The store of `db`: COPY on PostgreSQL, a multi-row INSERT per call on the embedded engine. */
export function eventStoreFor(db: Kysely<Database>): EventStore {
  const pool = pools.get(db)
  return pool ? postgresEventStore(pool) : kyselyEventStore(db)
}

/**
 * A Kysely over one checked-out client: every statement, COPY included, in the same session.
 * `before` runs ahead of each statement (it waits for the COPY in flight).
 */
function overClient(client: pg.PoolClient, before: () => Promise<void>): Kysely<Database> {
  const session = {
    async query(text: string, parameters: unknown[]) {
      await before()
      return client.query(text, parameters)
    },
    release() {},
  }
  return new Kysely<Database>({dialect: new PostgresDialect({pool: {connect: async () => session, end: async () => {}} as unknown as pg.Pool})})
}

/** How long a COPY stays open with no append before it is ended: the caller is fetching, or backing off. */
const COPY_IDLE_MS = 500
/** The longest one COPY is kept open: a server's statement_timeout counts it as one statement. */
const COPY_MAX_MS = 5000

interface OpenCopy {
  target: LoadTarget
  stream: ReturnType<typeof copyFrom>
  /** Settles once the server has loaded everything sent, or with the COPY's failure. */
  finished: Promise<unknown>
  /** Set when the COPY fails: nothing more is written to it, and it is not ended (its connection is gone). */
  failed: boolean
  openedAt: number
  idle?: NodeJS.Timeout
}

/**
 * Loads rows with COPY on one session. A COPY stays open while appends to the same table follow
 * each other: each call's rows stream to the server at once, and the server loads them while the
 * caller reads the next page or batch, with no statement (and no round trip) per call. It is
 * ended when the appends pause (COPY_IDLE_MS), after COPY_MAX_MS, and before anything else on the
 * session: an append to another table, any statement, the commit (settle). settle() waits for the
 * server to finish it, so a failed COPY is reported by that step, as itself, or by the next append.
 */
function copyLoader(client: pg.PoolClient): {write: (rows: Buffer, target: LoadTarget) => Promise<void>; settle: () => Promise<void>} {
  let open: OpenCopy | undefined
  /** A COPY ended (by the idle timer, or settle) whose outcome is still to be awaited. */
  let ending: Promise<unknown> | undefined

  const end = () => {
    const current = open
    if (!current) return
    open = undefined
    clearTimeout(current.idle)
    if (!current.failed) current.stream.end()
    ending = current.finished
  }

  const settle = async () => {
    end()
    const pending = ending
    ending = undefined
    await pending
  }

  const start = (target: LoadTarget): OpenCopy => {
    // A month table made in this transaction (newMonthTable) takes its rows frozen and marked
    // all-visible at once: no vacuum needs to visit them, and index-only scans can.
    const freeze = target === 'audit_events' || target === 'audit_staged_events' ? '' : ' WITH (FREEZE)'
    const stream = client.query(copyFrom(`COPY ${client.escapeIdentifier(target)} (${COLUMNS.join(', ')}) FROM STDIN${freeze}`))
    const current: OpenCopy = {target, stream, finished: once(stream, 'finish'), failed: false, openedAt: Date.now()}
    // For good: once the COPY failed, the driver has let go of the stream, and ending or writing
    // to it would throw again, where nothing listens.
    stream.on('error', () => {
      current.failed = true
    })
    // Surfaced by settle() or the next append; never an unhandled rejection meanwhile.
    current.finished.catch(() => {})
    return current
  }

  const write = async (rows: Buffer, target: LoadTarget) => {
    if (open && (open.failed || open.target !== target || Date.now() - open.openedAt > COPY_MAX_MS)) await settle()
    if (!open) {
      // One ended meanwhile (the appends had paused): its outcome first.
      await settle()
      open = start(target)
    }

    const current = open
    clearTimeout(current.idle)
    // Back-pressure: returns once the socket has taken the rows, or with the COPY's failure.
    await Promise.race([
      new Promise<void>((resolve, reject) => {
        current.stream.write(rows, (error) => (error ? reject(error) : resolve()))
      }),
      current.finished,
    ])
    if (open === current) {
      current.idle = setTimeout(end, COPY_IDLE_MS)
      current.idle.unref()
    }
  }

  return {write, settle}
}

function postgresEventStore(pool: pg.Pool): EventStore {
  return {
    async transaction(work, into = 'audit_events') {
      const client = await pool.connect()
      let failure: unknown
      const {write, settle} = copyLoader(client)
      const writer = copyWriter()
      try {
        const append: AppendEvents = async (records, target = into) => {
          if (records.length === 0) return
          // Encoded at once, before waiting, into bytes of their own (the socket may still hold
          // them after the write returns): the records can be dropped while this call is pending,
          // rather than live long enough to reach the old generation.
          await write(Buffer.from(writer(records)), target)
        }

        return await overClient(client, settle).transaction().execute(async (trx) => {
          try {
            const result = await work(trx, append)
            await settle()
            return result
          } catch (error) {
            // The rollback must not wait on, or report, a COPY that failed after this error.
            await settle().catch(() => {})
            throw error
          }
        })
      } catch (error) {
        failure = error
        throw error
      } finally {
        // A client whose session broke (a killed connection, a failed COPY) is not reused.
        client.release(failure instanceof Error && !(failure instanceof UnstorableEvent) ? failure : undefined)
      }
    },
  }
}

/** The store's columns, in the order its loaders write them. */
export const STORE_COLUMNS = COLUMNS

/** One INSERT … SELECT FROM unnest(…) per call: one statement per page, whatever its size. */
function kyselyEventStore(db: Kysely<Database>): EventStore {
  return {
    transaction(work, into = 'audit_events') {
      return db.transaction().execute((trx) =>
        work(trx, async (records, target = into) => {
          if (records.length === 0) return
          const rows = records.map((record) => values(record))
          const columns = COLUMNS.map((_, k) => rows.map((row) => row[k]))
          await sql`
            INSERT INTO ${sql.table(target)} (${sql.join(COLUMNS.map((name) => sql.ref(name)))})
            SELECT * FROM unnest(
              ${columns[0]}::date[], ${columns[1]}::text[], ${columns[2]}::text[], ${columns[3]}::timestamptz[],
              ${columns[4]}::text[], ${columns[5]}::text[], ${columns[6]}::text[], ${columns[7]}::text[], ${columns[8]}::text[],
              ${columns[9]}::text[], ${columns[10]}::text[], ${columns[11]}::text[], ${columns[12]}::text[], ${columns[13]}::text[])
          `.execute(trx)
        }),
      )
    },
  }
}

/** The month partition a day belongs to: its name and bounds. */
export function partitionOf(day: string): {name: MonthTable; from: string; to: string} {
  const [year, month] = day.split('-').map(Number)
  const next = month === 12 ? `${String(year + 1).padStart(4, '0')}-01-01` : `${String(year).padStart(4, '0')}-${String(month + 1).padStart(2, '0')}-01`
  return {name: `audit_events_y${String(year).padStart(4, '0')}m${String(month).padStart(2, '0')}` as MonthTable, from: `${day.slice(0, 7)}-01`, to: next}
}

/** How long DDL on audit_events waits for its lock before giving up for now (see ensurePartitions). */
export const DDL_LOCK_TIMEOUT_MS = 2000
const DDL_TRIES = 10

/** Is this PostgreSQL's "canceling statement due to lock timeout"? */
export function isLockTimeout(error: unknown): boolean {
  return (error as {code?: unknown} | null)?.code === '55P03'
}

/**
 * Runs DDL on audit_events in a short transaction of its own, waiting at most DDL_LOCK_TIMEOUT_MS
 * for its lock. Creating or dropping a partition locks the whole table, so it waits for every day
 * being stored meanwhile, and every reader queues behind it: a short wait keeps the status page
 * and the other runs moving; the caller decides whether to try again.
 */
export async function shortDdl(db: Kysely<Database>, statement: ReturnType<typeof sql>): Promise<void> {
  await db.transaction().execute(async (trx) => {
    await sql`SELECT set_config('lock_timeout', ${`${DDL_LOCK_TIMEOUT_MS}ms`}, true)`.execute(trx)
    await statement.execute(trx)
  })
}

/**
 * Creates the month partitions these days need, each in a short transaction of its own (never
 * inside a day's, which holds the table for the whole day). A partition that exists costs one
 * catalog lookup; one made by a concurrent run meanwhile is taken as made. Tries again while
 * other runs' days hold the table, up to about 20 s, then fails.
 */
export async function ensurePartitions(db: Kysely<Database>, days: Iterable<string>): Promise<void> {
  const months = new Map<string, ReturnType<typeof partitionOf>>()
  for (const day of days) {
    const partition = partitionOf(day)
    months.set(partition.name, partition)
  }

  for (const {name, from, to} of months.values()) {
    if (madeHere.get(db)?.has(name)) continue
    for (let tried = 1; ; tried++) {
      if (await partitionExists(db, name)) break
      try {
        await shortDdl(db, sql`CREATE TABLE IF NOT EXISTS ${sql.table(name)} PARTITION OF audit_events FOR VALUES FROM (${sql.lit(from)}) TO (${sql.lit(to)})`)
        break
      } catch (error) {
        // Two runs creating the same month at once: one wins, the other finds it made next time round.
        const raced = (error as {code?: unknown} | null)?.code === '42P07' || (error as {code?: unknown} | null)?.code === '23505'
        if (!(raced || isLockTimeout(error)) || tried >= DDL_TRIES) {
          throw new Error(`could not create the event store's partition ${name}: ${(error as Error).message}`)
        }
      }
    }

    if (!madeHere.has(db)) madeHere.set(db, new Set())
    madeHere.get(db)!.add(name)
  }
}

/**
 * Partitions this process has seen exist, per database: a range asks once per month, not once
 * per day. Only retention drops partitions, and only months before the window, which no run stores into.
 */
const madeHere = new WeakMap<Kysely<Database>, Set<string>>()
