import {type Kysely, sql} from 'kysely'

import {findDay} from '../db/audit-log-repository.js'
import type {Database, ProcessStatus} from '../db/schema.js'
import {isCalendarDate, yesterdayUtc} from '../dates.js'

/**
 * Days of the inclusive range that have no record at all (never claimed by any run), oldest
 * first. One query: the range's days come from generate_series, so a year costs what a day does.
 * An empty list when from > to. Throws a RangeError for a bound that is not a YYYY-MM-DD date.
 */
export async function findMissingDays(db: Kysely<Database>, range: {from: string; to: string}): Promise<string[]> {
  for (const bound of [range.from, range.to]) {
    if (!isCalendarDate(bound)) throw new RangeError(`findMissingDays: not a YYYY-MM-DD date: ${JSON.stringify(bound)}`)
  }

  // date + integer is plain calendar arithmetic: no time zone, no DST, whatever the session's.
  const result = await sql<{day: string}>`
    SELECT to_char(${range.from}::date + offs, 'YYYY-MM-DD') AS day
    FROM generate_series(0, ${range.to}::date - ${range.from}::date) AS offs
    WHERE NOT EXISTS (
      SELECT 1 FROM audit_events_log WHERE process_date = ${range.from}::date + offs
    )
    ORDER BY offs
  `.execute(db)
  return result.rows.map((r) => r.day)
}

/** Yesterday (UTC, as of `now`) and its record's status, or MISSING when it has none. */
export async function yesterdayState(
  db: Kysely<Database>,
  now: Date = new Date(),
): Promise<{day: string; status: ProcessStatus | 'MISSING'}> {
  const day = yesterdayUtc(now)
  const row = await findDay(db, day)
  return {day, status: row?.status ?? 'MISSING'}
}
