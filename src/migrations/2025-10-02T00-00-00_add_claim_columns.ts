import {type Kysely, sql} from 'kysely'

/**
 * What the claim → heartbeat → fence protocol needs. Rows adopted from the old tool count as one
 * attempt each and have no claim, heartbeat or run times.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    ALTER TABLE audit_events_log
      ADD COLUMN IF NOT EXISTS attempts INTEGER NOT NULL DEFAULT 1,
      ADD COLUMN IF NOT EXISTS claim_token UUID,
      ADD COLUMN IF NOT EXISTS heartbeat_at TIMESTAMP WITH TIME ZONE,
      ADD COLUMN IF NOT EXISTS started_at TIMESTAMP WITH TIME ZONE,
      ADD COLUMN IF NOT EXISTS finished_at TIMESTAMP WITH TIME ZONE
  `.execute(db)
  // The old tool set these defaults in Python, not in the table.
  await sql`
    ALTER TABLE audit_events_log
      ALTER COLUMN events_count SET DEFAULT 0,
      ALTER COLUMN created_at SET DEFAULT (now() AT TIME ZONE 'utc'),
      ALTER COLUMN updated_at SET DEFAULT (now() AT TIME ZONE 'utc')
  `.execute(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`
    ALTER TABLE audit_events_log
      DROP COLUMN IF EXISTS attempts,
      DROP COLUMN IF EXISTS claim_token,
      DROP COLUMN IF EXISTS heartbeat_at,
      DROP COLUMN IF EXISTS started_at,
      DROP COLUMN IF EXISTS finished_at
  `.execute(db)
}
