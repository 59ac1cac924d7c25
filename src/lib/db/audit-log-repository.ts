import {type Kysely, sql} from 'kysely'

import {redact} from '../secrets.js'
import {oneLine} from '../text.js'
import type {AuditLogRow, Database, ProcessStatus} from './schema.js'

/*
 * Every function takes the database first; a Transaction<Database> works as well.
 * Staleness is always judged by the database's clock (now()), never the process's.
 */

/** The last sign of life of a run: its heartbeat, or for rows the old tool wrote, updated_at. */
export function lastSignOfLife(table = 'audit_events_log') {
  const column = (name: string) => sql.ref(`${table}.${name}`)
  return sql`coalesce(${column('heartbeat_at')}, ${column('updated_at')} AT TIME ZONE 'utc', ${column('created_at')} AT TIME ZONE 'utc', '-infinity'::timestamptz)`
}

const LAST_SIGN_OF_LIFE = lastSignOfLife()
/** now() as the naive UTC timestamp the old tool's created_at and updated_at hold. */
export const NOW_UTC = sql`(now() AT TIME ZONE 'utc')`

export function staleBefore(staleAfterMinutes: number) {
  return sql`now() - make_interval(secs => ${staleAfterMinutes * 60})`
}

export interface ClaimRequest {
  day: string
  token: string
  staleAfterMinutes: number
  /** Also take a SUCCESS day (fetch it again). */
  force: boolean
}

export type ClaimResult =
  | {claimed: true; row: AuditLogRow; previousStatus: ProcessStatus | null; hasStoredEvents: boolean}
  | {claimed: false; current: AuditLogRow | undefined}

/**
 * Claims a day with ONE atomic statement: inserts the row, or takes it over when it is FAILED,
 * ERROR, PROCESSING without a heartbeat for `staleAfterMinutes`, or SUCCESS with `force`.
 * Concurrent claims serialize on the unique process_date, so exactly one wins. It also says whether
 * the event store holds events of the day (an earlier SUCCESS, or a record deleted since), which
 * the day's run must replace: asked here, it costs no statement of its own. Idempotent for its
 * token: a claim tried again after its connection was lost (it may have committed) finds the row
 * PROCESSING with its own token and takes it as claimed, without counting another attempt.
 */
export async function claimDay(db: Kysely<Database>, request: ClaimRequest): Promise<ClaimResult> {
  const {day, token, staleAfterMinutes, force} = request
  const result = await sql<AuditLogRow & {previous_status: ProcessStatus | null; has_stored_events: boolean}>`
    WITH previous AS (SELECT status, claim_token FROM audit_events_log WHERE process_date = ${day})
    INSERT INTO audit_events_log AS log
      (process_date, status, events_count, error_message, created_at, updated_at,
       attempts, claim_token, heartbeat_at, started_at, finished_at)
    VALUES (${day}, 'PROCESSING', 0, NULL, ${NOW_UTC}, ${NOW_UTC}, 1, ${token}, now(), now(), NULL)
    ON CONFLICT (process_date) DO UPDATE SET
      status = 'PROCESSING', events_count = 0, error_message = NULL, events_digest = NULL, updated_at = ${NOW_UTC},
      source = NULL, settled_at = NULL, late_events = NULL, vanished_events = NULL, settled_digest = NULL, recovered_events = NULL,
      attempts = CASE WHEN log.claim_token = EXCLUDED.claim_token THEN log.attempts ELSE log.attempts + 1 END,
      claim_token = EXCLUDED.claim_token, heartbeat_at = now(), started_at = now(), finished_at = NULL
    WHERE log.status IN ('FAILED', 'ERROR')
       OR (log.status = 'PROCESSING' AND ${lastSignOfLife('log')} < ${staleBefore(staleAfterMinutes)})
       OR (${force}::boolean AND log.status = 'SUCCESS')
       OR (log.status = 'PROCESSING' AND log.claim_token = EXCLUDED.claim_token)
    RETURNING log.*,
      (SELECT CASE WHEN previous.claim_token = log.claim_token AND previous.status = 'PROCESSING' THEN NULL ELSE previous.status END FROM previous) AS previous_status,
      EXISTS (SELECT 1 FROM audit_events WHERE day = ${day}::date) AS has_stored_events
  `.execute(db)
  const row = result.rows[0]
  if (row) {
    const {previous_status: previousStatus, has_stored_events: hasStoredEvents, ...claimed} = row
    return {claimed: true, row: claimed, previousStatus, hasStoredEvents}
  }

  return {claimed: false, current: await findDay(db, day)}
}

/** Refreshes the heartbeat; false when the claim is no longer ours (cleaned up, reset, re-claimed). */
export async function heartbeat(db: Kysely<Database>, day: string, token: string): Promise<boolean> {
  const result = await sql`
    UPDATE audit_events_log SET heartbeat_at = now()
    WHERE process_date = ${day} AND claim_token = ${token} AND status = 'PROCESSING'
  `.execute(db)
  return Number(result.numAffectedRows ?? 0) === 1
}

export interface FinishRequest {
  day: string
  token: string
  status: Exclude<ProcessStatus, 'PROCESSING'>
  eventsCount: number
  errorMessage: string | null
  /** The day's events digest, for SUCCESS; failures store none. */
  eventsDigest?: string | null
}

/** The most characters an error_message holds: a few lines' worth, far above any message of ours. */
export const MAX_ERROR_MESSAGE = 2000

/**
 * What error_message may hold, whoever writes it: no secret, one line with every control character
 * escaped visibly (db status, the status page and the old tool's readers print it), and bounded.
 */
export function storableErrorMessage(message: string | null): string | null {
  return message === null ? null : oneLine(redact(message), MAX_ERROR_MESSAGE)
}

/**
 * The fenced finish: counts only while the claim token still matches. False = claim lost.
 * Idempotent: tried again after its connection was lost (it may have committed), it finds its own
 * row already in `status` and counts it; a row cleaned up into another status meanwhile does not.
 */
export async function finishDay(db: Kysely<Database>, request: FinishRequest): Promise<boolean> {
  const {day, token, status, eventsCount} = request
  const errorMessage = storableErrorMessage(request.errorMessage)
  const eventsDigest = request.eventsDigest ?? null
  const result = await sql`
    UPDATE audit_events_log
    SET status = ${status}, events_count = ${eventsCount}, error_message = ${errorMessage},
        events_digest = ${eventsDigest}, updated_at = ${NOW_UTC}, heartbeat_at = now(), finished_at = now()
    WHERE process_date = ${day} AND claim_token = ${token} AND status IN ('PROCESSING', ${status})
  `.execute(db)
  return Number(result.numAffectedRows ?? 0) === 1
}

export async function findDay(db: Kysely<Database>, day: string): Promise<AuditLogRow | undefined> {
  return db.selectFrom('audit_events_log').selectAll().where('process_date', '=', day).executeTakeFirst()
}

/** Is this PROCESSING row's run still alive by the database's clock? */
export async function isLive(db: Kysely<Database>, day: string, staleAfterMinutes: number): Promise<boolean> {
  const row = await sql<{live: boolean}>`
    SELECT ${LAST_SIGN_OF_LIFE} >= ${staleBefore(staleAfterMinutes)} AS live
    FROM audit_events_log WHERE process_date = ${day} AND status = 'PROCESSING'
  `.execute(db)
  return row.rows[0]?.live ?? false
}

export interface DayState {
  day: string
  status: ProcessStatus
  eventsCount: number
  /** For PROCESSING rows: is the run alive by the database's clock? False for every other status. */
  live: boolean
}

/** The record of every day in the inclusive range that has one, oldest first. Read-only. */
export async function dayStates(
  db: Kysely<Database>,
  range: {from: string; to: string},
  staleAfterMinutes: number,
): Promise<DayState[]> {
  const result = await sql<{day: string; status: ProcessStatus; events_count: number | null; live: boolean}>`
    SELECT process_date AS day, status, events_count,
           (status = 'PROCESSING' AND ${LAST_SIGN_OF_LIFE} >= ${staleBefore(staleAfterMinutes)}) AS live
    FROM audit_events_log
    WHERE process_date BETWEEN ${range.from}::date AND ${range.to}::date
    ORDER BY process_date
  `.execute(db)
  return result.rows.map((r) => ({day: r.day, status: r.status, eventsCount: r.events_count ?? 0, live: r.live}))
}

/** The most events any SUCCESS day has recorded (0 when none): a basis for estimating pages. */
export async function busiestDayEvents(db: Kysely<Database>): Promise<number> {
  const result = await sql<{n: number | null}>`
    SELECT max(events_count)::int AS n FROM audit_events_log WHERE status = 'SUCCESS'
  `.execute(db)
  return result.rows[0]?.n ?? 0
}

export async function latestDays(db: Kysely<Database>, limit: number): Promise<AuditLogRow[]> {
  return db.selectFrom('audit_events_log').selectAll().orderBy('process_date', 'desc').limit(limit).execute()
}

export async function countByStatus(db: Kysely<Database>): Promise<Record<string, number>> {
  const rows = await db
    .selectFrom('audit_events_log')
    .select(['status', (eb) => eb.fn.countAll<number>().as('count')])
    .groupBy('status')
    .orderBy('status')
    .execute()
  return Object.fromEntries(rows.map((r) => [r.status, Number(r.count)]))
}

export interface CleanedDay {
  day: string
  lastSignOfLife: Date | null
}

/**
 * Turns every PROCESSING row without a heartbeat for `staleAfterMinutes` into ERROR, with a reason
 * naming its last heartbeat. One statement: two cleanups at once change each row once.
 */
export async function cleanupStale(db: Kysely<Database>, staleAfterMinutes: number): Promise<CleanedDay[]> {
  // The reason is built here from a timestamp and a number only: nothing from outside to sanitize.
  // The last sign is read before the update: RETURNING would see the new updated_at. FOR UPDATE
  // makes a concurrent cleanup wait and then re-check the row, which is no longer PROCESSING.
  const result = await sql<{process_date: string; last_sign: Date | null}>`
    WITH stale AS (
      SELECT id, nullif(${LAST_SIGN_OF_LIFE}, '-infinity') AS last_sign
      FROM audit_events_log
      WHERE status = 'PROCESSING' AND ${LAST_SIGN_OF_LIFE} < ${staleBefore(staleAfterMinutes)}
      FOR UPDATE
    )
    UPDATE audit_events_log
    SET status = 'ERROR',
        updated_at = ${NOW_UTC},
        error_message = 'run stopped: no heartbeat since '
          || coalesce(to_char(stale.last_sign AT TIME ZONE 'utc', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), 'never')
          || ' (stale after ' || ${staleAfterMinutes} || ' min); cleaned up by db cleanup'
    FROM stale
    WHERE audit_events_log.id = stale.id
    RETURNING audit_events_log.process_date, stale.last_sign
  `.execute(db)
  return result.rows
    .map((r) => ({day: r.process_date, lastSignOfLife: r.last_sign}))
    .sort((a, b) => a.day.localeCompare(b.day))
}

export type ResetResult =
  | {outcome: 'removed'; row: AuditLogRow}
  | {outcome: 'refused-live'; row: AuditLogRow}
  | {outcome: 'none'}

/**
 * Deletes a day's record so it can be processed again. A PROCESSING row whose run is alive is
 * kept unless `force`; the check and the delete are one statement.
 */
export async function resetDay(
  db: Kysely<Database>,
  day: string,
  options: {force: boolean; staleAfterMinutes: number},
): Promise<ResetResult> {
  const deleted = await sql<AuditLogRow>`
    DELETE FROM audit_events_log
    WHERE process_date = ${day}
      AND (status <> 'PROCESSING' OR ${options.force}::boolean OR ${LAST_SIGN_OF_LIFE} < ${staleBefore(options.staleAfterMinutes)})
    RETURNING *
  `.execute(db)
  if (deleted.rows[0]) return {outcome: 'removed', row: deleted.rows[0]}
  const current = await findDay(db, day)
  return current ? {outcome: 'refused-live', row: current} : {outcome: 'none'}
}
