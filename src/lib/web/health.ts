import {type Kysely, sql} from 'kysely'

import {addDaysClamped, yesterdayUtc} from '../dates.js'
import type {Database, ProcessStatus} from '../db/schema.js'
import {findMissingDays, yesterdayState} from '../processing/gaps.js'
import {type ReadCache, cacheKey} from './read-cache.js'

/** Days looked back over for gaps when nobody names a range. */
export const GAP_WINDOW_DAYS = 30
/** A requested range longer than this is cut to its last this-many days before looking for gaps. */
const MAX_GAP_WINDOW_DAYS = 3660

export interface GapReport {
  window: {from: string; to: string}
  missing: string[]
  yesterday: {day: string; status: ProcessStatus | 'MISSING'; done: boolean}
}

/**
 * Missing days in a window (default: the last 30 days up to yesterday) and yesterday's state,
 * for /healthz and the JSON API. A window ending after yesterday stops at yesterday: today's
 * record cannot exist yet.
 */
export async function gapReport(db: Kysely<Database>, now: Date, range: {from?: string; to?: string} = {}): Promise<GapReport> {
  // YYYY-MM-DD strings compare in date order.
  const yesterday = yesterdayUtc(now)
  const to = range.to && range.to < yesterday ? range.to : yesterday
  // Clamped: a window reaching back from a `to` in year 1 stops at 0001-01-01.
  const earliest = addDaysClamped(to, -(MAX_GAP_WINDOW_DAYS - 1))
  const requestedFrom = range.from ?? addDaysClamped(to, -(GAP_WINDOW_DAYS - 1))
  const from = requestedFrom < earliest ? earliest : requestedFrom
  const window = {from, to}
  const [missing, state] = await Promise.all([from <= to ? findMissingDays(db, window) : Promise.resolve([]), yesterdayState(db, now)])
  return {window, missing, yesterday: {...state, done: state.status === 'SUCCESS'}}
}

export interface Health {
  statusCode: 200 | 503
  body: Record<string, unknown>
}

/**
 * What /healthz answers: 503 when the database is unreachable, or, with a required hour set,
 * when yesterday is not SUCCESS by that hour (UTC) — a ready hook for an uptime monitor.
 */
export async function checkHealth(db: Kysely<Database>, now: Date, requireYesterdayAfterHour?: number): Promise<Health> {
  const latest = await sql<{day: string | null}>`
    SELECT max(process_date)::text AS day FROM audit_events_log WHERE status = 'SUCCESS'`.execute(db)
  const gaps = await gapReport(db, now)
  const body: Record<string, unknown> = {
    ok: true,
    database: 'reachable',
    latestSuccess: latest.rows[0]?.day ?? null,
    yesterday: gaps.yesterday,
    missing: {...gaps.window, days: gaps.missing},
  }
  const hour = now.getUTCHours()
  if (requireYesterdayAfterHour !== undefined && hour >= requireYesterdayAfterHour && !gaps.yesterday.done) {
    const due = `${String(requireYesterdayAfterHour).padStart(2, '0')}:00 UTC`
    return {statusCode: 503, body: {...body, ok: false, reason: `yesterday (${gaps.yesterday.day}) is ${gaps.yesterday.status}, not SUCCESS, after ${due}`}}
  }

  return {statusCode: 200, body}
}

/** What /healthz answers when the database cannot be read: nothing more, so no detail leaks. */
const UNREACHABLE: Health = {statusCode: 503, body: {ok: false, database: 'unreachable'}}

/** How long any /healthz answer is reused, whatever happened since: the database is read for it at most this often. */
export const HEALTH_REUSE_MS = 1000

export interface HealthCheckOptions {
  db: Kysely<Database>
  /** The page's read cache: a reachable answer is kept there while the table is unchanged. */
  reads: ReadCache
  clock: () => Date
  requireYesterdayAfterHour?: number
  /** Told once per failed check (so at most once per reuse period), never per request. */
  onUnreachable?: (error: unknown) => void
  reuseMs?: number
}

/**
 * /healthz's answers, cheap whatever the load, since the route needs no sign-in and must not be
 * a way to slow the site or hammer the database: one check at a time, shared by every request
 * that comes meanwhile; its answer, whatever it is (an unreachable database included), reused for
 * `reuseMs` after it came; and a reachable answer also kept for as long as the change feed says
 * the table is unchanged. A failed read is never kept beyond `reuseMs`: the next request after
 * that tries the database again, so a database that comes back is seen within a second or so.
 * What of the clock matters is in the key: which day is yesterday, and whether the hour after
 * which yesterday must be SUCCESS has come.
 */
export function createHealthCheck(options: HealthCheckOptions): () => Promise<Health> {
  const reuseMs = options.reuseMs ?? HEALTH_REUSE_MS
  const requiredHour = options.requireYesterdayAfterHour
  let last: {key: string; answer: Promise<Health>; settledAt?: number} | undefined

  /** Never rejects: a failed read is the 503 answer. */
  const check = async (key: string, now: Date): Promise<Health> => {
    try {
      return await options.reads.get(key, () => checkHealth(options.db, now, requiredHour))
    } catch (error) {
      options.onUnreachable?.(error)
      return UNREACHABLE
    }
  }

  return () => {
    const now = options.clock()
    const key = cacheKey('health', yesterdayUtc(now), requiredHour !== undefined && now.getUTCHours() >= requiredHour)
    if (last?.key === key) {
      if (last.settledAt === undefined) return last.answer // in flight: share it
      const age = now.getTime() - last.settledAt
      if (age >= 0 && age < reuseMs) return last.answer // a clock set back does not make it fresh
    }

    const entry: typeof last = {key, answer: check(key, now)}
    void entry.answer.then(() => (entry.settledAt = options.clock().getTime()))
    last = entry
    return entry.answer
  }
}
