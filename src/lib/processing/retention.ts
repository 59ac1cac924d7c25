import type {Kysely} from 'kysely'

import {addDays, todayUtc} from '../dates.js'
import {type PruneResult, pruneEvents} from '../db/event-queries.js'
import type {Database} from '../db/schema.js'
import {forgetDaysBefore} from '../db/sink-queries.js'

/** The first day whose events are kept: `retentionDays` days before today (UTC). */
export function firstKeptDay(retentionDays: number, now: Date = new Date()): string {
  return addDays(todayUtc(now), -retentionDays)
}

export interface RetentionReport {
  firstKept: string
  pruned: PruneResult
}

/** Removes the events of every day before the retention window; the days' records stay. */
export async function applyRetention(db: Kysely<Database>, retentionDays: number, now: Date = new Date()): Promise<RetentionReport> {
  const firstKept = firstKeptDay(retentionDays, now)
  const pruned = await pruneEvents(db, firstKept)
  // The sinks' outbox rows of those days point at nothing now.
  await forgetDaysBefore(db, firstKept)
  return {firstKept, pruned}
}

/** One line saying what retention removed, or undefined when there was nothing to remove. */
export function retentionLine(report: RetentionReport, retentionDays: number): string | undefined {
  const {droppedPartitions, busyPartitions, deletedEvents} = report.pruned
  if (droppedPartitions.length === 0 && deletedEvents === 0 && busyPartitions.length === 0) return undefined
  const parts = []
  if (droppedPartitions.length > 0) parts.push(`dropped ${droppedPartitions.length} whole month(s) (${droppedPartitions.join(', ')})`)
  if (deletedEvents > 0) parts.push(`deleted ${deletedEvents} event(s)`)
  if (busyPartitions.length > 0) parts.push(`left ${busyPartitions.join(', ')} for the next run (in use by a day being stored)`)
  return `retention (${retentionDays} days): events of days before ${report.firstKept}: ${parts.join('; ')}; the days' records stay`
}
