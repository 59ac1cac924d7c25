import {type Kysely, sql} from 'kysely'

import {pendingMigrations} from './migrate.js'
import {ARCHIVE_STATUSES, type ArchiveRow, type ArchiveStatus, type Database, type DaySource, type ProcessStatus} from './schema.js'

/**
 * What shows the completeness record (read-only): the months checked against Heroku's monthly
 * archives (audit_archives), their summary, and each day's settle state for the calendar. The
 * code that writes these (settle re-reads, archives verify/import) lives elsewhere.
 */

/** The migration that creates audit_archives and the days' settle columns. */
export const ARCHIVES_MIGRATION = '2025-10-08T00-00-00_create_archives'

/**
 * A month as `archives status --json`, `db status --json` ("archives") and GET /api/archives show it.
 * Text values (`status`, `checksum`, `detail`) are as stored: whoever shows them escapes them.
 */
export interface ArchiveMonth {
  /** YYYY-MM */
  month: string
  status: string
  /** ISO 8601, UTC. */
  verified_at: string
  checksum: string | null
  archive_created_at: string | null
  /** YYYY-MM-DD: the last day the archive covers. */
  covered_to: string | null
  /** Bytes of the gzip file. */
  size: number | null
  archive_events: number
  days_compared: number
  matched: number
  recovered: number
  only_in_store: number
  not_collected: number
  imported_days: number
  imported_events: number
  detail: string | null
}

/** The most months any view lists: 20 years of archives. */
export const MAX_ARCHIVE_MONTHS = 240

const iso = (value: Date | string | null) => (value === null ? null : new Date(value).toISOString())
const count = (value: number | string | null | undefined) => Number(value ?? 0)

export function toArchiveMonth(row: ArchiveRow): ArchiveMonth {
  return {
    month: row.month,
    status: row.status,
    verified_at: iso(row.verified_at)!,
    checksum: row.checksum,
    archive_created_at: iso(row.archive_created_at),
    covered_to: row.covered_to,
    size: row.size === null ? null : Number(row.size),
    archive_events: count(row.archive_events),
    days_compared: count(row.days_compared),
    matched: count(row.matched),
    recovered: count(row.recovered),
    only_in_store: count(row.only_in_store),
    not_collected: count(row.not_collected),
    imported_days: count(row.imported_days),
    imported_events: count(row.imported_events),
    detail: row.detail,
  }
}

/** The months recorded in audit_archives, newest first (at most `limit`). */
export async function listArchiveMonths(db: Kysely<Database>, limit = MAX_ARCHIVE_MONTHS): Promise<ArchiveMonth[]> {
  const rows = await db.selectFrom('audit_archives').selectAll().orderBy('month', 'desc').limit(limit).execute()
  return rows.map((row) => toArchiveMonth(row))
}

/** One month's row (YYYY-MM), or undefined when it was never verified. */
export async function findArchiveMonth(db: Kysely<Database>, month: string): Promise<ArchiveMonth | undefined> {
  const row = await db.selectFrom('audit_archives').selectAll().where('month', '=', month).executeTakeFirst()
  return row ? toArchiveMonth(row) : undefined
}

/**
 * Can audit_archives be read? Not while its migration is pending (a database not created yet,
 * or not migrated since): the views then show no month rather than fail.
 */
export async function archivesReadable(db: Kysely<Database>): Promise<boolean> {
  return !(await pendingMigrations(db)).includes(ARCHIVES_MIGRATION)
}

export interface ArchiveSummary {
  months: number
  consistent: number
  mismatch: number
  checksumFailed: number
  /** Rows whose status is none of ARCHIVE_STATUSES (written by something else). */
  other: number
  /** The month verified last, and when (ISO); null without one. */
  latest: {month: string; verified_at: string} | null
}

/** Counts per status over the months listed, and the one verified last. */
export function summarizeArchives(months: readonly ArchiveMonth[]): ArchiveSummary {
  const by = (status: ArchiveStatus) => months.filter((m) => m.status === status).length
  const known = new Set<string>(ARCHIVE_STATUSES)
  let latest: ArchiveMonth | undefined
  for (const month of months) if (!latest || month.verified_at > latest.verified_at) latest = month
  return {
    months: months.length,
    consistent: by('consistent'),
    mismatch: by('mismatch'),
    checksumFailed: by('checksum-failed'),
    other: months.filter((m) => !known.has(m.status)).length,
    latest: latest ? {month: latest.month, verified_at: latest.verified_at} : null,
  }
}

/** What the calendar shows of a day that has a record. */
export interface CalendarDay {
  status: ProcessStatus
  /** The settle re-read has run. */
  settled: boolean
  source: DaySource | null
}

/** Each day in [from, to] that has a record: its status, whether it is settled, and where its events came from. */
export async function calendarDaysBetween(db: Kysely<Database>, from: string, to: string): Promise<Map<string, CalendarDay>> {
  const rows = await sql<{process_date: string; status: ProcessStatus; settled: boolean; source: DaySource | null}>`
    SELECT process_date, status, settled_at IS NOT NULL AS settled, source
    FROM audit_events_log WHERE process_date >= ${from} AND process_date <= ${to}
  `.execute(db)
  return new Map(rows.rows.map((r) => [r.process_date, {status: r.status, settled: r.settled === true, source: r.source}]))
}
