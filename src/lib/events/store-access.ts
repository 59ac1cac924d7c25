import type {Kysely} from 'kysely'

import type {StoreConfig} from '../config.js'
import {type StoreStats, storeStats} from '../db/event-queries.js'
import {pendingMigrations} from '../db/migrate.js'
import type {Database} from '../db/schema.js'
import {UsageError} from '../errors.js'
import {applyRetention} from '../processing/retention.js'

/** The migration that creates audit_events: before it has run there is no store to read. */
export const STORE_MIGRATION = '2025-10-05T00-00-00_create_audit_events'

/** Searching a store that is off is a usage error: say how to turn it on. */
export function requireStoreOn(store: StoreConfig): void {
  if (!store.enabled) {
    throw new UsageError('the event store is off (EVENT_STORE=off): no events are kept to search', 'unset EVENT_STORE (or set it to on); process then keeps each day it collects')
  }
}

/**
 * Can the store be read? `missing`: its migration has not run (a database not created yet, or
 * never migrated), so nothing is stored. Other migrations pending: a usage error, since the
 * reading code expects the schema they make.
 */
export async function storeReadiness(db: Kysely<Database>): Promise<'ready' | 'missing'> {
  const pending = await pendingMigrations(db)
  if (pending.includes(STORE_MIGRATION)) return 'missing'
  if (pending.length > 0) {
    throw new UsageError(`the database has ${pending.length} pending migration(s) (${pending.join(', ')})`, 'run `audit-logger db init` (or any `process`) to apply them')
  }

  return 'ready'
}

/** What `db status` shows of the store. */
export interface StoreReport extends StoreStats {
  /** EVENT_STORE: whether `process` keeps each day's events. */
  enabled: boolean
  retentionDays: number
}

const EMPTY_STATS: StoreStats = {events: 0, oldestDay: null, newestDay: null, bytes: 0, partitions: 0}

/** The store's size and settings; empty when its migration has not run (nothing is read then). */
export async function storeReport(db: Kysely<Database>, store: StoreConfig, created: boolean): Promise<StoreReport> {
  const stats = created ? await storeStats(db) : EMPTY_STATS
  return {enabled: store.enabled, ...stats, retentionDays: store.retentionDays}
}

/** 1,536 → "1.5 kB", in the units psql's pg_size_pretty uses (1 kB = 1024 bytes). */
export function formatBytes(bytes: number): string {
  const units = ['kB', 'MB', 'GB', 'TB']
  if (bytes < 1024) return `${bytes} bytes`
  let value = bytes / 1024
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }

  return `${value.toFixed(1)} ${units[unit]}`
}

/** The store's lines in `db status`. */
export function renderStoreLines(report: StoreReport, created: boolean): string[] {
  const state = report.enabled
    ? `on, keeping ${report.retentionDays} days (EVENT_RETENTION_DAYS)`
    : 'off (EVENT_STORE=off): process keeps no events; unset EVENT_STORE to keep them'
  const lines = [`Event store: ${state}`]
  if (!created) {
    lines.push('  not created yet: its migration is pending')
  } else if (report.events === 0) {
    lines.push(`  no events stored${report.partitions > 0 ? `; ${report.partitions} month partition(s), ${formatBytes(report.bytes)} on disk` : ''}`)
  } else {
    const perEvent = Math.round(report.bytes / report.events)
    lines.push(
      `  ${report.events} events of ${report.oldestDay}..${report.newestDay} in ${report.partitions} month partition(s): ` +
        `${formatBytes(report.bytes)} on disk, ${perEvent} bytes per event`,
    )
  }

  return lines
}

// --- retention ------------------------------------------------------------------------------

/** What `db prune` did (see applyRetention). */
export interface PruneReport {
  firstKeptDay: string
  retentionDays: number
  /** Whole months dropped, YYYY-MM. */
  droppedMonths: string[]
  /** Months due but in use by a day being stored: the next prune (or process run) drops them. */
  busyMonths: string[]
  /** Events deleted from the month that straddles the boundary. */
  deletedEvents: number
}

const month = (partition: string) => partition.replace(/^audit_events_y(\d{4})m(\d{2})$/, '$1-$2')

/** Removes the events of days before the retention window now (the days' records stay). */
export async function pruneStore(db: Kysely<Database>, retentionDays: number, now: Date = new Date()): Promise<PruneReport> {
  const {firstKept, pruned} = await applyRetention(db, retentionDays, now)
  return {
    firstKeptDay: firstKept,
    retentionDays,
    droppedMonths: pruned.droppedPartitions.map(month),
    busyMonths: pruned.busyPartitions.map(month),
    deletedEvents: pruned.deletedEvents,
  }
}

/** What `db prune` says it did. */
export function describePrune(report: PruneReport): string {
  const window = `days before ${report.firstKeptDay} (EVENT_RETENTION_DAYS=${report.retentionDays})`
  const parts: string[] = []
  if (report.droppedMonths.length > 0) parts.push(`dropped ${report.droppedMonths.length} whole month(s) (${report.droppedMonths.join(', ')})`)
  if (report.deletedEvents > 0) parts.push(`deleted ${report.deletedEvents} event(s) of the month that straddles the boundary`)
  if (report.busyMonths.length > 0) parts.push(`left ${report.busyMonths.join(', ')} for the next prune (in use by a day being stored)`)
  if (parts.length === 0) return `Nothing to prune: no stored event is of ${window}.`
  return `Pruned the events of ${window}: ${parts.join(' and ')}. The days' processing records stay.`
}
