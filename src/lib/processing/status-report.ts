import type {Kysely} from 'kysely'

import {countByStatus, latestDays} from '../db/audit-log-repository.js'
import {migrationState} from '../db/migrate.js'
import type {AuditLogRow, Database} from '../db/schema.js'

export interface StatusRecord {
  date: string
  status: string
  events: number
  attempts: number
  durationSeconds: number | null
  error: string | null
  updatedAt: string | null
}

export interface StatusReport {
  records: StatusRecord[]
  counts: Record<string, number>
  total: number
  migrations: {applied: string[]; pending: string[]}
}

function toRecord(row: AuditLogRow): StatusRecord {
  const duration = row.started_at && row.finished_at ? (row.finished_at.getTime() - row.started_at.getTime()) / 1000 : null
  return {
    date: row.process_date,
    status: row.status,
    events: row.events_count ?? 0,
    attempts: row.attempts,
    durationSeconds: duration,
    error: row.error_message,
    updatedAt: row.updated_at?.toISOString() ?? null,
  }
}

/** What `db status` shows. Records are read only once every migration is applied. */
export async function statusReport(db: Kysely<Database>, limit: number): Promise<StatusReport> {
  const state = await migrationState(db)
  const migrations = {
    applied: state.filter((m) => m.executedAt).map((m) => m.name),
    pending: state.filter((m) => !m.executedAt).map((m) => m.name),
  }
  if (migrations.pending.length > 0) return {records: [], counts: {}, total: 0, migrations}
  const [rows, counts] = await Promise.all([latestDays(db, limit), countByStatus(db)])
  const total = Object.values(counts).reduce((sum, n) => sum + n, 0)
  return {records: rows.map(toRecord), counts, total, migrations}
}

/** A fixed-width table; the error column is shortened to keep one record per line. */
export function renderStatusTable(report: StatusReport): string {
  const lines: string[] = []
  if (report.migrations.pending.length > 0) {
    lines.push(`${report.migrations.pending.length} migration(s) pending: ${report.migrations.pending.join(', ')}`)
    lines.push('Run `audit-logger db init` (or any `process`) to apply them.')
    return `${lines.join('\n')}\n`
  }

  if (report.records.length === 0) {
    lines.push('No records yet: run `audit-logger process` to fetch yesterday.')
  } else {
    lines.push(`Latest ${report.records.length} of ${report.total} records:`)
    const header = ['DATE', 'STATUS', 'EVENTS', 'ATTEMPTS', 'DURATION', 'ERROR']
    const rows = report.records.map((r) => [
      r.date,
      r.status,
      String(r.events),
      String(r.attempts),
      r.durationSeconds === null ? '-' : `${r.durationSeconds.toFixed(1)} s`,
      shorten(r.error ?? '', 80),
    ])
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)))
    const rightAligned = new Set([2, 3, 4])
    const format = (cells: string[]) =>
      cells.map((cell, i) => (i === cells.length - 1 ? cell : rightAligned.has(i) ? cell.padStart(widths[i]) : cell.padEnd(widths[i]))).join('  ').trimEnd()
    lines.push(format(header), ...rows.map(format))
  }

  const counts = Object.entries(report.counts).map(([status, n]) => `${status} ${n}`)
  lines.push('', `Counts: ${counts.length > 0 ? counts.join(', ') : 'none'}`)
  const latest = report.migrations.applied.at(-1)
  lines.push(`Migrations: ${report.migrations.applied.length} applied, none pending${latest ? ` (latest ${latest})` : ''}`)
  return `${lines.join('\n')}\n`
}

function shorten(text: string, max: number): string {
  const flat = text.replaceAll(/\s+/g, ' ')
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat
}
