import {type Kysely, sql} from 'kysely'

/**
 * Every change to audit_events_log, whoever makes it (a run, the status page, psql, the old tool),
 * sends a NOTIFY on `audit_events_log_changed`, once per statement. The status page listens and
 * serves its reads from memory until the table changes (src/lib/db/change-feed.ts).
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE OR REPLACE FUNCTION audit_events_log_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      PERFORM pg_notify('audit_events_log_changed', '');
      RETURN NULL;
    END
    $$`.execute(db)
  await sql`DROP TRIGGER IF EXISTS audit_events_log_changed ON audit_events_log`.execute(db)
  await sql`
    CREATE TRIGGER audit_events_log_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON audit_events_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_log_notify_change()`.execute(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`DROP TRIGGER IF EXISTS audit_events_log_changed ON audit_events_log`.execute(db)
  await sql`DROP FUNCTION IF EXISTS audit_events_log_notify_change()`.execute(db)
}
