import {type Kysely, sql} from 'kysely'

/**
 * A digest of each SUCCESS day's events (SHA-256 hex over the sorted event ids), so a day can be
 * checked against a later fetch or an exported file. Nullable: old rows and failed days have none.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE audit_events_log ADD COLUMN IF NOT EXISTS events_digest TEXT`.execute(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE audit_events_log DROP COLUMN IF EXISTS events_digest`.execute(db)
}
