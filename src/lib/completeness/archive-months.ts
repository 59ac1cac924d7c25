import {type Kysely, sql} from 'kysely'

import type {Database} from '../db/schema.js'
import type {ArchiveInfo} from '../heroku/archives.js'
import {redact} from '../secrets.js'
import {escapeControls} from '../text.js'
import {type ArchiveMonthDeps, type MonthResult, checkArchiveMonth, coveredTo, monthBounds} from './archive-month.js'

/*
 * Which months to hold against their archives, and going through them one by one.
 */

export interface MonthChoice {
  /** The first day the store keeps (EVENT_RETENTION_DAYS). */
  storeFrom?: string
  /** Only months whose archive covers the whole month (process --catch-up: a month once it is over). */
  wholeMonthsOnly?: boolean
  /** Only months with a SUCCESS day on or after this day (catch-up: its window). */
  since?: string
}

/**
 * The listed archives worth checking: months holding a stored SUCCESS day that have not been
 * checked against the archive's current checksum (a failed checksum counts as not checked), oldest first.
 */
export async function monthsToVerify(db: Kysely<Database>, listed: readonly ArchiveInfo[], choice: MonthChoice = {}): Promise<ArchiveInfo[]> {
  if (listed.length === 0) return []
  const from = [choice.storeFrom, choice.since].filter((day): day is string => day !== undefined).sort().at(-1) ?? '0001-01-01'
  const stored = await sql<{month: string}>`
    SELECT DISTINCT to_char(process_date, 'YYYY-MM') AS month FROM audit_events_log
    WHERE status = 'SUCCESS' AND process_date >= ${from}::date`.execute(db)
  const withDays = new Set(stored.rows.map((row) => row.month))
  const checked = await db.selectFrom('audit_archives').select(['month', 'checksum', 'status']).execute()
  const done = new Set(checked.filter((row) => row.status !== 'checksum-failed').map((row) => `${row.month} ${row.checksum}`))
  return listed
    .filter((info) => withDays.has(info.month) && !done.has(`${info.month} ${info.checksum}`))
    .filter((info) => !choice.wholeMonthsOnly || coveredTo(info.month, info.createdAt) === monthBounds(info.month).last)
    .toSorted((a, b) => (a.month < b.month ? -1 : a.month > b.month ? 1 : 0))
}

/**
 * Months that are over (before `currentMonth`), hold a stored SUCCESS day, and were never
 * checked (or only failed their checksum): catch-up asks Heroku for its archives only then, so a
 * run with nothing due costs no request.
 */
export async function monthsNeverChecked(db: Kysely<Database>, options: {currentMonth: string; storeFrom?: string}): Promise<string[]> {
  const rows = await sql<{month: string}>`
    SELECT DISTINCT to_char(l.process_date, 'YYYY-MM') AS month FROM audit_events_log l
    WHERE l.status = 'SUCCESS' AND l.process_date >= ${options.storeFrom ?? '0001-01-01'}::date AND l.process_date < ${`${options.currentMonth}-01`}::date
      AND NOT EXISTS (SELECT 1 FROM audit_archives a WHERE a.month = to_char(l.process_date, 'YYYY-MM') AND a.status <> 'checksum-failed')
    ORDER BY month`.execute(db)
  return rows.rows.map((row) => row.month)
}

export interface MonthsRun {
  results: MonthResult[]
  /** 0 every month consistent (or had no archive to check); 1 a mismatch remains, a checksum failed or a month could not be checked. */
  exitCode: 0 | 1
}

/** Checks each month in turn (one download at a time); a failing month does not stop the others, a signal does. */
export async function runArchiveMonths(
  deps: ArchiveMonthDeps,
  months: ReadonlyArray<{month: string; info?: ArchiveInfo}>,
  options: {fill: boolean; format: 'text' | 'json'; storeFrom?: string; linesPerSecond?: number; signal?: AbortSignal},
): Promise<MonthsRun> {
  const results: MonthResult[] = []
  for (const {month, info} of months) {
    if (options.signal?.aborted) break
    const result = await checkArchiveMonth(deps, {...options, month, info})
    results.push(result)
    const line = escapeControls(redact(result.message))
    if (result.outcome === 'consistent') deps.logger.success(line)
    else if (result.outcome === 'no-archive') deps.logger.info(line)
    else deps.logger.error(line)
  }

  const failed = results.some((r) => r.outcome === 'mismatch' || r.outcome === 'checksum-failed' || r.outcome === 'failed')
  return {results, exitCode: failed || options.signal?.aborted ? 1 : 0}
}
