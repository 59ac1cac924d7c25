import {type Kysely, sql} from 'kysely'

import {lastSignOfLife, staleBefore} from './audit-log-repository.js'
import type {AuditLogRow, Database, ProcessStatus} from './schema.js'

/** What the status page and the JSON API filter by; every field optional. */
export interface LogFilter {
  status?: ProcessStatus
  /** Inclusive YYYY-MM-DD bounds. */
  from?: string
  to?: string
}

export interface LogPage {
  rows: AuditLogRow[]
  total: number
}

function whereFilter(filter: LogFilter, options: {withStatus: boolean}) {
  return sql.join(
    [
      sql`TRUE`,
      ...(options.withStatus && filter.status ? [sql`status = ${filter.status}`] : []),
      ...(filter.from ? [sql`process_date >= ${filter.from}`] : []),
      ...(filter.to ? [sql`process_date <= ${filter.to}`] : []),
    ],
    sql` AND `,
  )
}

/** One page of records, newest date first, and how many match in all: never the whole table. */
export async function listLogs(db: Kysely<Database>, filter: LogFilter, page: {offset: number; limit: number}): Promise<LogPage> {
  const where = whereFilter(filter, {withStatus: true})
  const [rows, count] = await Promise.all([
    sql<AuditLogRow>`
      SELECT * FROM audit_events_log WHERE ${where}
      ORDER BY process_date DESC LIMIT ${page.limit} OFFSET ${page.offset}
    `.execute(db),
    sql<{total: number}>`SELECT count(*)::int AS total FROM audit_events_log WHERE ${where}`.execute(db),
  ])
  return {rows: rows.rows, total: count.rows[0]?.total ?? 0}
}

export interface LogSummary {
  total: number
  successful: number
  failed: number
  inProgress: number
  totalEvents: number
  /** Shares of `total`, 0..1; null when there are no records. */
  successRate: number | null
  failureRate: number | null
  /** Mean events of a SUCCESS day; null without one. */
  averageEventsPerSuccess: number | null
}

/**
 * Totals for a date range. The status filter is deliberately not applied: a success rate over
 * only the SUCCESS records would always read 100 %.
 */
export async function summarizeLogs(db: Kysely<Database>, filter: LogFilter): Promise<LogSummary> {
  const result = await sql<{total: number; successful: number; failed: number; in_progress: number; success_events: number}>`
    SELECT count(*)::int AS total,
           count(*) FILTER (WHERE status = 'SUCCESS')::int AS successful,
           count(*) FILTER (WHERE status IN ('FAILED', 'ERROR'))::int AS failed,
           count(*) FILTER (WHERE status = 'PROCESSING')::int AS in_progress,
           coalesce(sum(events_count) FILTER (WHERE status = 'SUCCESS'), 0)::bigint AS success_events
    FROM audit_events_log WHERE ${whereFilter(filter, {withStatus: false})}
  `.execute(db)
  const row = result.rows[0]
  const total = row?.total ?? 0
  const successful = row?.successful ?? 0
  const failed = row?.failed ?? 0
  const totalEvents = Number(row?.success_events ?? 0)
  return {
    total,
    successful,
    failed,
    inProgress: row?.in_progress ?? 0,
    totalEvents,
    successRate: total === 0 ? null : successful / total,
    failureRate: total === 0 ? null : failed / total,
    averageEventsPerSuccess: successful === 0 ? null : totalEvents / successful,
  }
}

/** The status of each day in [from, to] that has a record. */
export async function statusesBetween(db: Kysely<Database>, from: string, to: string): Promise<Map<string, ProcessStatus>> {
  const rows = await db
    .selectFrom('audit_events_log')
    .select(['process_date', 'status'])
    .where('process_date', '>=', from)
    .where('process_date', '<=', to)
    .execute()
  return new Map(rows.map((r) => [r.process_date, r.status]))
}

export async function findDays(db: Kysely<Database>, days: string[]): Promise<AuditLogRow[]> {
  if (days.length === 0) return []
  return db.selectFrom('audit_events_log').selectAll().where('process_date', 'in', days).orderBy('process_date', 'desc').execute()
}

export interface DeleteOutcome {
  deleted: string[]
  /** PROCESSING records whose run is alive, kept because `force` was not given. */
  refusedLive: string[]
  /** Asked for, but had no record. */
  missing: string[]
}

/**
 * Deletes the given days' records in one statement; a PROCESSING record with a live heartbeat is
 * kept unless `force` (its run would then hit the fence, which is what forcing means).
 */
export async function deleteDays(
  db: Kysely<Database>,
  days: string[],
  options: {force: boolean; staleAfterMinutes: number},
): Promise<DeleteOutcome> {
  if (days.length === 0) return {deleted: [], refusedLive: [], missing: []}
  const deleted = await sql<{process_date: string}>`
    DELETE FROM audit_events_log
    WHERE process_date = ANY(${days}::date[])
      AND (status <> 'PROCESSING' OR ${options.force}::boolean OR ${lastSignOfLife()} < ${staleBefore(options.staleAfterMinutes)})
    RETURNING process_date
  `.execute(db)
  const gone = new Set(deleted.rows.map((r) => r.process_date))
  const remaining = await findDays(db, days.filter((d) => !gone.has(d)))
  const kept = new Set(remaining.map((r) => r.process_date))
  return {
    deleted: [...gone].sort(),
    refusedLive: [...kept].sort(),
    missing: days.filter((d) => !gone.has(d) && !kept.has(d)).sort(),
  }
}
