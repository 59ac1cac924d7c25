import {FIRST_DAY, LAST_DAY, isCalendarDate} from '../dates.js'
import type {LogFilter} from '../db/log-queries.js'
import {STATUSES} from '../db/schema.js'
import {HttpError} from './http-error.js'

const DATE_PATTERN = '^\\d{4}-\\d{2}-\\d{2}$'

export const dateSchema = {type: 'string', pattern: DATE_PATTERN} as const

/** The log view's query string: filters plus paging. Unknown keys are dropped, bad values are 400. */
export const logQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    status: {type: 'string', enum: ['all', ...STATUSES]},
    from: {anyOf: [dateSchema, {type: 'string', maxLength: 0}]},
    to: {anyOf: [dateSchema, {type: 'string', maxLength: 0}]},
    page: {type: 'integer', minimum: 1, maximum: 1_000_000, default: 1},
    size: {type: 'integer', minimum: 1, maximum: 500, default: 50},
    deleted: {type: 'integer', minimum: 0},
    kept: {type: 'integer', minimum: 0},
    missing: {type: 'integer', minimum: 0},
  },
} as const

export interface LogQuery {
  status?: string
  from?: string
  to?: string
  page: number
  size: number
  deleted?: number
  kept?: number
  missing?: number
}

/** A JSON schema can check the shape of a date, not that February has no 30th, nor that there is no year 0. */
export function assertCalendarDate(day: string, what: string): void {
  if (!isCalendarDate(day)) throw new HttpError(400, `Bad request: ${what} ${day} is not a real calendar date from ${FIRST_DAY} to ${LAST_DAY}.`)
}

export function filterFromQuery(query: LogQuery): LogFilter {
  const filter: LogFilter = {}
  if (query.status && query.status !== 'all') filter.status = query.status as LogFilter['status']
  if (query.from) {
    assertCalendarDate(query.from, 'from')
    filter.from = query.from
  }

  if (query.to) {
    assertCalendarDate(query.to, 'to')
    filter.to = query.to
  }

  if (filter.from && filter.to && filter.from > filter.to) {
    throw new HttpError(400, `Bad request: from ${filter.from} is after to ${filter.to}.`)
  }

  return filter
}
