import {type Kysely, sql} from 'kysely'

/**
 * The event store: every collected event, kept as the API's own JSON text (byte for byte, so a
 * day's digest can be recomputed and `\u0000` escapes survive, which jsonb would refuse), plus
 * the columns the searches need, extracted once. Partitioned by month of the collection day, so
 * retention drops whole partitions; partitions are created as needed (see event-store.ts).
 *
 * Unique by (id, day): PostgreSQL requires the partition key in a unique constraint. A day's
 * events are unique by id (the day job keeps the first of a repeated id), and the id comes first,
 * so `events show <id>` is one index probe per partition.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE TABLE IF NOT EXISTS audit_events (
      day date NOT NULL,
      id text NOT NULL,
      event_json text NOT NULL,
      created_at timestamptz NOT NULL,
      type text NOT NULL,
      action text NOT NULL,
      actor_email text,
      actor_id text,
      app_name text,
      app_id text,
      owner_email text,
      team_name text,
      ip_address text,
      account text,
      collected_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (id, day)
    ) PARTITION BY RANGE (day)`.execute(db)
  // Each search is newest first within a date range, alone or with one of these filters.
  await sql`CREATE INDEX IF NOT EXISTS audit_events_by_time ON audit_events (day, created_at, id)`.execute(db)
  await sql`CREATE INDEX IF NOT EXISTS audit_events_by_actor ON audit_events (actor_email, day, created_at, id)`.execute(db)
  await sql`CREATE INDEX IF NOT EXISTS audit_events_by_app ON audit_events (app_name, day, created_at, id)`.execute(db)
  await sql`CREATE INDEX IF NOT EXISTS audit_events_by_ip ON audit_events (ip_address, day, created_at, id)`.execute(db)
  await sql`CREATE INDEX IF NOT EXISTS audit_events_by_kind ON audit_events (type, action, day, created_at, id)`.execute(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`DROP TABLE IF EXISTS audit_events`.execute(db)
}
