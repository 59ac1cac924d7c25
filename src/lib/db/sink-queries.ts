import {type Kysely, sql} from 'kysely'

import type {Database} from './schema.js'

/*
 * The sinks' outbox (tables audit_sinks and audit_sink_days, 2025-10-06 migration). Each sink has
 * a row per stored day it has not finished, holding the last event it delivered in the day's
 * (created_at, id) order. The position's timestamp never leaves the database (JavaScript's Date
 * would drop its microseconds and the next batch would repeat events forever): batches read it
 * back in SQL.
 */

export interface SinkIdentity {
  name: string
  format: string
  target: string
}

export interface SinkRow {
  name: string
  format: string
  target: string
  delivered_events: number
  last_success_at: Date | null
  last_attempt_at: Date | null
  last_error: string | null
  stopped_at: Date | null
  stop_reason: string | null
}

/** A day a sink still has to deliver, as read when its delivery started. */
export interface PendingDay {
  day: string
  generation: number
}

/** One stored event as a sink gets it. */
export interface OutgoingEvent {
  id: string
  json: string
  /** created_at in seconds since the epoch, as exact decimal text (Splunk's `time`); read only when asked for. */
  epoch: string | null
  /** created_at as the database's text, exact to the microsecond: the position after this event. */
  created_at: string
}

/**
 * Records the sink (a new one, or the same URL and format again) and queues every stored day it
 * has no row for: a new sink gets everything the store holds, and a day stored while the sink was
 * being registered (when the day's own queueing could not see it yet) is caught here.
 */
export async function registerSink(db: Kysely<Database>, sink: SinkIdentity): Promise<void> {
  await db
    .insertInto('audit_sinks')
    .values({name: sink.name, format: sink.format, target: sink.target})
    .onConflict((oc) => oc.column('name').doUpdateSet({target: sink.target}))
    .execute()
  await sql`
    INSERT INTO audit_sink_days (sink, day)
    SELECT ${sink.name}, l.process_date FROM audit_events_log l
    WHERE l.status = 'SUCCESS' AND EXISTS (SELECT 1 FROM audit_events e WHERE e.day = l.process_date)
    ON CONFLICT (sink, day) DO NOTHING`.execute(db)
}

/**
 * Queues a day for every sink, from its first event: called in the transaction that stores the
 * day, so a day is stored exactly when it is queued. A day queued before (a forced rerun) starts
 * over under a new generation, and a delivery still working on the old one notices.
 */
export async function queueDayForSinks(trx: Kysely<Database>, day: string): Promise<void> {
  await sql`
    INSERT INTO audit_sink_days (sink, day)
    SELECT name, ${day}::date FROM audit_sinks
    ON CONFLICT (sink, day) DO UPDATE SET
      generation = audit_sink_days.generation + 1, after_created_at = NULL, after_id = NULL,
      delivered = 0, done_at = NULL, queued_at = now()`.execute(trx)
}

export async function findSink(db: Kysely<Database>, name: string): Promise<SinkRow | undefined> {
  const row = await db.selectFrom('audit_sinks').selectAll().where('name', '=', name).executeTakeFirst()
  return row ? {...row, delivered_events: Number(row.delivered_events)} : undefined
}

/**
 * Takes the sink for one delivery run, for `leaseMs`: false when another run holds it. Two runs
 * delivering at once would only send some events twice, but their positions would race.
 */
export async function leaseSink(db: Kysely<Database>, name: string, token: string, leaseMs: number): Promise<boolean> {
  const taken = await sql`
    UPDATE audit_sinks SET lease_token = ${token}, leased_until = now() + make_interval(secs => ${leaseMs / 1000})
    WHERE name = ${name} AND (lease_token IS NULL OR lease_token = ${token} OR leased_until < now())`.execute(db)
  return Number(taken.numAffectedRows ?? 0) === 1
}

export async function releaseSink(db: Kysely<Database>, name: string, token: string): Promise<void> {
  await sql`UPDATE audit_sinks SET lease_token = NULL, leased_until = NULL WHERE name = ${name} AND lease_token = ${token}`.execute(db)
}

/** The oldest day the sink has not finished. */
export async function nextPendingDay(db: Kysely<Database>, name: string): Promise<PendingDay | undefined> {
  return db
    .selectFrom('audit_sink_days')
    .select(['day', 'generation'])
    .where('sink', '=', name)
    .where('done_at', 'is', null)
    .orderBy('day')
    .limit(1)
    .executeTakeFirst()
}

/** A place in a day's (created_at, id) order. The time stays text: Date would lose its microseconds. */
export interface DayPosition {
  createdAt: string
  id: string
}

/** Where the sink stands in the day: after this event, or (undefined) before the first. */
export async function dayPosition(db: Kysely<Database>, name: string, day: PendingDay): Promise<DayPosition | undefined> {
  const rows = await sql<{created_at: string | null; id: string | null}>`
    SELECT after_created_at::text AS created_at, after_id AS id FROM audit_sink_days WHERE sink = ${name} AND day = ${day.day}::date`.execute(db)
  const row = rows.rows[0]
  return row?.created_at && row.id !== null ? {createdAt: row.created_at, id: row.id} : undefined
}

/**
 * Up to `limit` events of the day after `after`, oldest first: one range of the (day, created_at,
 * id) index. A day just stored has no statistics yet, and the planner, guessing a few hundred rows,
 * would read all of the day's rows by bitmap and sort them for every batch (a 100,000-event day:
 * 130 ms a batch instead of 8); sorting and bitmaps are turned off for this one read.
 */
export async function readBatch(db: Kysely<Database>, day: PendingDay, after: DayPosition | undefined, limit: number, withEpoch = true): Promise<OutgoingEvent[]> {
  return db.transaction().execute(async (trx) => {
    await sql`SELECT set_config('enable_sort', 'off', true), set_config('enable_bitmapscan', 'off', true)`.execute(trx)
    return readBatchIn(trx, day, after, limit, withEpoch)
  })
}

async function readBatchIn(db: Kysely<Database>, day: PendingDay, after: DayPosition | undefined, limit: number, withEpoch: boolean): Promise<OutgoingEvent[]> {
  const epoch = withEpoch ? sql`extract(epoch FROM e.created_at)::text` : sql`NULL`
  const rows = await sql<OutgoingEvent>`
    SELECT e.id, e.event_json AS json, ${epoch} AS epoch, e.created_at::text AS created_at
    FROM audit_events e
    WHERE e.day = ${day.day}::date
      AND (e.created_at, e.id) > (${after?.createdAt ?? '-infinity'}::timestamptz, ${after?.id ?? ''})
    ORDER BY e.created_at, e.id
    LIMIT ${limit}`.execute(db)
  return rows.rows
}

/**
 * Moves the sink's position in the day to `to` after a batch was accepted, in one statement.
 * False when the position no longer belongs to this run: its lease was taken, or the day was
 * stored again meanwhile (a new generation, to deliver from its start).
 */
export async function advance(db: Kysely<Database>, name: string, token: string, day: PendingDay, to: DayPosition, count: number, leaseMs: number): Promise<boolean> {
  const moved = await sql<{name: string}>`
    WITH moved AS (
      UPDATE audit_sink_days SET after_created_at = ${to.createdAt}::timestamptz, after_id = ${to.id}, delivered = delivered + ${count}
      WHERE sink = ${name} AND day = ${day.day}::date AND generation = ${day.generation} AND done_at IS NULL
        AND EXISTS (SELECT 1 FROM audit_sinks WHERE name = ${name} AND lease_token = ${token})
      RETURNING sink)
    UPDATE audit_sinks SET delivered_events = delivered_events + ${count}, last_success_at = now(), last_attempt_at = now(),
      last_error = NULL, stopped_at = NULL, stop_reason = NULL, leased_until = now() + make_interval(secs => ${leaseMs / 1000})
    WHERE name = (SELECT sink FROM moved)
    RETURNING name`.execute(db)
  return moved.rows.length === 1
}

/** The day is delivered (nothing after the position). False as for advance. */
export async function finishDay(db: Kysely<Database>, name: string, token: string, day: PendingDay): Promise<boolean> {
  const done = await sql`
    UPDATE audit_sink_days SET done_at = now()
    WHERE sink = ${name} AND day = ${day.day}::date AND generation = ${day.generation} AND done_at IS NULL
      AND EXISTS (SELECT 1 FROM audit_sinks WHERE name = ${name} AND lease_token = ${token})`.execute(db)
  return Number(done.numAffectedRows ?? 0) === 1
}

/** A try that failed (kept, shown by db status); renews the lease while the run waits to try again. */
export async function noteFailure(db: Kysely<Database>, name: string, message: string, leaseMs: number): Promise<void> {
  await sql`
    UPDATE audit_sinks SET last_error = ${message}, last_attempt_at = now(),
      leased_until = CASE WHEN lease_token IS NULL THEN leased_until ELSE now() + make_interval(secs => ${leaseMs / 1000}) END
    WHERE name = ${name}`.execute(db)
}

/**
 * The intake refused a batch for good: no further delivery until a `deliver` run gets through.
 * `whenNewlyStopped` runs in the same transaction when the sink was not stopped before (the alert:
 * recorded exactly when the stop is, never lost between the two).
 */
export async function stopSink(
  db: Kysely<Database>,
  name: string,
  reason: string,
  whenNewlyStopped?: (trx: Kysely<Database>, stoppedAt: Date) => Promise<void>,
): Promise<{newlyStopped: boolean; stoppedAt: Date}> {
  return db.transaction().execute(async (trx) => {
    const before = await trx.selectFrom('audit_sinks').select('stopped_at').where('name', '=', name).forUpdate().executeTakeFirst()
    const after = await sql<{stopped_at: Date}>`
      UPDATE audit_sinks SET stopped_at = coalesce(stopped_at, now()), stop_reason = ${reason}, last_error = ${reason}, last_attempt_at = now()
      WHERE name = ${name} RETURNING stopped_at`.execute(trx)
    const stoppedAt = after.rows[0]?.stopped_at ?? new Date()
    const newlyStopped = !before?.stopped_at
    if (newlyStopped) await whenNewlyStopped?.(trx, stoppedAt)
    return {newlyStopped, stoppedAt}
  })
}

/** Nothing was left to send: a stop (from a batch since removed by retention or a reset) no longer holds. */
export async function clearStop(db: Kysely<Database>, name: string, token: string): Promise<void> {
  await sql`UPDATE audit_sinks SET stopped_at = NULL, stop_reason = NULL WHERE name = ${name} AND lease_token = ${token} AND stopped_at IS NOT NULL`.execute(db)
}

/** A sink's backlog, for db status and the status page. */
export interface SinkBacklog extends SinkRow {
  /** Events stored but not yet accepted by the sink. */
  pending_events: number
  pending_days: number
  /** The oldest day not yet delivered. */
  oldest_pending_day: string | null
}

export async function sinkBacklogs(db: Kysely<Database>): Promise<SinkBacklog[]> {
  const rows = await sql<SinkBacklog>`
    SELECT s.name, s.format, s.target, s.delivered_events::bigint AS delivered_events, s.last_success_at, s.last_attempt_at,
      s.last_error, s.stopped_at, s.stop_reason,
      coalesce(sum(greatest(coalesce(l.events_count, 0) - d.delivered, 0)) FILTER (WHERE d.done_at IS NULL), 0)::bigint AS pending_events,
      count(d.day) FILTER (WHERE d.done_at IS NULL)::int AS pending_days,
      min(d.day) FILTER (WHERE d.done_at IS NULL) AS oldest_pending_day
    FROM audit_sinks s
    LEFT JOIN audit_sink_days d ON d.sink = s.name
    LEFT JOIN audit_events_log l ON l.process_date = d.day
    GROUP BY s.name
    ORDER BY s.name`.execute(db)
  return rows.rows.map((row) => ({...row, delivered_events: Number(row.delivered_events), pending_events: Number(row.pending_events)}))
}

/** Removes every sink but `keep`, with its outbox (a SINK_URL changed or retired); returns what each was. */
export async function forgetSinksExcept(db: Kysely<Database>, keep: string): Promise<string[]> {
  const removed = await db.deleteFrom('audit_sinks').where('name', '<>', keep).returning('target').execute()
  return removed.map((row) => row.target)
}

/** Forgets the outbox rows of days whose events retention removed. */
export async function forgetDaysBefore(db: Kysely<Database>, firstKept: string): Promise<void> {
  await db.deleteFrom('audit_sink_days').where('day', '<', firstKept).execute()
}
