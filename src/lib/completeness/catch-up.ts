import {type Kysely, sql} from 'kysely'

import {ALERT_KEYS, raiseAlert} from '../alerts/alerts.js'
import type {AlertWebhook} from '../config.js'
import type {Database} from '../db/schema.js'
import type {MonthResult} from './archive-month.js'
import {type SettleDeps, type SettleResult, settleDay} from './settle-day.js'

/*
 * What process --catch-up does for completeness once the missing and failed days are done: the
 * settle re-reads of its window, under the same rate budget, then the archives of months now over.
 */

/**
 * The SUCCESS days of [from, to] collected at least `settleHours` ago and not settled yet, oldest
 * first. Days filled from an archive are not re-read (the archive is the later record), nor days
 * before the store's window (nothing to compare with).
 */
export async function daysToSettle(db: Kysely<Database>, options: {from: string; to: string; settleHours: number; storeFrom?: string}): Promise<string[]> {
  const from = options.storeFrom && options.storeFrom > options.from ? options.storeFrom : options.from
  const rows = await sql<{day: string}>`
    SELECT process_date::text AS day FROM audit_events_log
    WHERE status = 'SUCCESS' AND settled_at IS NULL AND coalesce(source, 'api') = 'api'
      AND process_date >= ${from}::date AND process_date <= ${options.to}::date
      AND coalesce(finished_at, updated_at AT TIME ZONE 'utc') <= now() - make_interval(hours => ${options.settleHours})
    ORDER BY process_date`.execute(db)
  return rows.rows.map((row) => row.day)
}

/**
 * The dry-run's lines for what a catch-up does after its days: the days it would settle, and the
 * months it would check against Heroku's archives (each only if still due when the run gets there).
 */
export function renderCompletenessPlan(plan: {settle?: {days: string[]; hours: number}; months?: string[]}): string {
  const lines: string[] = []
  if (plan.settle) {
    const {days, hours} = plan.settle
    lines.push(
      days.length === 0
        ? `Settle (SETTLE_HOURS=${hours}): no day of the window is due for its second read.`
        : `Settle (SETTLE_HOURS=${hours}): ${days.length} day(s) would be read once more: ${days.join(', ')} (at least ${days.length} API request(s), one per 1,000 events).`,
    )
  }

  if (plan.months) {
    lines.push(
      plan.months.length === 0
        ? "Archives: no month that is over awaits its first check (no API request)."
        : `Archives: ${plan.months.join(', ')} would be checked against Heroku's archives, at most 2 this run (1 request to list, 1 per month; the downloads are not API requests).`,
    )
  }

  return lines.length > 0 ? `${lines.join('\n')}\n` : ''
}

export interface SettleRun {
  results: SettleResult[]
  /** Why days were left for a later run, if any were. */
  stopped?: 'budget' | 'signal' | 'account'
}

/** Settles each day in turn; no new day once RateLimit-Remaining is below `reserve` (0: no budget). */
export async function settleDays(
  deps: SettleDeps,
  options: {days: readonly string[]; format: 'text' | 'json'; linesPerSecond?: number; reserve: number; rateLimitRemaining?: number; signal?: AbortSignal},
): Promise<SettleRun> {
  const results: SettleResult[] = []
  let remaining = options.rateLimitRemaining
  for (const day of options.days) {
    if (options.signal?.aborted) return {results, stopped: 'signal'}
    if (options.reserve > 0 && remaining !== undefined && remaining < options.reserve) return {results, stopped: 'budget'}
    const result = await settleDay(deps, {day, format: options.format, linesPerSecond: options.linesPerSecond, signal: options.signal})
    results.push(result)
    remaining = result.rateLimitRemaining ?? remaining
    if (result.accountProblem) return {results, stopped: 'account'}
  }

  return {results}
}

/** Alerts for what the checks found: late or vanished events on a settled day, a month that does not match its archive. Never throws past the caller's catch. */
export async function raiseCompletenessAlerts(
  db: Kysely<Database>,
  webhook: AlertWebhook | undefined,
  found: {settled?: readonly SettleResult[]; months?: readonly MonthResult[]},
): Promise<void> {
  for (const result of found.settled ?? []) {
    if (result.outcome !== 'settled' || (result.late === 0 && result.vanished === 0)) continue
    const text = `${result.day}: the settle re-read found ${result.late} late event(s) (stored and delivered) and ${result.vanished} stored event(s) no longer served`
    await raiseAlert(db, {key: ALERT_KEYS.lateEvents(result.day, result.late + result.vanished), text}, webhook)
  }

  for (const month of found.months ?? []) {
    if ((month.outcome !== 'mismatch' && month.outcome !== 'checksum-failed') || !month.checksum) continue
    await raiseAlert(db, {key: ALERT_KEYS.archiveMismatch(month.month, month.checksum), text: month.message}, webhook)
  }
}
