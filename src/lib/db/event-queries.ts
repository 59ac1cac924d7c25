import {type Expression, type ExpressionBuilder, type Kysely, type SqlBool, sql} from 'kysely'

import {isLockTimeout, shortDdl} from './event-store.js'
import type {Database, StoredEventRow} from './schema.js'

/*
 * Reading the event store: searches (keyset-paged, never OFFSET), one event by id, the store's
 * size, and retention. Every query works on both engines.
 */

/** What a search can ask for; every filter is an exact match, the days are collection days (inclusive). */
export interface EventFilter {
  from?: string
  to?: string
  actor?: string
  type?: string
  action?: string
  app?: string
  ip?: string
}

/** A position in the store's order: (day, created_at, id). */
export interface EventCursor {
  day: string
  createdAt: Date
  id: string
}

export type EventOrder = 'newest' | 'oldest'

/** What a search returns of each event: its JSON text as the API sent it, and every search column (a CSV export shows them all). */
export type EventHit = Omit<StoredEventRow, 'collected_at'>

const HIT_COLUMNS = [
  'day',
  'id',
  'created_at',
  'event_json',
  'type',
  'action',
  'actor_email',
  'actor_id',
  'app_name',
  'app_id',
  'owner_email',
  'team_name',
  'ip_address',
  'account',
] as const

export interface EventPage {
  events: EventHit[]
  /** Where the next page starts; undefined after the last one. */
  next?: EventCursor
}

/**
 * One page of matching events, newest or oldest first, after `cursor`. Keyset paging on
 * (day, created_at, id), which every index ends with: no repeats and no gaps while pages are
 * read, even as days are stored meanwhile.
 */
export async function searchEvents(
  db: Kysely<Database>,
  filter: EventFilter,
  options: {order?: EventOrder; cursor?: EventCursor; limit: number},
): Promise<EventPage> {
  return searchPage(db, filter, options, await typesToName(db, filter))
}

/** One page of searchEvents, with the types to name for an action alone already looked up (typesToName). */
async function searchPage(
  db: Kysely<Database>,
  filter: EventFilter,
  options: {order?: EventOrder; cursor?: EventCursor; limit: number},
  types: string[] | undefined,
): Promise<EventPage> {
  const order = options.order ?? 'newest'
  const direction = order === 'newest' ? 'desc' : 'asc'
  let query = db
    .selectFrom('audit_events')
    .select(HIT_COLUMNS)
    .where((eb) => eb.and(conditions(eb, filter)))
    .$if(types !== undefined, (q) => q.where(sql<SqlBool>`type = ANY(${types}::text[])`))
    .orderBy('day', direction)
    .orderBy('created_at', direction)
    .orderBy('id', direction)
    .limit(options.limit + 1)
  const {cursor} = options
  if (cursor) {
    const after = order === 'newest' ? sql`<` : sql`>`
    query = query.where(sql<SqlBool>`(day, created_at, id) ${after} (${cursor.day}::date, ${cursor.createdAt}::timestamptz, ${cursor.id})`)
  }

  const rows = await query.execute()
  const events = rows.slice(0, options.limit)
  const last = events.at(-1)
  return {events, next: rows.length > options.limit && last ? {day: last.day, createdAt: last.created_at, id: last.id} : undefined}
}

/**
 * Every type in the store, by a loose scan of the (type, action, …) index: one probe per type and
 * partition, not a read of the rows. Naming them lets a search for an action alone use that index,
 * where otherwise a rare action (or a misspelt one, matching nothing) walks the whole time index.
 */
export async function storedTypes(db: Kysely<Database>, max = MAX_NAMED_TYPES): Promise<string[] | undefined> {
  // Types come from the API: a store holding more than `max` of them is not listed (the scan stops
  // one past it), and the search goes without naming them.
  const found = await sql<{type: string}>`
    WITH RECURSIVE types (type, n) AS (
      (SELECT type, 1 FROM audit_events ORDER BY type LIMIT 1)
      UNION ALL
      SELECT (SELECT e.type FROM audit_events e WHERE e.type > types.type ORDER BY e.type LIMIT 1), n + 1
      FROM types WHERE types.type IS NOT NULL AND n <= ${max}
    )
    SELECT type FROM types WHERE type IS NOT NULL`.execute(db)
  return found.rows.length > max ? undefined : found.rows.map((row) => row.type)
}

/** Real accounts have a few dozen types; past this many, naming them would cost more than it saves. */
export const MAX_NAMED_TYPES = 1000

/** The types a search names: only for an action without a type (see storedTypes). */
function typesToName(db: Kysely<Database>, filter: EventFilter): Promise<string[] | undefined> {
  return filter.action && !filter.type ? storedTypes(db) : Promise.resolve(undefined)
}

function conditions(eb: ExpressionBuilder<Database, 'audit_events'>, filter: EventFilter): Array<Expression<SqlBool>> {
  const all: Array<Expression<SqlBool>> = []
  if (filter.from) all.push(eb('day', '>=', filter.from))
  if (filter.to) all.push(eb('day', '<=', filter.to))
  if (filter.actor) all.push(eb('actor_email', '=', filter.actor))
  if (filter.type) all.push(eb('type', '=', filter.type))
  if (filter.action) all.push(eb('action', '=', filter.action))
  if (filter.app) all.push(eb('app_name', '=', filter.app))
  if (filter.ip) all.push(eb('ip_address', '=', filter.ip))
  return all
}

/**
 * Every matching event, in order, read `batch` at a time by keyset: memory stays bounded whatever
 * the number of matches, on both engines (the embedded one has no server-side cursor). Stops
 * after `limit` events when given.
 */
export async function* streamEvents(
  db: Kysely<Database>,
  filter: EventFilter,
  options: {order?: EventOrder; limit?: number; batch?: number} = {},
): AsyncGenerator<EventHit> {
  const batch = options.batch ?? 1000
  let left = options.limit ?? Number.POSITIVE_INFINITY
  let cursor: EventCursor | undefined
  // Looked up once for the whole stream, not once a batch.
  const types = await typesToName(db, filter)
  while (left > 0) {
    const page = await searchPage(db, filter, {order: options.order, cursor, limit: Math.min(batch, left)}, types)
    for (const event of page.events) yield event
    left -= page.events.length
    if (!page.next) return
    cursor = page.next
  }
}

/** One event by id; the first day's when (against the rule) it was stored on several. */
export async function findEvent(db: Kysely<Database>, id: string): Promise<StoredEventRow | undefined> {
  return db.selectFrom('audit_events').selectAll().where('id', '=', id).orderBy('day').limit(1).executeTakeFirst()
}

/** How many events are stored for a day. */
export async function countDayEvents(db: Kysely<Database>, day: string): Promise<number> {
  const row = await db.selectFrom('audit_events').select((eb) => eb.fn.countAll<number>().as('n')).where('day', '=', day).executeTakeFirst()
  return Number(row?.n ?? 0)
}

export interface StoreStats {
  events: number
  oldestDay: string | null
  newestDay: string | null
  /** Bytes on disk of every partition, indexes included. */
  bytes: number
  partitions: number
}

/** How much the store holds, for db status. */
export async function storeStats(db: Kysely<Database>): Promise<StoreStats> {
  const counts = await sql<{events: number; oldest: string | null; newest: string | null}>`
    SELECT count(*)::bigint AS events, min(day) AS oldest, max(day) AS newest FROM audit_events`.execute(db)
  const size = await sql<{bytes: number | null; partitions: number}>`
    SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0)::bigint AS bytes, count(*)::int AS partitions
    FROM pg_inherits WHERE inhparent = 'audit_events'::regclass`.execute(db)
  const row = counts.rows[0]
  return {
    events: Number(row?.events ?? 0),
    oldestDay: row?.oldest ?? null,
    newestDay: row?.newest ?? null,
    bytes: Number(size.rows[0]?.bytes ?? 0),
    partitions: size.rows[0]?.partitions ?? 0,
  }
}

export interface PruneResult {
  /** Whole months dropped. */
  droppedPartitions: string[]
  /** Months that were due but in use by a day being stored (lock timeout): the next prune drops them. */
  busyPartitions: string[]
  /** Events deleted from the month that straddles the boundary. */
  deletedEvents: number
}

/**
 * Removes the events of every day before `firstKept`: whole month partitions are dropped (no mass
 * DELETE, no bloat), and only the month that straddles the boundary has rows deleted. The days'
 * processing records stay.
 */
export async function pruneEvents(db: Kysely<Database>, firstKept: string): Promise<PruneResult> {
  const partitions = await sql<{name: string}>`
    SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'audit_events'::regclass ORDER BY c.relname`.execute(db)
  const droppedPartitions: string[] = []
  const busyPartitions: string[] = []
  for (const {name} of partitions.rows) {
    const month = /^audit_events_y(\d{4})m(\d{2})$/.exec(name)
    if (!month) continue
    const year = Number(month[1])
    const next = month[2] === '12' ? `${String(year + 1).padStart(4, '0')}-01-01` : `${month[1]}-${String(Number(month[2]) + 1).padStart(2, '0')}-01`
    if (next > firstKept) continue
    try {
      await shortDdl(db, sql`DROP TABLE IF EXISTS ${sql.table(name)}`)
      droppedPartitions.push(name)
    } catch (error) {
      if (!isLockTimeout(error)) throw error
      busyPartitions.push(name)
    }
  }

  // Only the month that straddles the boundary is left with days to delete; a busy month waits
  // for the next prune rather than being emptied row by row.
  const deleted = await db.deleteFrom('audit_events').where('day', '>=', `${firstKept.slice(0, 7)}-01`).where('day', '<', firstKept).executeTakeFirst()
  return {droppedPartitions, busyPartitions, deletedEvents: Number(deleted.numDeletedRows ?? 0)}
}
