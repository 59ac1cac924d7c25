import type {Kysely} from 'kysely'

import {DEFAULT_RETENTION_DAYS, MAX_CATCH_UP_DAYS, type SinkConfig, type StoreConfig} from '../config.js'
import {type ArchiveMonth, listArchiveMonths} from '../db/archive-queries.js'
import {countByStatus, latestDays} from '../db/audit-log-repository.js'
import {migrationState} from '../db/migrate.js'
import type {AuditLogRow, Database, DaySource} from '../db/schema.js'
import {sinkBacklogs} from '../db/sink-queries.js'
import {type SinkStatus, deliveryStatus, renderDeliveryLines} from '../delivery/delivery-status.js'
import {STORE_MIGRATION, type StoreReport, renderStoreLines, storeReport} from '../events/store-access.js'
import {archiveSummaryLine} from './archive-status.js'
import {shortDigest} from './events-digest.js'
import {findMissingDays} from './gaps.js'
import {catchUpWindow} from './plan.js'
import {escapeControls, oneLine, renderTable} from '../text.js'

/** A day's completeness columns, named as in the table (and as db status --json and the JSON API name them). */
export interface DayCompleteness {
  /** When the settle re-read finished (ISO); null until then. */
  settled_at: string | null
  /** Events the settle re-read found that the first read had not. */
  late_events: number | null
  /** Events stored before that the settle re-read no longer got (kept). */
  vanished_events: number | null
  /** Events an archive verify found missing and stored. */
  recovered_events: number | null
  /** null or 'api': the events API; 'archive': filled by `archives import`. */
  source: DaySource | null
  /** The digest over the day's ids after the settle re-read. */
  settled_digest: string | null
}

/** The completeness columns of a record, times as ISO text. */
export function dayCompleteness(row: AuditLogRow): DayCompleteness {
  return {
    settled_at: row.settled_at?.toISOString() ?? null,
    late_events: row.late_events ?? null,
    vanished_events: row.vanished_events ?? null,
    recovered_events: row.recovered_events ?? null,
    source: row.source ?? null,
    settled_digest: row.settled_digest ?? null,
  }
}

export interface StatusRecord extends DayCompleteness {
  date: string
  status: string
  events: number
  attempts: number
  durationSeconds: number | null
  error: string | null
  updatedAt: string | null
  /** SUCCESS days: SHA-256 over the day's sorted event ids (see events-digest.ts). */
  digest: string | null
}

export interface StatusReport {
  records: StatusRecord[]
  counts: Record<string, number>
  total: number
  migrations: {applied: string[]; pending: string[]}
  /** The days checked for gaps: the `days` days that end yesterday (UTC). */
  window: {from: string; to: string; days: number}
  /** Days of the window with no record at all, oldest first. */
  missing: string[]
  /** The event store: on or off, its retention, and what it holds (empty until its migration has run). */
  store: StoreReport
  /** Each sink's backlog (SINK_URL): what waits to be delivered, and when it last got through. */
  delivery: SinkStatus[]
  /** The months verified against Heroku's monthly archives, newest first (as `archives status --json`). */
  archives: ArchiveMonth[]
}

export interface StatusOptions {
  /** How many days, ending yesterday, to check for gaps; default 30. */
  days?: number
  now?: Date
  /** EVENT_STORE and EVENT_RETENTION_DAYS; default on, 365 days. */
  store?: StoreConfig
  /** SINK_URL's sink, to show it even before its first delivery. */
  sink?: SinkConfig
}

export const DEFAULT_STATUS_DAYS = 30

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
    digest: row.events_digest ?? null,
    ...dayCompleteness(row),
  }
}

/**
 * The SETTLED cell: "yes +3" (settled, 3 late events; "-2" when 2 vanished), "archive" (filled by
 * archives import), "-" (not settled, or not a SUCCESS day); ", rec +N" when an archive verify
 * recovered N events.
 */
export function settleCell(record: Pick<StatusRecord, 'status' | 'settled_at' | 'late_events' | 'vanished_events' | 'recovered_events' | 'source'>): string {
  let cell = '-'
  if (record.status !== 'SUCCESS') return cell
  if (record.source === 'archive') cell = 'archive'
  else if (record.settled_at) cell = `yes +${record.late_events ?? 0}${record.vanished_events ? ` -${record.vanished_events}` : ''}`
  if (record.recovered_events) cell = cell === '-' ? `rec +${record.recovered_events}` : `${cell}, rec +${record.recovered_events}`
  return cell
}

/**
 * What `db status` shows. Records are read only once every migration is applied; the store's
 * figures as soon as its own migration has run.
 */
export async function statusReport(db: Kysely<Database>, limit: number, options: StatusOptions = {}): Promise<StatusReport> {
  const days = options.days ?? DEFAULT_STATUS_DAYS
  const window = {...catchUpWindow(days, options.now), days}
  const state = await migrationState(db)
  const migrations = {
    applied: state.filter((m) => m.executedAt).map((m) => m.name),
    pending: state.filter((m) => !m.executedAt).map((m) => m.name),
  }
  const store = await storeReport(db, options.store ?? {enabled: true, retentionDays: DEFAULT_RETENTION_DAYS}, migrations.applied.includes(STORE_MIGRATION))
  if (migrations.pending.length > 0) return {records: [], counts: {}, total: 0, migrations, window, missing: [], store, delivery: [], archives: []}
  const [rows, counts, missing, backlogs, archives] = await Promise.all([
    latestDays(db, limit),
    countByStatus(db),
    findMissingDays(db, window),
    sinkBacklogs(db),
    listArchiveMonths(db),
  ])
  const total = Object.values(counts).reduce((sum, n) => sum + n, 0)
  return {records: rows.map(toRecord), counts, total, migrations, window, missing, store, delivery: deliveryStatus(backlogs, options.sink, store.events), archives}
}

/** Consecutive days folded into runs: 2025-09-01..2025-09-07 (7 days), 2025-09-10. */
export function describeDays(days: string[]): string {
  const runs: string[][] = []
  for (const day of days) {
    const run = runs.at(-1)
    if (run && nextDay(run.at(-1)!) === day) run.push(day)
    else runs.push([day])
  }

  return runs.map((run) => (run.length === 1 ? run[0] : `${run[0]}..${run.at(-1)} (${run.length} days)`)).join(', ')
}

function nextDay(day: string): string {
  const date = new Date(`${day}T00:00:00Z`)
  date.setUTCDate(date.getUTCDate() + 1)
  return date.toISOString().slice(0, 10)
}

/** A fixed-width table; the error column is shortened to keep one record per line. */
export function renderStatusTable(report: StatusReport): string {
  const lines: string[] = []
  const storeCreated = report.migrations.applied.includes(STORE_MIGRATION)
  if (report.migrations.pending.length > 0) {
    lines.push(`${report.migrations.pending.length} migration(s) pending: ${report.migrations.pending.join(', ')}`)
    lines.push('Run `audit-logger db init` (or any `process`) to apply them.')
    lines.push(...renderStoreLines(report.store, storeCreated))
    return `${lines.join('\n')}\n`
  }

  if (report.records.length === 0) {
    lines.push('No records yet: run `audit-logger process` to fetch yesterday.')
  } else {
    lines.push(`Latest ${report.records.length} of ${report.total} records:`)
    const header = ['DATE', 'STATUS', 'EVENTS', 'ATTEMPTS', 'DURATION', 'DIGEST', 'SETTLED', 'ERROR']
    // Every stored text is shown escaped: another tool (or an older version) may have written anything.
    const rows = report.records.map((r) => [
      r.date,
      escapeControls(r.status),
      String(r.events),
      String(r.attempts),
      r.durationSeconds === null ? '-' : `${r.durationSeconds.toFixed(1)} s`,
      shortDigest(r.digest),
      settleCell(r),
      oneLine(r.error, 80),
    ])
    lines.push(...renderTable(header, rows, new Set([2, 3, 4])))
    if (report.records.some((r) => r.status === 'SUCCESS')) {
      lines.push('SETTLED: yes +late -vanished after the settle re-read; archive: filled by archives import; rec +N: recovered by archives verify.')
    }
  }

  const counts = Object.entries(report.counts).map(([status, n]) => `${escapeControls(status)} ${n}`)
  lines.push('', `Counts: ${counts.length > 0 ? counts.join(', ') : 'none'}`)
  const {window, missing} = report
  lines.push(
    missing.length === 0
      ? `Missing days in the last ${window.days} days (${window.from}..${window.to}): none`
      : `Missing days in the last ${window.days} days (${window.from}..${window.to}): ${missing.length} — ${describeDays(missing)}. ` +
          `Run \`audit-logger process ${window.days <= MAX_CATCH_UP_DAYS ? `--catch-up --days ${window.days}` : `--from ${missing[0]} --to ${missing.at(-1)}`}\` to fetch them.`,
  )
  lines.push(...renderStoreLines(report.store, storeCreated))
  lines.push(...renderDeliveryLines(report.delivery))
  lines.push(archiveSummaryLine(report.archives))
  const latest = report.migrations.applied.at(-1)
  lines.push(`Migrations: ${report.migrations.applied.length} applied, none pending${latest ? ` (latest ${latest})` : ''}`)
  return `${lines.join('\n')}\n`
}
