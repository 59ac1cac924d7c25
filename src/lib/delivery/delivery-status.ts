import type {SinkConfig} from '../config.js'
import type {SinkBacklog} from '../db/sink-queries.js'
import {escapeControls, oneLine} from '../text.js'
import {sinkName} from './deliver-events.js'

/** One sink's backlog, as `db status --json` (under "delivery") and the status page show it. */
export interface SinkStatus {
  sink: string
  /** Its format and host: the URL itself is never shown (it may hold a token). */
  target: string
  /** Is it SINK_URL's sink (the one runs deliver to now)? */
  configured: boolean
  /** Events stored and not yet accepted by the sink. */
  pendingEvents: number
  pendingDays: number
  oldestPendingDay: string | null
  deliveredEvents: number
  lastSuccessAt: string | null
  lastError: string | null
  stoppedAt: string | null
  stopReason: string | null
}

/**
 * Every sink with a position, and SINK_URL's even before its first run (it will be sent all
 * `storedEvents` the store holds then).
 */
export function deliveryStatus(backlogs: readonly SinkBacklog[], configured: SinkConfig | undefined, storedEvents: number): SinkStatus[] {
  const current = configured ? sinkName(configured) : undefined
  const statuses: SinkStatus[] = backlogs.map((b) => ({
    sink: b.name,
    target: b.target,
    configured: b.name === current,
    pendingEvents: b.pending_events,
    pendingDays: b.pending_days,
    oldestPendingDay: b.oldest_pending_day,
    deliveredEvents: b.delivered_events,
    lastSuccessAt: b.last_success_at?.toISOString() ?? null,
    lastError: b.last_error,
    stoppedAt: b.stopped_at?.toISOString() ?? null,
    stopReason: b.stop_reason,
  }))
  if (configured && current && !statuses.some((s) => s.configured)) {
    statuses.unshift({
      sink: current,
      target: configured.target,
      configured: true,
      pendingEvents: storedEvents,
      pendingDays: 0,
      oldestPendingDay: null,
      deliveredEvents: 0,
      lastSuccessAt: null,
      lastError: null,
      stoppedAt: null,
      stopReason: null,
    })
  }

  return statuses
}

/** The lines `db status` prints about delivery. */
export function renderDeliveryLines(statuses: readonly SinkStatus[]): string[] {
  if (statuses.length === 0) return ['Delivery: no sink (set SINK_URL to send every stored event to an HTTP intake)']
  const lines = ['Delivery:']
  for (const s of statuses) {
    const target = escapeControls(s.target)
    const waiting = s.pendingEvents > 0 ? `${s.pendingEvents} event(s) waiting${s.oldestPendingDay ? ` since ${s.oldestPendingDay}` : ''}` : 'nothing waiting'
    const last = s.lastSuccessAt ? `last delivered ${s.lastSuccessAt}` : 'never delivered yet'
    const note = s.configured ? '' : ' (no longer SINK_URL: not delivered to)'
    lines.push(`  ${target}${note}: ${waiting}; ${last}; ${s.deliveredEvents} delivered in all`)
    if (s.stoppedAt) {
      lines.push(`    STOPPED since ${s.stoppedAt}: ${oneLine(s.stopReason, 160)}. Fix it, then run \`audit-logger deliver\` to resume.`)
    } else if (s.lastError && s.pendingEvents > 0) {
      lines.push(`    last try failed: ${oneLine(s.lastError, 160)}; the next run resumes`)
    }
  }

  return lines
}
