import {type Kysely, sql} from 'kysely'

import {addDays, yesterdayUtc} from '../dates.js'
import type {Database, ProcessStatus} from '../db/schema.js'
import {findMissingDays, yesterdayState} from '../processing/gaps.js'

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
  const earliest = addDays(to, -(MAX_GAP_WINDOW_DAYS - 1))
  const requestedFrom = range.from ?? addDays(to, -(GAP_WINDOW_DAYS - 1))
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
