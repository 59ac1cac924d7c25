import {addDays, isoWeekday, yesterdayUtc} from '../dates.js'

import type {ArchiveMonth, CalendarDay} from '../db/archive-queries.js'
import type {LogFilter, LogSummary} from '../db/log-queries.js'
import {ARCHIVE_STATUSES, type AuditLogRow, type ProcessStatus} from '../db/schema.js'
import {type DayCompleteness, dayCompleteness} from '../processing/status-report.js'

/** A record as the page and the JSON API show it: UTC ISO times, a duration, nothing derived twice. */
export interface RecordView extends DayCompleteness {
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
    ...dayCompleteness(row),
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
  /** SUCCESS days: settled (re-read), unsettled (read once so far) or archive (filled from the archive). */
  settle?: 'settled' | 'unsettled' | 'archive'
  /** What the cell's title and label say, in words (the colour is never the only sign). */
  label: string
}

const SETTLE_WORDS = {settled: 'settled', unsettled: 'not yet settled', archive: 'from the archive'} as const

/** The last `days` UTC days up to yesterday, oldest first, with days that have no record as MISSING. */
export function calendarCells(days: Map<string, CalendarDay>, now: Date, count = 90): CalendarCell[] {
  const {from} = calendarRange(now, count)
  return Array.from({length: count}, (_, i) => {
    const day = addDays(from, i)
    const found = days.get(day)
    const status = found?.status ?? 'MISSING'
    const settle = found?.status === 'SUCCESS' ? (found.source === 'archive' ? 'archive' : found.settled ? 'settled' : 'unsettled') : undefined
    return {day, status, weekday: isoWeekday(day), settle, label: settle ? `${status}, ${SETTLE_WORDS[settle]}` : status}
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

/** Where a day's events came from, and what the checks since found, as sentences for the day page. */
export function provenanceLines(record: RecordView): string[] {
  const lines: string[] = []
  if (record.source === 'archive') lines.push("Filled from Heroku's monthly archive (archives import), without events-API requests.")
  else lines.push('Collected from the events API.')
  if (record.status === 'SUCCESS' && record.source !== 'archive') {
    if (record.settled_at) {
      const late = record.late_events ?? 0
      const vanished = record.vanished_events ?? 0
      lines.push(
        `Settled ${formatUtc(record.settled_at)}: the re-read found +${late} late event${late === 1 ? '' : 's'} (stored) and ${vanished} vanished ` +
          '(stored before, no longer served; kept).',
      )
    } else {
      lines.push('Not settled yet: read once so far; process --catch-up reads it again once SETTLE_HOURS have passed.')
    }
  }

  if (record.recovered_events) {
    lines.push(`${record.recovered_events} event${record.recovered_events === 1 ? '' : 's'} recovered from the archive (archives verify).`)
  }

  return lines
}

/** What a month's archive check looks like on the page: a class from a known status only, and words. */
export interface MonthView {
  month: string
  /** consistent, mismatch, checksum-failed, not-verified, or unknown (a status this version does not know). */
  state: string
  /** The state in words, shown next to the colour. */
  word: string
  verifiedText?: string
  detail?: string | null
  archive?: ArchiveMonth
}

const MONTH_WORDS: Record<string, string> = {'consistent': 'consistent', 'mismatch': 'mismatch', 'checksum-failed': 'checksum failed', 'not-verified': 'not verified'}

export function monthView(month: string, archive: ArchiveMonth | undefined): MonthView {
  if (!archive) return {month, state: 'not-verified', word: MONTH_WORDS['not-verified']}
  const known = (ARCHIVE_STATUSES as readonly string[]).includes(archive.status)
  return {
    month,
    state: known ? archive.status : 'unknown',
    word: known ? MONTH_WORDS[archive.status] : archive.status,
    verifiedText: formatUtc(archive.verified_at),
    detail: archive.detail,
    archive,
  }
}

/** The `count` months up to yesterday's (UTC), oldest first: YYYY-MM. */
export function recentMonths(now: Date, count = 12): string[] {
  const [year, month] = yesterdayUtc(now).split('-').map(Number)
  return Array.from({length: count}, (_, i) => {
    const index = year * 12 + (month - 1) - (count - 1 - i)
    return `${String(Math.floor(index / 12)).padStart(4, '0')}-${String((index % 12) + 1).padStart(2, '0')}`
  })
}

/** The log page's months strip: the recent months, each with its archive check or "not verified". */
export function monthsStrip(months: readonly ArchiveMonth[], now: Date, count = 12): MonthView[] {
  const byMonth = new Map(months.map((m) => [m.month, m]))
  return recentMonths(now, count).map((month) => monthView(month, byMonth.get(month)))
}
