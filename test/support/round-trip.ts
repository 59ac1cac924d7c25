import {expect} from 'chai'
import {type Kysely, sql} from 'kysely'

import {type ClaimResult, findDay} from '../../src/lib/db/audit-log-repository.js'
import type {Database} from '../../src/lib/db/schema.js'

/**
 * Claims each day and writes it known naive-UTC times, then reads them back: days must stay
 * 'YYYY-MM-DD' strings and times must come back as the same UTC instants, whatever the time zone
 * of the process and of the database session (both engines' time-zone tests use it).
 */
export async function expectDaysAndTimesRoundTrip(db: Kysely<Database>, days: readonly string[], claim: (day: string) => Promise<ClaimResult>): Promise<void> {
  for (const day of days) {
    const result = await claim(day)
    if (!result.claimed) expect.fail(`could not claim ${day}`)
    expect(result.row.process_date).to.equal(day)
    // created_at (naive UTC) and heartbeat_at (timestamptz) come from the same now().
    expect(result.row.created_at?.getTime(), day).to.equal(result.row.heartbeat_at?.getTime())

    await sql`
      UPDATE audit_events_log SET created_at = ${`${day} 00:00:00`}::timestamp, updated_at = ${`${day} 23:59:59.5`}::timestamp
      WHERE process_date = ${day}`.execute(db)
    const read = await findDay(db, day)
    expect(read?.process_date).to.equal(day)
    expect(read?.created_at?.toISOString()).to.equal(`${day}T00:00:00.000Z`)
    expect(read?.updated_at?.toISOString()).to.equal(`${day}T23:59:59.500Z`)
  }
}
