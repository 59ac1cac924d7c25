import {type Kysely, sql} from 'kysely'

/**
 * Delivery to sinks (SINK_URL): a row per sink, and the durable outbox of what each sink still
 * needs, a row per (sink, stored day) with the position reached inside that day. Positions live
 * here, not in the sink, so a sink that is down or slow loses nothing and a restart resumes.
 *
 * A day's row is written in the same transaction as the day's events (see queueDayForSinks), so a
 * day is never stored without being queued; a forced rerun re-queues the day from its start, and
 * `generation` tells a delivery in progress that its position no longer counts.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE TABLE IF NOT EXISTS audit_sinks (
      name text PRIMARY KEY,
      format text NOT NULL,
      target text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      delivered_events bigint NOT NULL DEFAULT 0,
      last_success_at timestamptz,
      last_attempt_at timestamptz,
      last_error text,
      stopped_at timestamptz,
      stop_reason text,
      lease_token text,
      leased_until timestamptz
    )`.execute(db)
  await sql`
    CREATE TABLE IF NOT EXISTS audit_sink_days (
      sink text NOT NULL REFERENCES audit_sinks (name) ON DELETE CASCADE,
      day date NOT NULL,
      generation integer NOT NULL DEFAULT 1,
      after_created_at timestamptz,
      after_id text,
      delivered integer NOT NULL DEFAULT 0,
      queued_at timestamptz NOT NULL DEFAULT now(),
      done_at timestamptz,
      PRIMARY KEY (sink, day)
    )`.execute(db)
  // What each sink still has to deliver, oldest day first.
  await sql`CREATE INDEX IF NOT EXISTS audit_sink_days_pending ON audit_sink_days (sink, day) WHERE done_at IS NULL`.execute(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`DROP TABLE IF EXISTS audit_sink_days`.execute(db)
  await sql`DROP TABLE IF EXISTS audit_sinks`.execute(db)
}
