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
  /** Where the day's events came from: null or 'api' (the events API), 'archive' (archives import). */
  source: ColumnType<DaySource | null, DaySource | null | undefined, DaySource | null>
  /** When the settle re-read finished (see settle.ts); null until then. */
  settled_at: ColumnType<Date | null, never, never>
  /** Events the settle re-read found that the first read had not (stored then). */
  late_events: ColumnType<number | null, never, number | null>
  /** Events stored before that the settle re-read no longer got (reported, never deleted). */
  vanished_events: ColumnType<number | null, never, number | null>
  /** The digest over the day's stored ids after the settle re-read (events_digest keeps the first). */
  settled_digest: ColumnType<string | null, never, string | null>
  /** Events an archive verify found missing and stored. */
  recovered_events: ColumnType<number | null, never, number | null>
}

export const DAY_SOURCES = ['api', 'archive'] as const
export type DaySource = (typeof DAY_SOURCES)[number]

export const ARCHIVE_STATUSES = ['consistent', 'mismatch', 'checksum-failed'] as const
export type ArchiveStatus = (typeof ARCHIVE_STATUSES)[number]

/** `audit_archives`: a month checked against (or filled from) Heroku's monthly archive; see the 2025-10-08 migration. */
export interface AuditArchivesTable {
  /** YYYY-MM */
  month: string
  status: ArchiveStatus
  /** The archive's SHA-256 (hex, of its gzip bytes) as Heroku listed it when this row was written. */
  checksum: string | null
  archive_created_at: Date | null
  size: ColumnType<string | null, string | number | null, string | number | null>
  /** The last day the archive covers (YYYY-MM-DD): the month's last day, or the day before it was made. */
  covered_to: string | null
  verified_at: ColumnType<Date, never, never>
  archive_events: number
  /** SUCCESS days (events kept) compared with the archive. */
  days_compared: number
  matched: number
  recovered: number
  only_in_store: number
  /** Archive events of days with no SUCCESS record (and not imported): `archives import` fills those. */
  not_collected: number
  imported_days: number
  imported_events: number
  /** One bounded, redacted line: e.g. the first ids only in the store, or why the checksum failed. */
  detail: string | null
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

/** `audit_sinks`: one row per delivery target (SINK_URL), see the 2025-10-06 migration and delivery/. */
export interface AuditSinksTable {
  /** The format and host, and a short hash of the whole URL (which may hold a secret, so it is never stored). */
  name: string
  format: string
  /** What is shown of the sink: its format and host. */
  target: string
  created_at: ColumnType<Date, never, never>
  delivered_events: ColumnType<string, never, string>
  last_success_at: ColumnType<Date | null, never, never>
  last_attempt_at: ColumnType<Date | null, never, never>
  last_error: string | null
  stopped_at: ColumnType<Date | null, never, never>
  stop_reason: string | null
  /** Held by the one delivery run working for this sink (see sink-queries.ts). */
  lease_token: string | null
  leased_until: ColumnType<Date | null, never, never>
}

/** `audit_sink_days`: the outbox, a row per (sink, stored day) with the position reached in the day. */
export interface AuditSinkDaysTable {
  sink: string
  day: string
  /** Bumped when the day is stored again (a forced rerun): a delivery holding an older one starts the day over. */
  generation: ColumnType<number, number | undefined, number>
  /** The last event delivered, in (created_at, id) order; null before the first. */
  after_created_at: Date | null
  after_id: string | null
  delivered: ColumnType<number, number | undefined, number>
  queued_at: ColumnType<Date, never, never>
  done_at: ColumnType<Date | null, never, never>
}

/**
 * `audit_alerts`: what the alert webhook is told, kept until it is sent (see the 2025-10-07
 * migration and alerts/alerts.ts). Unique by `key`, so an alert is raised once however often asked.
 */
export interface AuditAlertsTable {
  id: Generated<number>
  /** `<kind>:<subject>[:<occurrence>]`, e.g. day-failed:2026-11-30:3 (see ALERT_KEYS in alerts.ts). */
  key: string
  /** Redacted, one line, bounded: safe to send and to print. */
  text: string
  created_at: ColumnType<Date, never, never>
  /** When the webhook accepted it; null while it waits. */
  sent_at: ColumnType<Date | null, never, Date | null>
  /** Tries to send it so far. */
  attempts: ColumnType<number, never, number>
  /** Why the last try failed (redacted, one line), else null. */
  last_error: string | null
  /** Held by one flush while it sends (two runs on one database never send an alert twice at once). */
  leased_until: ColumnType<Date | null, never, Date | null>
}

export interface Database {
  audit_events_log: AuditEventsLogTable
  audit_events: AuditEventsTable
  audit_sinks: AuditSinksTable
  audit_sink_days: AuditSinkDaysTable
  audit_alerts: AuditAlertsTable
  audit_archives: AuditArchivesTable
}

export type StoredEventRow = Selectable<AuditEventsTable>

export type AuditLogRow = Selectable<AuditEventsLogTable>
export type NewAuditLogRow = Insertable<AuditEventsLogTable>
export type AuditLogUpdate = Updateable<AuditEventsLogTable>

export type ArchiveRow = Selectable<AuditArchivesTable>
