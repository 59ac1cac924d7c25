import {type Kysely, sql} from 'kysely'

import {eventsDigest} from '../processing/events-digest.js'
import {NOW_UTC} from './audit-log-repository.js'
import {type MonthTable, STORE_COLUMNS, partitionExists} from './event-store.js'
import type {Database} from './schema.js'
import {queueDayForSinks} from './sink-queries.js'

/*
 * Comparing a second source of a day's (or a month's) events with the store: the settle re-read
 * and Heroku's monthly archives. The source is loaded, as it streams in, into a temporary table
 * of the store's shape (audit_staged_events, dropped at commit), then compared by id in SQL, so
 * a month of millions of events is never held in memory. Everything happens in the caller's one
 * transaction: what it adds to the store and to the records commits together, or not at all.
 */

/**
 * The event_json of a staged row that only stands for its id: an event the store already holds
 * (found by storedAmong while loading), kept so that what the store has and the source lacks can
 * be found, without carrying its text twice. No real event's text is empty.
 */
export const ID_ONLY = ''

/** How many ids a comparison keeps to name, per day, of those only in the store. */
export const SAMPLE_IDS = 20

/** Creates the staging table for this transaction (dropped at its end). */
export async function createStaging(trx: Kysely<Database>): Promise<void> {
  await sql`CREATE TEMP TABLE IF NOT EXISTS audit_staged_events (LIKE audit_events INCLUDING DEFAULTS) ON COMMIT DROP`.execute(trx)
}

/**
 * Makes the loaded staging table ready to compare: one row per id (a source may list an event
 * twice; the first kept), a unique index on id, and statistics for the planner. The index's build
 * is what finds a repeated id: the rows are only scanned for duplicates when it fails.
 */
export async function prepareStaging(trx: Kysely<Database>): Promise<{duplicates: number}> {
  const index = sql`CREATE UNIQUE INDEX audit_staged_events_id ON audit_staged_events (id)`
  let duplicates = 0
  await sql`SAVEPOINT staged_ids`.execute(trx)
  try {
    await index.execute(trx)
  } catch (error) {
    if ((error as {code?: unknown}).code !== '23505') throw error
    await sql`ROLLBACK TO SAVEPOINT staged_ids`.execute(trx)
    duplicates = await dedupeStaged(trx)
    await index.execute(trx)
  }

  await sql`ANALYZE audit_staged_events`.execute(trx)
  return {duplicates}
}

export interface StoreOnlyDay {
  day: string
  count: number
  /** The first SAMPLE_IDS of them, in id order. */
  sample: string[]
}

/**
 * The stored events of `days` the staging table does not hold (by id, whatever day it puts them
 * on): what the source no longer has, or never had. Reported, never deleted.
 */
export async function storeOnly(trx: Kysely<Database>, days: readonly string[]): Promise<StoreOnlyDay[]> {
  if (days.length === 0) return []
  const found = await sql<{day: string; count: number; sample: string}>`
    SELECT e.day::text AS day, count(*)::int AS count, to_json((array_agg(e.id ORDER BY e.id))[1:${SAMPLE_IDS}])::text AS sample
    FROM audit_events e
    WHERE e.day = ANY(${[...days]}::date[]) AND NOT EXISTS (SELECT 1 FROM audit_staged_events s WHERE s.id = e.id)
    GROUP BY e.day ORDER BY e.day`.execute(trx)
  return found.rows.map((row) => ({day: row.day, count: row.count, sample: JSON.parse(row.sample) as string[]}))
}

/**
 * Removes from the staging table every event the store already holds on a day of
 * [from, until) (a month, or one day), and counts them per staged day: the matched ones. What
 * stays is what the store lacks.
 */
export async function dropMatched(trx: Kysely<Database>, from: string, until: string): Promise<Map<string, number>> {
  const matched = await sql<{day: string; count: number}>`
    WITH matched AS (
      DELETE FROM audit_staged_events s
      WHERE EXISTS (SELECT 1 FROM audit_events e WHERE e.id = s.id AND e.day >= ${from}::date AND e.day < ${until}::date)
      RETURNING s.day
    )
    SELECT day::text AS day, count(*)::int AS count FROM matched GROUP BY day`.execute(trx)
  return new Map(matched.rows.map((row) => [row.day, row.count]))
}

/** The staged events with their text (not ID_ONLY), per day: after dropMatched, or staging the held ones by id alone, those the store lacks. */
export async function stagedPerDay(trx: Kysely<Database>): Promise<Map<string, number>> {
  const rows = await sql<{day: string; count: number}>`
    SELECT day::text AS day, count(*)::int AS count FROM audit_staged_events WHERE event_json <> ${ID_ONLY} GROUP BY day`.execute(trx)
  return new Map(rows.rows.map((row) => [row.day, row.count]))
}

/**
 * Copies the staged events of `days` into the store (their month partitions must exist), and
 * indexes what is left for reading it back in order (stagedEvents). An event stored meanwhile by
 * another run is skipped, not an error.
 */
export async function storeStaged(trx: Kysely<Database>, days: readonly string[]): Promise<number> {
  if (days.length === 0) return 0
  const columns = sql.join(STORE_COLUMNS.map((name) => sql.ref(name)))
  const inserted = await sql`
    INSERT INTO audit_events (${columns})
    SELECT ${columns} FROM audit_staged_events WHERE day = ANY(${[...days]}::date[]) AND event_json <> ${ID_ONLY}
    ON CONFLICT DO NOTHING`.execute(trx)
  await sql`CREATE INDEX ON audit_staged_events (day, created_at, id)`.execute(trx)
  return Number(inserted.numAffectedRows ?? 0)
}

/** One staged event read back: its JSON text as the source had it. */
export interface StagedEvent {
  json: string
  /** created_at as the database's text (exact to the microsecond): the keyset position. */
  created_at: string
  id: string
}

/**
 * The staged events of `days`, oldest first, `batch` at a time (keyset on created_at, id: memory
 * stays one batch, whatever their number).
 */
export async function* stagedEvents(trx: Kysely<Database>, days: readonly string[], batch = 1000): AsyncGenerator<StagedEvent[]> {
  if (days.length === 0) return
  let after: {created_at: string; id: string} | undefined
  for (;;) {
    const position = after ? sql`AND (created_at, id) > (${after.created_at}::timestamptz, ${after.id})` : sql``
    const rows = await sql<StagedEvent>`
      SELECT event_json AS json, created_at::text AS created_at, id FROM audit_staged_events
      WHERE day = ANY(${[...days]}::date[]) AND event_json <> ${ID_ONLY} ${position}
      ORDER BY created_at, id LIMIT ${batch}`.execute(trx)
    if (rows.rows.length === 0) return
    yield rows.rows
    const last = rows.rows.at(-1)!
    after = {created_at: last.created_at, id: last.id}
    if (rows.rows.length < batch) return
  }
}

/** The digest (see events-digest.ts) over the ids the store holds for `day`. */
export async function storedDigest(trx: Kysely<Database>, day: string): Promise<{digest: string; count: number}> {
  const ids = await storedIdsOf(trx, day)
  return {digest: eventsDigest(ids), count: ids.length}
}

/**
 * Records the settle re-read on a day, fenced by the claim token its SUCCESS was recorded under
 * (a forced rerun or a reset meanwhile changes it): false when the day is no longer that SUCCESS.
 */
export async function recordSettled(
  trx: Kysely<Database>,
  settled: {day: string; claimToken: string | null; late: number; vanished: number; digest: string},
): Promise<boolean> {
  const token = settled.claimToken === null ? sql`claim_token IS NULL` : sql`claim_token = ${settled.claimToken}`
  const result = await sql`
    UPDATE audit_events_log
    SET settled_at = now(), late_events = ${settled.late}, vanished_events = ${settled.vanished}, settled_digest = ${settled.digest},
        events_count = coalesce(events_count, 0) + ${settled.late}, updated_at = ${NOW_UTC}
    WHERE process_date = ${settled.day} AND status = 'SUCCESS' AND ${token}`.execute(trx)
  const recorded = Number(result.numAffectedRows ?? 0) === 1
  // The late events reach the sinks: the day is delivered again (at least once, as always).
  if (recorded && settled.late > 0) await queueDayForSinks(trx, settled.day)
  return recorded
}

/** Adds events an archive recovered to a SUCCESS day's record, and queues the day for the sinks again. */
export async function recordRecovered(trx: Kysely<Database>, day: string, recovered: number): Promise<void> {
  if (recovered === 0) return
  await sql`
    UPDATE audit_events_log
    SET recovered_events = coalesce(recovered_events, 0) + ${recovered}, events_count = coalesce(events_count, 0) + ${recovered}, updated_at = ${NOW_UTC}
    WHERE process_date = ${day}`.execute(trx)
  await queueDayForSinks(trx, day)
}

/**
 * Claims for the archive the days of `days` that have no record: each gets a SUCCESS record with
 * source 'archive' (its count and digest set by recordImported once its events are stored); a
 * day recorded meanwhile by another run is left alone. Returns the days claimed here.
 */
export async function claimImportDays(trx: Kysely<Database>, days: readonly string[]): Promise<string[]> {
  if (days.length === 0) return []
  const inserted = await sql<{day: string}>`
    INSERT INTO audit_events_log
      (process_date, status, events_count, error_message, created_at, updated_at, attempts, claim_token, heartbeat_at, started_at, finished_at, source)
    SELECT d, 'SUCCESS', 0, NULL, ${NOW_UTC}, ${NOW_UTC}, 0, NULL, now(), now(), now(), 'archive' FROM unnest(${[...days]}::date[]) AS d
    ON CONFLICT (process_date) DO NOTHING
    RETURNING process_date::text AS day`.execute(trx)
  return inserted.rows.map((row) => row.day).sort()
}

/** Sets an imported day's count and digest (over the ids it stored), and queues it for the sinks. */
export async function recordImported(trx: Kysely<Database>, day: string, stored: {count: number; digest: string}): Promise<void> {
  await sql`UPDATE audit_events_log SET events_count = ${stored.count}, events_digest = ${stored.digest} WHERE process_date = ${day}`.execute(trx)
  await queueDayForSinks(trx, day)
}

/** The ids the store holds on `day`, in no order. */
export async function storedIdsOf(trx: Kysely<Database>, day: string): Promise<string[]> {
  // JSON rather than an array: the driver reads it with one JSON.parse, several times faster.
  const {rows} = await sql<{ids: string[] | string}>`SELECT coalesce(json_agg(id), '[]') AS ids FROM audit_events WHERE day = ${day}::date`.execute(trx)
  const ids = rows[0]?.ids ?? []
  return typeof ids === 'string' ? (JSON.parse(ids) as string[]) : ids
}

/** storedDigest of each of `days`, a day at a time (a month's ids would be one big result). */
export async function storedDigests(trx: Kysely<Database>, days: readonly string[]): Promise<Map<string, {count: number; digest: string}>> {
  const digests = new Map<string, {count: number; digest: string}>()
  for (const day of days) digests.set(day, await storedDigest(trx, day))
  return digests
}

/** What compareMonth finds. */
export interface MonthComparison {
  /** Per compared day, the stored events no staged row has (by id, whatever day it is staged on). */
  onlyInStore: StoreOnlyDay[]
  /** Staged rows whose id the store holds on a day of the month. */
  matched: number
  /** Rows staged by their id alone (taken as held) on a compared day whose id the store does not hold. */
  heldButAbsent: number
}

/**
 * Compares the staging table with the month [from, until) of the store in one hash join (see
 * MonthComparison). heldButAbsent is 0 unless an id fingerprint collided (id-fingerprints.ts), or
 * the store lost events of a compared day meanwhile.
 */
export async function compareMonth(trx: Kysely<Database>, days: readonly string[], from: string, until: string): Promise<MonthComparison> {
  const compared = sql`${[...days]}::date[]`
  const {rows} = await sql<{kind: 'only' | 'absent' | 'matched'; day: string | null; count: number; sample: string | null}>`
    SELECT CASE WHEN s.id IS NULL THEN 'only' WHEN e.id IS NULL THEN 'absent' ELSE 'matched' END AS kind,
      (CASE WHEN s.id IS NULL THEN e.day END)::text AS day, count(*)::int AS count,
      to_json((array_agg(e.id ORDER BY e.id) FILTER (WHERE s.id IS NULL))[1:${SAMPLE_IDS}])::text AS sample
    FROM audit_staged_events s
    FULL JOIN (SELECT id, day FROM audit_events WHERE day >= ${from}::date AND day < ${until}::date) e ON e.id = s.id
    WHERE (s.id IS NULL AND e.day = ANY(${compared}))
       OR (e.id IS NULL AND s.event_json = ${ID_ONLY} AND s.day = ANY(${compared}))
       OR (s.id IS NOT NULL AND e.id IS NOT NULL)
    GROUP BY 1, 2 ORDER BY 1, 2`.execute(trx)
  const total = (kind: string) => rows.filter((row) => row.kind === kind).reduce((sum, row) => sum + row.count, 0)
  return {
    onlyInStore: rows.filter((row) => row.kind === 'only').map((row) => ({day: row.day!, count: row.count, sample: JSON.parse(row.sample!) as string[]})),
    matched: total('matched'),
    heldButAbsent: total('absent'),
  }
}

/**
 * Removes from the staging table the whole events of `days` the store holds on a day of
 * [from, until) by now: stored meanwhile (a settle re-read, a day finished while the source was
 * read), so not missing. Returns how many.
 */
export async function dropStoredMeanwhile(trx: Kysely<Database>, days: readonly string[], from: string, until: string): Promise<number> {
  if (days.length === 0) return 0
  const dropped = await sql`
    DELETE FROM audit_staged_events s
    WHERE s.day = ANY(${[...days]}::date[]) AND s.event_json <> ${ID_ONLY}
      AND EXISTS (SELECT 1 FROM audit_events e WHERE e.id = s.id AND e.day >= ${from}::date AND e.day < ${until}::date)`.execute(trx)
  return Number(dropped.numAffectedRows ?? 0)
}

/** Removes repeated ids from the staging table (a source listing an event twice: the first kept). Returns how many. */
export async function dedupeStaged(trx: Kysely<Database>): Promise<number> {
  const removed = await sql`DELETE FROM audit_staged_events a USING audit_staged_events b WHERE a.id = b.id AND a.ctid > b.ctid`.execute(trx)
  return Number(removed.numAffectedRows ?? 0)
}

/**
 * Creates, in this transaction, the table for a month the store has no partition for: the store's
 * columns, no index, and a CHECK of the month's bounds (so attaching it need not scan it). Returns
 * its name, or undefined when the partition exists (made meanwhile by another run).
 */
export async function newMonthTable(trx: Kysely<Database>, month: {name: MonthTable; from: string; to: string}): Promise<MonthTable | undefined> {
  if (await partitionExists(trx, month.name)) return undefined
  const bounds = sql`CHECK (day >= ${sql.lit(month.from)}::date AND day < ${sql.lit(month.to)}::date)`
  await sql`CREATE TABLE ${sql.table(month.name)} (LIKE audit_events INCLUDING DEFAULTS, CONSTRAINT ${sql.ref(`${month.name}_bounds`)} ${bounds})`.execute(trx)
  return month.name
}

/**
 * Attaches a loaded month table (newMonthTable) as the store's partition: PostgreSQL then builds
 * its indexes in one sorted pass each, far cheaper than maintaining them row by row as it loaded.
 * With `dedupe` (the loader saw an id twice), the later copies of each id are removed first, as
 * the store keeps an event once whatever day it is listed on. Returns how many were removed.
 */
export async function attachMonthTable(
  trx: Kysely<Database>,
  month: {name: MonthTable; from: string; to: string},
  options: {dedupe: boolean; sortMemory?: string},
): Promise<number> {
  let removed = 0
  if (options.dedupe) {
    const deleted = await sql`DELETE FROM ${sql.table(month.name)} a USING ${sql.table(month.name)} b WHERE a.id = b.id AND a.ctid > b.ctid`.execute(trx)
    removed = Number(deleted.numAffectedRows ?? 0)
  }

  // Room for each index's sort to stay in memory (the server's default, 64 MB, is shared by its
  // parallel workers), for this transaction only: on a server, not in the embedded engine, whose
  // memory is this process's and never given back.
  if (options.sortMemory) await sql`SELECT set_config('maintenance_work_mem', ${options.sortMemory}, true)`.execute(trx)
  await sql`ALTER TABLE audit_events ATTACH PARTITION ${sql.table(month.name)} FOR VALUES FROM (${sql.lit(month.from)}) TO (${sql.lit(month.to)})`.execute(trx)
  return removed
}

/** Lets this transaction's joins and sorts use more memory than the server's default, so a month's comparison stays off disk. */
export async function roomForComparing(trx: Kysely<Database>): Promise<void> {
  await sql`SELECT set_config('work_mem', '64MB', true)`.execute(trx)
}
