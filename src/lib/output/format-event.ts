import {isUtf8} from 'node:buffer'

import type {AuditEvent} from '../heroku/types.js'
import {escapeControls, oneLine} from '../text.js'
import {jsonArrayElements} from './json-elements.js'

export const OUTPUT_FORMATS = ['text', 'json'] as const
export type OutputFormat = (typeof OUTPUT_FORMATS)[number]

// A backslash makes a value quoted too, so that in a line `\x1B` is always an escape, never text.
const PLAIN = /^[^\s"=\\]+$/

/**
 * A value for a key=value line: bare when it is one plain word, JSON-quoted otherwise. Event
 * fields come from outside, so no control character reaches the terminal: a value holding one
 * is quoted, and what JSON leaves raw (DEL, C1 controls, U+2028, bidi overrides) is escaped
 * visibly too.
 */
function textValue(value: unknown): string {
  const text = asText(value)
  return PLAIN.test(text) && escapeControls(text) === text ? text : escapeControls(JSON.stringify(text))
}

/**
 * A field's value as text. A hostile API may send an array or an object where a string belongs;
 * it is shown as JSON (String() would join an array, and throws for an object whose "toString" is
 * not a function).
 */
function asText(value: unknown): string {
  if (value === undefined || value === null) return ''
  if (typeof value === 'string') return value
  if (typeof value !== 'object') return String(value)
  return stringified(value) ?? '[nested too deep]'
}

/** The text line of one event, without its newline; `cut` shortens each value (see cutTextLine). */
function textLine(event: AuditEvent, cut: (value: unknown) => unknown = (value) => value): string {
  const app = event.app?.name ? ` app.name=${textValue(cut(event.app.name))}` : ''
  return `created_at=${textValue(cut(event.created_at))} actor.email=${textValue(cut(event.actor?.email))} type=${textValue(cut(event.type))} action=${textValue(cut(event.action))}${app} id=${textValue(cut(event.id))}`
}

/**
 * One event as one line (with its newline). Text is in the old tool's spirit, grep- and
 * logfmt-friendly; json is the API's own fields, one object per line, for a drain or a SIEM.
 */
export function formatEvent(event: AuditEvent, format: OutputFormat): string {
  return `${format === 'json' ? JSON.stringify(event) : textLine(event)}\n`
}

/**
 * The longest line `process` writes on stdout, its newline included. On Heroku stdout goes to
 * Logplex, which splits a longer line into 10,000-byte pieces (log-shuttle's DefaultMaxLineLength):
 * a big event would arrive as broken JSON. The newline is counted too, to be safe.
 */
export const MAX_LOG_LINE_BYTES = 10_000

/** Below this a cut line could not be promised to fit (see cutEventLine's last rung). */
export const MIN_LINE_LIMIT = 8192

/** Where an event that was cut on stdout can be read whole, for the line's note. */
export type WholeEventAt =
  /** The event store: `audit-logger events show <id>`. */
  | {kind: 'store'}
  /** The day's --output-dir file. */
  | {kind: 'file'; path: string}
  /** Kept nowhere whole: `why` says why (e.g. "EVENT_STORE=off and no --output-dir"). */
  | {kind: 'nowhere'; why: string}

/** How long a line may be, and where the whole of a cut event is. */
export interface LineLimit {
  /** The longest line, its newline included: MAX_LOG_LINE_BYTES on stdout. */
  maxBytes: number
  whole: WholeEventAt
}

/** The fields a cut line keeps whole whenever they fit (the rest of the event is `data` and friends). */
export const KEPT_FIELDS: readonly string[] = ['id', 'type', 'action', 'actor', 'app', 'created_at']

/** What ends a string cut on the last rungs of the ladder (see cutEventLine). */
export const CUT_MARKER = '…[cut]'

// An id that can be pasted into a shell as it is; any other is not repeated in the note.
const PASTABLE_ID = /^[\w.:@+-]{1,100}$/

/** Where the whole event is, as the note says it: a command to run, a file, or why it is nowhere. */
export function wholeEventNote(whole: WholeEventAt, id: unknown): string {
  if (whole.kind === 'store') {
    return `audit-logger events show ${typeof id === 'string' && PASTABLE_ID.test(id) ? id : "<this event's id>"}`
  }

  if (whole.kind === 'file') return `in ${oneLine(whole.path, 300)}`
  return `not kept: ${oneLine(whole.why, 300)}`
}

/** `text` cut to `max` UTF-16 units (never inside a surrogate pair), marked when it was cut. */
function cutString(text: string, max: number): string {
  if (text.length <= max) return text
  let end = max
  const last = text.charCodeAt(end - 1)
  if (last >= 0xd8_00 && last <= 0xdb_ff) end--
  return `${text.slice(0, end)}${CUT_MARKER}`
}

/** Every string in `value` (object keys included) cut to `max` units; objects and arrays kept whole otherwise. */
function cutStrings(value: unknown, max: number): unknown {
  if (typeof value === 'string') return cutString(value, max)
  if (Array.isArray(value)) return value.map((item) => cutStrings(item, max))
  if (value !== null && typeof value === 'object') {
    // fromEntries makes own properties, so a key "__proto__" stays a key, as JSON.parse made it.
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [cutString(key, max), cutStrings(item, max)]))
  }

  return value
}

/** A value reduced to a scalar: strings cut to `max`, objects and arrays replaced by the marker. */
function scalar(value: unknown, max: number): unknown {
  if (typeof value === 'string') return cutString(value, max)
  return value !== null && typeof value === 'object' ? CUT_MARKER : value
}

/** An actor or app reduced to its two known fields, each a cut scalar. */
function reducedParty(value: unknown, fields: readonly [string, string], max: number): unknown {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return scalar(value, max)
  const entries: Array<[string, unknown]> = []
  for (const field of fields) if (Object.hasOwn(value, field)) entries.push([field, scalar((value as Record<string, unknown>)[field], max)])
  return Object.fromEntries(entries)
}

const byteLength = (text: string) => Buffer.byteLength(text, 'utf8')
const member = (key: string, value: unknown) => `${JSON.stringify(key)}:${JSON.stringify(value)}`

/**
 * One event's line (without its newline) in at most `limit.maxBytes - 1` bytes, for any event.
 * The whole event when it fits; otherwise a deterministic ladder, each rung tried only when the
 * one before does not fit:
 *
 * json:
 *  1. `data` replaced by a note, `{"cut": "…", "whole": "…"}`: what was left out, and where the
 *     whole event is (`audit-logger events show <id>`, the --output-dir file, or why nowhere).
 *     A note `data` is added when the event had none.
 *  2. The other top-level fields (all but id, type, action, actor, app, created_at) left out too,
 *     the biggest first, until the line fits; the note names how many (and the first few).
 *  3. Only in the pathological case that the kept fields alone are too big (a 50 KB actor.email
 *     or app.name, a huge id): every string in them cut (to 1000, then 200 characters), each
 *     ending in `…[cut]`.
 *  4. Last: id, type, action, created_at, actor {id, email} and app {id, name} only, as scalars
 *     cut to 50 characters. This always fits: at most 8 strings of 50 units × 6 bytes.
 *
 * text: the line's values (created_at, actor.email, type, action, app.name, id) cut to 2000, 500,
 * then 100 characters, and a `cut="…"` field saying where the whole event is.
 */
export function cutEventLine(event: AuditEvent, format: OutputFormat, limit: LineLimit): {line: string; cut: boolean} {
  const max = limit.maxBytes - 1
  const whole = format === 'json' ? stringified(event) : textLine(event)
  // A UTF-16 unit is at most 3 bytes: short lines need no counting.
  if (whole !== undefined && (whole.length * 3 <= max || byteLength(whole) <= max)) return {line: whole, cut: false}
  const where = wholeEventNote(limit.whole, (event as {id?: unknown} | null)?.id)
  if (format === 'text') return {line: cutTextLine(event, max, where), cut: true}
  try {
    return {line: cutJsonLine(event, max, where), cut: true}
  } catch {
    // Nested deeper than JSON.stringify goes (JSON.parse goes deeper): the last rung, which nests nothing.
    return {line: lastRung(event, where, max), cut: true}
  }
}

/** JSON.stringify, or undefined for a value nested too deep for it. */
function stringified(value: unknown): string | undefined {
  try {
    return JSON.stringify(value)
  } catch {
    return undefined
  }
}

function cutTextLine(event: AuditEvent, max: number, where: string): string {
  const note = ` cut=${textValue(`long values shortened to keep the line under ${max + 1} bytes (Logplex); whole: ${oneLine(where, 300)}`)}`
  // Any value is made text first (an array or object from a hostile API would otherwise pass
  // uncut); on the last rung six values of 20 characters, escaped at worst 6 bytes each, and the
  // bounded note always fit.
  let line = ''
  for (const size of [2000, 500, 100, 20]) {
    line = textLine(event, (value) => cutString(asText(value), size)) + note
    if (byteLength(line) <= max) return line
  }

  return line
}

function cutJsonLine(event: AuditEvent, max: number, where: string): string {
  const fields: Array<[string, unknown]> = event !== null && typeof event === 'object' && !Array.isArray(event) ? Object.entries(event) : [['id', event]]
  const dataText = stringified(fields.find(([key]) => key === 'data')?.[1] ?? null)
  const dataBytes = dataText === undefined ? 'nested too deep to count' : `${byteLength(dataText)} bytes`
  const note = (others: string[], stringsCut: boolean) => {
    const named = others.slice(0, 5).map((key) => oneLine(key, 40))
    const more = others.length > 5 ? `, +${others.length - 5} more` : ''
    const also = others.length > 0 ? ` and ${others.length} other field(s) (${named.join(', ')}${more})` : ''
    const strings = stringsCut ? `; long strings cut, ending in ${CUT_MARKER}` : ''
    return {cut: `data (${dataBytes})${also} left out to keep the line under ${max + 1} bytes (Logplex)${strings}`, whole: where}
  }

  // The line is built member by member, so each member's share of it is known exactly.
  const line = (members: string[]) => `{${members.join(',')}}`
  const size = (members: string[]) => 2 + members.reduce((sum, m) => sum + byteLength(m), 0) + Math.max(0, members.length - 1)
  const withData = (members: Array<[string, string]>, data: unknown): string[] => {
    const out = members.map(([key, text]) => (key === 'data' ? member('data', data) : text))
    if (!members.some(([key]) => key === 'data')) out.push(member('data', data))
    return out
  }

  // 1. data replaced by the note.
  // A member nested too deep for JSON.stringify: an other field is left out first; a kept one goes to the last rung.
  const members = fields.map(([key, value]): [string, string] => [key, key === 'data' ? '' : (stringified(value) === undefined ? '' : member(key, value))])
  const tooDeep = new Set(fields.flatMap(([key], index) => (key !== 'data' && members[index][1] === '' ? [index] : [])))
  if (fields.some(([key], index) => tooDeep.has(index) && KEPT_FIELDS.includes(key))) return lastRung(event, where, max)
  let attempt = withData(members, note([], false))
  if (tooDeep.size === 0 && size(attempt) <= max) return line(attempt)

  // 2. The other fields left out, biggest first (ties in their order), until the line fits.
  const others = members
    .map(([key, text], index) => ({key, index, bytes: byteLength(text)}))
    .filter(({key}) => key !== 'data' && !KEPT_FIELDS.includes(key))
    .sort((a, b) => b.bytes - a.bytes || a.index - b.index)
  const dropped = new Set<number>(tooDeep)
  let total = size(attempt)
  for (const other of others) {
    if (total <= max) break
    dropped.add(other.index)
    total -= other.bytes + 1
  }

  const kept = () => members.filter((_, index) => !dropped.has(index))
  const droppedKeys = () => others.filter(({index}) => dropped.has(index)).map(({key}) => key)
  attempt = withData(kept(), note(droppedKeys(), false))
  // The note grew with the names: leave out one more at a time while it does not fit.
  for (const other of others) {
    if (size(attempt) <= max) return line(attempt)
    if (dropped.has(other.index)) continue
    dropped.add(other.index)
    attempt = withData(kept(), note(droppedKeys(), false))
  }

  if (size(attempt) <= max) return line(attempt)
  // 3. The kept fields are too big themselves (the pathological case): their strings cut.
  const keptFields = fields.filter(([key]) => KEPT_FIELDS.includes(key))
  const allOthers = fields.filter(([key]) => key !== 'data' && !KEPT_FIELDS.includes(key)).map(([key]) => key)
  for (const length of [1000, 200]) {
    attempt = withData(keptFields.map(([key, value]) => [key, member(key, cutStrings(value, length))]), note(allOthers, true))
    if (size(attempt) <= max) return line(attempt)
  }

  return lastRung(event, where, max)
}

/**
 * 4. The kept fields as scalars, actor and app reduced to their known fields, each cut to 50
 * units: at most 8 strings of 50 units × 6 bytes, and the note; always under MIN_LINE_LIMIT.
 */
function lastRung(event: AuditEvent, where: string, max: number): string {
  const fields: Array<[string, unknown]> = event !== null && typeof event === 'object' && !Array.isArray(event) ? Object.entries(event) : [['id', event]]
  const members: string[] = []
  for (const [key, value] of fields) {
    if (!KEPT_FIELDS.includes(key)) continue
    const small = key === 'actor' ? reducedParty(value, ['id', 'email'], 50) : key === 'app' ? reducedParty(value, ['id', 'name'], 50) : scalar(value, 50)
    members.push(member(key, small))
  }

  const others = fields.filter(([key]) => !KEPT_FIELDS.includes(key)).length
  const cut = `the event's fields cut to 50 characters (ending in ${CUT_MARKER}), and ${others} other field(s) left out, to keep the line under ${max + 1} bytes (Logplex)`
  members.push(member('data', {cut, whole: where}))
  return `{${members.join(',')}}`
}

/**
 * Encodes pages of events as UTF-8 lines straight into one reused byte buffer: no joined string
 * per page, no second encoding pass when the bytes are written. The buffer returned by `encode`
 * is only valid until the next call; a caller that keeps the bytes must copy them.
 *
 * JSON lines are cut from the page's own bytes when the client passes them: each event exactly as
 * the API sent it. An event whose JSON spans several lines (pretty-printed) is serialized again,
 * and so is a page whose bytes are not valid UTF-8 or do not match the parsed events one to one.
 * With `keep`, only the events whose entry is true are written (the day's duplicates are not).
 *
 * With a `limit` (stdout), no line is longer than `limit.maxBytes`, its newline included: an event
 * that would be longer is written as cutEventLine makes it. Only such an event takes that slow
 * path: every other line is copied (or serialized) as before, after one length comparison.
 */
export class LineEncoder {
  private buffer: Buffer
  private offset = 0
  /** How many events of the last `encode` were cut to fit the limit. */
  cut = 0

  constructor(
    readonly format: OutputFormat,
    initialBytes = 1 << 20,
    readonly limit?: LineLimit,
  ) {
    if (limit && limit.maxBytes < MIN_LINE_LIMIT) throw new RangeError(`a line limit must be at least ${MIN_LINE_LIMIT} bytes (got ${limit.maxBytes})`)
    this.buffer = Buffer.allocUnsafe(initialBytes)
  }

  encode(events: readonly AuditEvent[], body?: Uint8Array, keep?: readonly boolean[]): Buffer {
    this.offset = 0
    this.cut = 0
    if (this.format !== 'json' || !body || !this.copyElements(events, body, keep)) {
      this.offset = 0
      this.cut = 0
      const json = this.format === 'json'
      for (let k = 0; k < events.length; k++) {
        if (!keep || keep[k]) this.writeLine(json ? JSON.stringify(events[k]) : textLine(events[k]), events[k])
      }
    }

    return this.buffer.subarray(0, this.offset)
  }

  /** The API's bytes of each event, one per line; false (nothing usable written) when they do not fit. */
  private copyElements(events: readonly AuditEvent[], body: Uint8Array, keep?: readonly boolean[]): boolean {
    if (!isUtf8(body)) return false
    const spans = jsonArrayElements(body)
    if (!spans || spans.length !== events.length * 2) return false
    const multiline = body.includes(0x0a) || body.includes(0x0d)
    // Past this many bytes (its newline included) an element is too long for a line.
    const longest = this.limit ? this.limit.maxBytes - 1 : Number.POSITIVE_INFINITY
    this.reserve(body.length + events.length)
    for (let k = 0; k < events.length; k++) {
      const start = spans[2 * k]
      const end = spans[2 * k + 1]
      if (body[start] !== 0x7b || body[end - 1] !== 0x7d) return false
      if (keep && !keep[k]) continue
      const element = body.subarray(start, end)
      if (element.length > longest) {
        this.writeCut(events[k])
      } else if (multiline && (element.includes(0x0a) || element.includes(0x0d))) {
        this.writeLine(JSON.stringify(events[k]), events[k])
      } else {
        this.reserve(element.length + 1)
        this.buffer.set(element, this.offset)
        this.offset += element.length
        this.buffer[this.offset++] = 0x0a
      }
    }

    return true
  }

  /** `line` and its newline; with a limit, the event cut to fit when `line` does not. */
  private writeLine(line: string, event: AuditEvent): void {
    // A UTF-16 code unit takes at most 3 bytes in UTF-8; +1 for the newline.
    this.reserve(line.length * 3 + 1)
    const start = this.offset
    this.offset += this.buffer.write(line, this.offset, 'utf8')
    if (this.limit && this.offset - start >= this.limit.maxBytes) {
      this.offset = start
      this.writeCut(event)
      return
    }

    this.buffer[this.offset++] = 0x0a
  }

  private writeCut(event: AuditEvent): void {
    const {line, cut} = cutEventLine(event, this.format, this.limit!)
    if (cut) this.cut++
    this.reserve(line.length * 3 + 1)
    this.offset += this.buffer.write(line, this.offset, 'utf8')
    this.buffer[this.offset++] = 0x0a
  }

  /** Room for `bytes` more after the current offset, keeping what is written. */
  private reserve(bytes: number): void {
    const needed = this.offset + bytes
    if (needed <= this.buffer.length) return
    const grown = Buffer.allocUnsafe(Math.max(needed, this.buffer.length * 2))
    this.buffer.copy(grown, 0, 0, this.offset)
    this.buffer = grown
  }
}
