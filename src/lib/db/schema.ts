import type {ColumnType, Generated, Insertable, Selectable, Updateable} from 'kysely'

export const STATUSES = ['PROCESSING', 'SUCCESS', 'FAILED', 'ERROR'] as const
export type ProcessStatus = (typeof STATUSES)[number]

/**
 * `audit_events_log`: the old Python tool's table (first six columns, kept compatible so an
 * existing database is adopted in place) plus the claim protocol's columns.
 */
export interface AuditEventsLogTable {
  id: Generated<number>
  /** The UTC day, always the string YYYY-MM-DD (pg's date parser is replaced, see connection.ts). */
  process_date: string
  status: ProcessStatus
  events_count: number | null
  error_message: string | null
  /** Naive UTC timestamps, as the old tool wrote them; parsed as UTC. Written only with SQL now(). */
  created_at: ColumnType<Date | null, never, never>
  updated_at: ColumnType<Date | null, never, never>
  /** How many runs have claimed this day. */
  attempts: ColumnType<number, number | undefined, number>
  /** The fence: a fresh UUID per claim; the finish only counts while it still matches. */
  claim_token: string | null
  heartbeat_at: ColumnType<Date | null, never, never>
  started_at: ColumnType<Date | null, never, never>
  finished_at: ColumnType<Date | null, never, never>
  /** SUCCESS days only: SHA-256 hex over the day's event ids, sorted, joined by '\n' (see events-digest.ts). */
  events_digest: string | null
}

/**
 * `audit_events`: the event store, one row per collected event, partitioned by month of `day`
 * (see the 2025-10-05 migration and event-store.ts).
 */
export interface AuditEventsTable {
  /** The collection day the API served the event for, YYYY-MM-DD. */
  day: string
  id: string
  /** The event exactly as the API sent it: its JSON text. */
  event_json: string
  created_at: Date
  type: string
  action: string
  actor_email: string | null
  actor_id: string | null
  app_name: string | null
  app_id: string | null
  owner_email: string | null
  team_name: string | null
  ip_address: string | null
  /** The enterprise account's name, or its id when the event names none. */
  account: string | null
  collected_at: ColumnType<Date, never, never>
}

export interface Database {
  audit_events_log: AuditEventsLogTable
  audit_events: AuditEventsTable
}

export type StoredEventRow = Selectable<AuditEventsTable>

export type AuditLogRow = Selectable<AuditEventsLogTable>
export type NewAuditLogRow = Insertable<AuditEventsLogTable>
export type AuditLogUpdate = Updateable<AuditEventsLogTable>
