import {isUtf8} from 'node:buffer'

import {isCalendarDate} from '../dates.js'
import type {EventCursor} from '../db/event-queries.js'
import {MAX_COLUMN_CHARS} from '../db/event-store.js'

/*
 * The events views' paging cursor: a position in the store's order (day, created_at, id), handed
 * out opaque (base64url of a small JSON array) so clients pass it back rather than build it.
 */

/** Far above any cursor we issue (an id is at most 256 characters), far below a URL's limit. */
const MAX_CURSOR_CHARS = 4096
const ISO_MILLIS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/

export function encodeCursor(cursor: EventCursor): string {
  return Buffer.from(JSON.stringify([cursor.day, cursor.createdAt.toISOString(), cursor.id])).toString('base64url')
}

/**
 * The position a cursor names, or undefined when it is not exactly one encodeCursor could have
 * made: canonical base64url of UTF-8 JSON, a real day, a millisecond UTC time, an id the store can hold.
 */
export function decodeCursor(text: string): EventCursor | undefined {
  if (text.length > MAX_CURSOR_CHARS || !/^[\w-]+$/.test(text)) return undefined
  const bytes = Buffer.from(text, 'base64url')
  if (bytes.toString('base64url') !== text || !isUtf8(bytes)) return undefined
  let value: unknown
  try {
    value = JSON.parse(bytes.toString('utf8'))
  } catch {
    return undefined
  }

  if (!Array.isArray(value) || value.length !== 3) return undefined
  const [day, createdAt, id] = value as unknown[]
  if (typeof day !== 'string' || !isCalendarDate(day)) return undefined
  if (typeof createdAt !== 'string' || !ISO_MILLIS.test(createdAt)) return undefined
  const time = new Date(createdAt)
  if (Number.isNaN(time.getTime()) || time.toISOString() !== createdAt) return undefined
  if (typeof id !== 'string' || id === '' || id.length > MAX_COLUMN_CHARS || id.includes('\u0000')) return undefined
  return {day, createdAt: time, id}
}
