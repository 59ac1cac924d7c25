import {isCalendarDate} from '../dates.js'
import type {EventFilter} from '../db/event-queries.js'
import {MAX_COLUMN_CHARS} from '../db/event-store.js'
import {oneLine} from '../text.js'

/** What a search was asked for, as typed (CLI flags or a query string): the filter's fields, unchecked. */
export type RawEventFilter = EventFilter

/** A search value that cannot match anything as written: the CLI exits 2, the web answers 400. */
export class FilterError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'FilterError'
  }
}

const WORD = /^[a-z0-9][a-z0-9_.-]{0,63}$/i
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001F\u007F-\u009F]/

/**
 * Checks a search's values and returns the filter: real calendar days with from ≤ to; type and
 * action words as Heroku writes them; actor, app and ip without control characters and no longer
 * than the store keeps (longer could never match). Empty values count as not given.
 */
export function checkEventFilter(raw: RawEventFilter): EventFilter {
  const filter: EventFilter = {}
  for (const name of ['from', 'to'] as const) {
    const value = raw[name]?.trim()
    if (!value) continue
    if (!isCalendarDate(value)) throw new FilterError(`${name} "${oneLine(value, 40)}" is not a calendar day written YYYY-MM-DD between 0001-01-01 and 9999-12-31`)
    filter[name] = value
  }

  if (filter.from && filter.to && filter.from > filter.to) throw new FilterError(`from ${filter.from} is after to ${filter.to}`)
  for (const name of ['type', 'action'] as const) {
    const value = raw[name]?.trim()
    if (!value) continue
    if (!WORD.test(value)) throw new FilterError(`${name} "${oneLine(value, 40)}" is not an event ${name} (letters, digits, _ . -, at most 64)`)
    filter[name] = value
  }

  for (const name of ['actor', 'app', 'ip'] as const) {
    const value = raw[name]?.trim()
    if (!value) continue
    if (value.length > MAX_COLUMN_CHARS || CONTROL.test(value)) {
      throw new FilterError(`${name} "${oneLine(value, 40)}" cannot match any event (at most ${MAX_COLUMN_CHARS} characters, no control characters)`)
    }

    filter[name] = value
  }

  return filter
}

/**
 * Checks an event id asked for (`events show <id>`, `/events/:id`): one no longer than the store
 * keeps, without control characters, could be stored; anything else could never be found.
 */
export function checkEventId(id: string): string {
  // Not trimmed: an id is matched exactly as the API wrote it.
  if (id === '' || id.length > MAX_COLUMN_CHARS || CONTROL.test(id)) {
    throw new FilterError(`id "${oneLine(id, 40)}" cannot be an event's id (1 to ${MAX_COLUMN_CHARS} characters, no control characters)`)
  }

  return id
}
