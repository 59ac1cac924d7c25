import {DateTime} from 'luxon'

import {UsageError} from './errors.js'

const ISO_DAY = /^\d{4}-\d{2}-\d{2}$/

/*
 * Day arithmetic is plain millisecond arithmetic on UTC midnights: every UTC day is exactly
 * 86,400,000 ms (no DST, and JavaScript time has no leap seconds), and it is far cheaper than a
 * luxon DateTime on the status page's hot path. Luxon stays for what needs a calendar's names.
 */
const DAY_MS = 86_400_000
const dayToMs = (day: string) => Date.parse(`${day}T00:00:00Z`)
const msToDay = (ms: number) => new Date(ms).toISOString().slice(0, 10)

/**
 * The days the tool handles: PostgreSQL's calendar has no year 0 (1 BC is followed by AD 1), and
 * a YYYY-MM-DD day has a four-digit year. Anything outside is refused where it comes in.
 */
export const FIRST_DAY = '0001-01-01'
export const LAST_DAY = '9999-12-31'
const FIRST_DAY_MS = dayToMs(FIRST_DAY)
const LAST_DAY_MS = dayToMs(LAST_DAY)

/** Today's UTC calendar day, as YYYY-MM-DD. */
export function todayUtc(now: Date = new Date()): string {
  return now.toISOString().slice(0, 10)
}

/** The UTC calendar day before `now`, as YYYY-MM-DD. */
export function yesterdayUtc(now: Date = new Date()): string {
  return addDays(todayUtc(now), -1)
}

/** Days from `from` to `to` (negative when `to` is earlier). */
export function dayDiff(from: string, to: string): number {
  return Math.round((dayToMs(to) - dayToMs(from)) / DAY_MS)
}

/** 1 = Monday … 7 = Sunday (ISO), the calendar grid's rows. */
export function isoWeekday(day: string): number {
  return new Date(dayToMs(day)).getUTCDay() || 7
}

/** Is `day` a real calendar date written YYYY-MM-DD? */
export function isCalendarDate(day: string): boolean {
  // YYYY-MM-DD strings compare in date order; four digits cannot pass LAST_DAY.
  return ISO_DAY.test(day) && day >= FIRST_DAY && DateTime.fromISO(day, {zone: 'utc'}).isValid
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
  if (year < 1) {
    throw new UsageError(`${what} "${input}" is not a real calendar date: there is no year 0`, `write a day from ${FIRST_DAY} to ${LAST_DAY}, e.g. 2025-09-28`)
  }

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
 * are refused, since a SUCCESS would hide the events still to come. `what` names the input in
 * messages (`date`, `--from`…) and `flag` the option the hint suggests.
 */
export function parseProcessableDay(input: string, now: Date = new Date(), what = 'date', flag = '--date'): string {
  const day = parseDay(input, what)
  const today = todayUtc(now)
  if (day >= today) {
    throw new UsageError(
      `${what} ${day} is ${day === today ? 'today' : 'in the future'} (UTC): its events are not all in yet`,
      `process a day before ${today}, e.g. ${flag} ${yesterdayUtc(now)}`,
    )
  }

  return day
}

/**
 * The day `n` days after `day` (before, when negative), as YYYY-MM-DD. Throws a RangeError for a
 * day before FIRST_DAY or after LAST_DAY, which would not be YYYY-MM-DD (nor a PostgreSQL date).
 */
export function addDays(day: string, n: number): string {
  const ms = dayToMs(day) + n * DAY_MS
  if (!(ms >= FIRST_DAY_MS && ms <= LAST_DAY_MS)) throw new RangeError(`addDays(${JSON.stringify(day)}, ${n}) leaves ${FIRST_DAY}..${LAST_DAY}`)
  return msToDay(ms)
}

/** Like addDays, but stops at FIRST_DAY or LAST_DAY: for windows that reach back from a day the user gave. */
export function addDaysClamped(day: string, n: number): string {
  const ms = Math.min(Math.max(dayToMs(day) + n * DAY_MS, FIRST_DAY_MS), LAST_DAY_MS)
  return msToDay(ms)
}

/** Every day from `from` to `to`, both included, oldest first; empty when from > to. */
export function daysBetween(from: string, to: string): string[] {
  // Counted rather than stepped until past `to`: there is no day after LAST_DAY to step to.
  return Array.from({length: Math.max(0, dayDiff(from, to) + 1)}, (_, i) => addDays(from, i))
}

/** The longest range one run accepts: a year, leap day included. */
export const MAX_RANGE_DAYS = 366

/**
 * Validates `--from`/`--to`: both processable days (see parseProcessableDay), from ≤ to, and at
 * most MAX_RANGE_DAYS days long, so a typo in a year cannot queue a decade of requests.
 */
export function parseProcessableRange(fromInput: string, toInput: string, now: Date = new Date()): {from: string; to: string} {
  const from = parseProcessableDay(fromInput, now, '--from', '--from')
  const to = parseProcessableDay(toInput, now, '--to', '--to')
  if (from > to) throw new UsageError(`--from ${from} is after --to ${to}`, `swap them: --from ${to} --to ${from}`)
  const length = dayDiff(from, to) + 1
  if (length > MAX_RANGE_DAYS) {
    throw new UsageError(
      `the range ${from}..${to} has ${length} days, more than the ${MAX_RANGE_DAYS} one run takes`,
      `split it into runs of at most ${MAX_RANGE_DAYS} days, e.g. --from ${from} --to ${addDays(from, MAX_RANGE_DAYS - 1)}`,
    )
  }

  return {from, to}
}

/**
 * Validates a month the user asked for, YYYY-MM, that has begun (UTC): Heroku archives months
 * from 2017 on, and a month to come has no archive.
 */
export function parseMonth(input: string, now: Date = new Date(), flag = '--month'): string {
  const month = input.trim()
  const match = /^(\d{4})-(\d{2})$/.exec(month)
  if (!match) throw new UsageError(`${flag} "${input}" is not in YYYY-MM form`, 'write the month as e.g. 2025-09')
  const number = Number(match[2])
  if (number < 1 || number > 12) throw new UsageError(`${flag} "${input}" is not a month: there is no month ${number}`, 'write the month as YYYY-MM, from 01 to 12, e.g. 2025-09')
  const current = todayUtc(now).slice(0, 7)
  if (month > current) throw new UsageError(`${flag} ${month} has not begun yet (UTC): it has no archive`, `ask for ${current} or an earlier month`)
  return month
}
