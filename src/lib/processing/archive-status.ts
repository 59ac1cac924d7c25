import type {Kysely} from 'kysely'

import {type ArchiveMonth, archivesReadable, listArchiveMonths, summarizeArchives} from '../db/archive-queries.js'
import type {Database} from '../db/schema.js'
import {oneLine, renderTable} from '../text.js'

/** What `archives status` reports: the months, newest first, and whether audit_archives exists yet. */
export interface ArchiveStatusReport {
  months: ArchiveMonth[]
  /** False while the archives migration is pending: nothing can have been verified. */
  readable: boolean
}

/** Reads the months verified against Heroku's archives; none (and no error) before the archives migration has run. */
export async function archiveStatusReport(db: Kysely<Database>): Promise<ArchiveStatusReport> {
  if (!(await archivesReadable(db))) return {months: [], readable: false}
  return {months: await listArchiveMonths(db), readable: true}
}

export const NO_MONTH_VERIFIED = 'no month verified yet: run audit-logger archives verify'

/** "2025-10-02 03:04" (UTC) from an ISO time. */
function shortUtc(value: string | null): string {
  return value === null ? '-' : `${value.slice(0, 10)} ${value.slice(11, 16)}`
}

/** `archives status`: one line per month, every stored text shown on one line with control characters escaped. */
export function renderArchiveTable(months: readonly ArchiveMonth[]): string[] {
  if (months.length === 0) return [NO_MONTH_VERIFIED]
  const header = ['MONTH', 'STATUS', 'VERIFIED (UTC)', 'ARCHIVE EVENTS', 'MATCHED', 'RECOVERED', 'ONLY IN STORE', 'NOT COLLECTED', 'IMPORTED (DAYS/EVENTS)', 'DETAIL']
  const rows = months.map((m) => [
    oneLine(m.month, 16),
    oneLine(m.status, 24),
    shortUtc(m.verified_at),
    String(m.archive_events),
    String(m.matched),
    String(m.recovered),
    String(m.only_in_store),
    String(m.not_collected),
    `${m.imported_days}/${m.imported_events}`,
    m.detail ? oneLine(m.detail, 160) : '-',
  ])
  return renderTable(header, rows, new Set([3, 4, 5, 6, 7, 8]))
}

/** db status's one line: months per status, and the latest verification. */
export function archiveSummaryLine(months: readonly ArchiveMonth[]): string {
  const summary = summarizeArchives(months)
  if (!summary.latest) return `Archives: ${NO_MONTH_VERIFIED}`
  const counts = [`${summary.consistent} consistent`, `${summary.mismatch} mismatch`, `${summary.checksumFailed} checksum-failed`]
  if (summary.other > 0) counts.push(`${summary.other} other`)
  const latest = `latest verified ${shortUtc(summary.latest.verified_at)} UTC (${oneLine(summary.latest.month, 16)})`
  return `Archives: ${summary.months} month${summary.months === 1 ? '' : 's'} — ${counts.join(', ')}; ${latest}`
}
