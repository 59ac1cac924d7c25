import {type Kysely, sql} from 'kysely'

/**
 * The old Python tool's table, exactly. IF NOT EXISTS everywhere: a database the old tool made is
 * adopted in place, its rows untouched.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE TABLE IF NOT EXISTS audit_events_log (
      id SERIAL PRIMARY KEY,
      process_date DATE NOT NULL UNIQUE,
      status VARCHAR(20) NOT NULL,
      events_count INTEGER DEFAULT 0,
      error_message TEXT,
      created_at TIMESTAMP WITHOUT TIME ZONE DEFAULT (now() AT TIME ZONE 'utc'),
      updated_at TIMESTAMP WITHOUT TIME ZONE DEFAULT (now() AT TIME ZONE 'utc')
    )
  `.execute(db)
  await sql`CREATE INDEX IF NOT EXISTS idx_audit_events_log_status ON audit_events_log (status)`.execute(db)
  await sql`
    CREATE INDEX IF NOT EXISTS idx_audit_events_log_process_date_status ON audit_events_log (process_date, status)
  `.execute(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`DROP TABLE IF EXISTS audit_events_log`.execute(db)
}
