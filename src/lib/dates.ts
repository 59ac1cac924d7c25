import {DateTime} from 'luxon'

import {UsageError} from './errors.js'

const ISO_DAY = /^\d{4}-\d{2}-\d{2}$/

/** The UTC calendar day before `now`, as YYYY-MM-DD. */
export function yesterdayUtc(now: Date = new Date()): string {
  return DateTime.fromJSDate(now, {zone: 'utc'}).minus({days: 1}).toISODate()!
}

/** Today's UTC calendar day, as YYYY-MM-DD. */
export function todayUtc(now: Date = new Date()): string {
  return DateTime.fromJSDate(now, {zone: 'utc'}).toISODate()!
}

/** Is `day` a real calendar date written YYYY-MM-DD? */
export function isCalendarDate(day: string): boolean {
  return ISO_DAY.test(day) && DateTime.fromISO(day, {zone: 'utc'}).isValid
}

/**
 * Validates a day the user asked for: a real calendar date, written YYYY-MM-DD.
 * Throws a UsageError that says what is wrong and what to type instead.
 */
export function parseDay(input: string, what = 'date'): string {
  const day = input.trim()
  if (!ISO_DAY.test(day)) {
    throw new UsageError(`${what} "${input}" is not in YYYY-MM-DD form`, 'write the day as e.g. 2025-09-28')
  }

  const [year, month, dayOfMonth] = day.split('-').map(Number)
  if (month < 1 || month > 12) {
    throw new UsageError(`${what} "${input}" is not a real calendar date: there is no month ${month}`, 'write the day as YYYY-MM-DD, e.g. 2025-09-28')
  }

  const daysInMonth = DateTime.utc(year, month).daysInMonth!
  if (dayOfMonth < 1 || dayOfMonth > daysInMonth) {
    const monthName = DateTime.utc(year, month).toFormat('MMMM yyyy')
    throw new UsageError(`${what} "${input}" is not a real calendar date: ${monthName} has ${daysInMonth} days`, 'check the day of the month')
  }

  return day
}

/**
 * Validates a day to process: a real calendar date strictly before today (UTC). Today and later
 * are refused, since a SUCCESS would hide the events still to come.
 */
export function parseProcessableDay(input: string, now: Date = new Date()): string {
  const day = parseDay(input)
  const today = todayUtc(now)
  if (day >= today) {
    throw new UsageError(
      `date ${day} is ${day === today ? 'today' : 'in the future'} (UTC): its events are not all in yet`,
      `process a day before ${today}, e.g. --date ${yesterdayUtc(now)}`,
    )
  }

  return day
}
