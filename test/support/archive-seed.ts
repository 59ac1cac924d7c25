/** Completeness rows seeded with SQL, as the settle re-read and archives verify/import leave them. */
import {type Kysely, sql} from 'kysely'

import type {Database} from '../../src/lib/db/schema.js'

export const CHECKSUM = 'c0ffee'.repeat(10) + 'abcd'

export interface MonthSeed {
  month: string
  status: string
  verifiedAt?: string
  detail?: string | null
  counts?: Partial<Record<'archive_events' | 'days_compared' | 'matched' | 'recovered' | 'only_in_store' | 'not_collected' | 'imported_days' | 'imported_events', number>>
}

/** A month's row as archives verify (or import) writes it. */
export async function seedMonth(db: Kysely<Database>, seed: MonthSeed): Promise<void> {
  const c = {archive_events: 0, days_compared: 0, matched: 0, recovered: 0, only_in_store: 0, not_collected: 0, imported_days: 0, imported_events: 0, ...seed.counts}
  await sql`
    INSERT INTO audit_archives (month, status, checksum, archive_created_at, size, covered_to, verified_at, archive_events, days_compared,
      matched, recovered, only_in_store, not_collected, imported_days, imported_events, detail)
    VALUES (${seed.month}, ${seed.status}, ${CHECKSUM}, ${`${seed.month}-28T06:00:00Z`}::timestamptz, ${123_456_789_012}, ${`${seed.month}-28`}::date,
      ${seed.verifiedAt ?? '2025-10-01T03:00:00Z'}::timestamptz, ${c.archive_events}, ${c.days_compared}, ${c.matched}, ${c.recovered},
      ${c.only_in_store}, ${c.not_collected}, ${c.imported_days}, ${c.imported_events}, ${seed.detail ?? null})
  `.execute(db)
}

/** The completeness columns of a day's record, as settle, verify and import set them. */
export async function markDay(
  db: Kysely<Database>,
  day: string,
  marks: {settledAt?: string; late?: number; vanished?: number; recovered?: number; source?: string; settledDigest?: string},
): Promise<void> {
  await sql`
    UPDATE audit_events_log SET settled_at = ${marks.settledAt ?? null}::timestamptz, late_events = ${marks.late ?? null},
      vanished_events = ${marks.vanished ?? null}, recovered_events = ${marks.recovered ?? null}, source = ${marks.source ?? null},
      settled_digest = ${marks.settledDigest ?? null}
    WHERE process_date = ${day}
  `.execute(db)
}

