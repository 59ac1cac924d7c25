import {addDays, isoWeekday, yesterdayUtc} from '../dates.js'

import type {LogFilter, LogSummary} from '../db/log-queries.js'
import type {AuditLogRow, ProcessStatus} from '../db/schema.js'

/** A record as the page and the JSON API show it: UTC ISO times, a duration, nothing derived twice. */
export interface RecordView {
  date: string
  status: ProcessStatus
  events: number
  attempts: number
  durationSeconds: number | null
  error: string | null
  createdAt: string | null
  updatedAt: string | null
  heartbeatAt: string | null
  startedAt: string | null
  finishedAt: string | null
  claimToken: string | null
  /** SHA-256 over the day's sorted event ids, for a SUCCESS day. */
  digest: string | null
}

const iso = (value: Date | null | undefined) => (value ? value.toISOString() : null)

export function toRecordView(row: AuditLogRow): RecordView {
  return {
    date: row.process_date,
    status: row.status,
    events: row.events_count ?? 0,
    attempts: row.attempts,
    durationSeconds: row.started_at && row.finished_at ? (row.finished_at.getTime() - row.started_at.getTime()) / 1000 : null,
    error: row.error_message,
    createdAt: iso(row.created_at),
    updatedAt: iso(row.updated_at),
    heartbeatAt: iso(row.heartbeat_at),
    startedAt: iso(row.started_at),
    finishedAt: iso(row.finished_at),
    claimToken: row.claim_token,
    digest: row.events_digest,
  }
}

/** Every column of a record, for the day's detail view, in table order, with readable values. */
export function allColumns(row: AuditLogRow): Array<{name: string; value: string}> {
  return Object.entries(row).map(([name, value]) => ({
    name,
    value: value === null || value === undefined ? '—' : value instanceof Date ? formatUtc(value) : String(value),
  }))
}

export function formatUtc(value: Date | string | null): string {
  if (value === null) return '—'
  const date = typeof value === 'string' ? new Date(value) : value
  return `${date.toISOString().slice(0, 19).replace('T', ' ')} UTC`
}

export function formatDuration(seconds: number | null): string {
  if (seconds === null) return '—'
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`
  if (seconds < 120) return `${seconds.toFixed(1)} s`
  return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`
}

export function formatPercent(share: number | null): string {
  return share === null ? '—' : `${(share * 100).toFixed(1)} %`
}

export interface CalendarCell {
  day: string
  status: ProcessStatus | 'MISSING'
  /** 1 = Monday … 7 = Sunday, for the grid's rows. */
  weekday: number
}

/** The last `days` UTC days up to yesterday, oldest first, with days that have no record as MISSING. */
export function calendarCells(statuses: Map<string, ProcessStatus>, now: Date, days = 90): CalendarCell[] {
  const {from} = calendarRange(now, days)
  return Array.from({length: days}, (_, i) => {
    const day = addDays(from, i)
    return {day, status: statuses.get(day) ?? 'MISSING', weekday: isoWeekday(day)}
  })
}

export function calendarRange(now: Date, days = 90): {from: string; to: string} {
  const to = yesterdayUtc(now)
  return {from: addDays(to, -(days - 1)), to}
}

/** A query string for the log view, keeping the filter (so a filtered view is a shareable link). */
export function logQuery(filter: LogFilter, extra: Record<string, string | number | undefined> = {}): string {
  const params = new URLSearchParams()
  if (filter.status) params.set('status', filter.status)
  if (filter.from) params.set('from', filter.from)
  if (filter.to) params.set('to', filter.to)
  for (const [key, value] of Object.entries(extra)) if (value !== undefined) params.set(key, String(value))
  const text = params.toString()
  return text ? `?${text}` : ''
}

export function summaryView(summary: LogSummary) {
  return {
    ...summary,
    successRateText: formatPercent(summary.successRate),
    failureRateText: formatPercent(summary.failureRate),
    averageText: summary.averageEventsPerSuccess === null ? '—' : summary.averageEventsPerSuccess.toFixed(1),
  }
}
