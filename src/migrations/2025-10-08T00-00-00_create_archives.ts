import {type Kysely, sql} from 'kysely'

/**
 * Completeness (settle re-reads and Heroku's monthly archives).
 *
 * audit_events_log gains, per day: where its events came from (`source`: null or 'api' for the
 * events API, 'archive' for a day filled by `archives import`); the settle re-read's outcome
 * (`settled_at`, `late_events` found then, `vanished_events` stored before but no longer served,
 * `settled_digest` over the day's ids after it); and `recovered_events`, those an archive verify
 * added. `events_count` stays the number of events the day holds, late and recovered included;
 * `events_digest` stays the first collection's.
 *
 * audit_archives: one row per month verified (or imported) against Heroku's archive, with the
 * archive's checksum at the time, so a month is verified again only when Heroku's file changes.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    ALTER TABLE audit_events_log
      ADD COLUMN IF NOT EXISTS source text,
      ADD COLUMN IF NOT EXISTS settled_at timestamptz,
      ADD COLUMN IF NOT EXISTS late_events integer,
      ADD COLUMN IF NOT EXISTS vanished_events integer,
      ADD COLUMN IF NOT EXISTS settled_digest text,
      ADD COLUMN IF NOT EXISTS recovered_events integer`.execute(db)
  await sql`
    CREATE TABLE IF NOT EXISTS audit_archives (
      month text PRIMARY KEY,
      status text NOT NULL,
      checksum text,
      archive_created_at timestamptz,
      size bigint,
      covered_to date,
      verified_at timestamptz NOT NULL DEFAULT now(),
      archive_events integer NOT NULL DEFAULT 0,
      days_compared integer NOT NULL DEFAULT 0,
      matched integer NOT NULL DEFAULT 0,
      recovered integer NOT NULL DEFAULT 0,
      only_in_store integer NOT NULL DEFAULT 0,
      not_collected integer NOT NULL DEFAULT 0,
      imported_days integer NOT NULL DEFAULT 0,
      imported_events integer NOT NULL DEFAULT 0,
      detail text
    )`.execute(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`DROP TABLE IF EXISTS audit_archives`.execute(db)
  await sql`
    ALTER TABLE audit_events_log
      DROP COLUMN IF EXISTS source,
      DROP COLUMN IF EXISTS settled_at,
      DROP COLUMN IF EXISTS late_events,
      DROP COLUMN IF EXISTS vanished_events,
      DROP COLUMN IF EXISTS settled_digest,
      DROP COLUMN IF EXISTS recovered_events`.execute(db)
}
