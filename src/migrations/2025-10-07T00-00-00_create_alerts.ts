import {type Kysely, sql} from 'kysely'

/**
 * Alerts for the webhook (ALERT_WEBHOOK_URL), kept until sent: an alert that cannot be sent now
 * (webhook down, 5xx, 429, timeout) waits here for the next run. `key` makes raising one
 * idempotent (day-failed:2026-11-30:3 is recorded once however many times it is raised); the
 * partial index finds what still waits, oldest first. `leased_until` lets one flush at a time
 * send a given alert when several runs share the database.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE TABLE IF NOT EXISTS audit_alerts (
      id serial PRIMARY KEY,
      key text NOT NULL UNIQUE,
      text text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      sent_at timestamptz,
      attempts integer NOT NULL DEFAULT 0,
      last_error text,
      leased_until timestamptz
    )`.execute(db)
  await sql`CREATE INDEX IF NOT EXISTS audit_alerts_pending ON audit_alerts (created_at, id) WHERE sent_at IS NULL`.execute(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`DROP TABLE IF EXISTS audit_alerts`.execute(db)
}
