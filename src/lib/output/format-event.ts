import {isUtf8} from 'node:buffer'

import type {AuditEvent} from '../heroku/types.js'
import {escapeControls} from '../text.js'
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
  const text = value === undefined || value === null ? '' : String(value)
  return PLAIN.test(text) && escapeControls(text) === text ? text : escapeControls(JSON.stringify(text))
}

/** The text line of one event, without its newline. */
function textLine(event: AuditEvent): string {
  const app = event.app?.name ? ` app.name=${textValue(event.app.name)}` : ''
  return `created_at=${textValue(event.created_at)} actor.email=${textValue(event.actor?.email)} type=${textValue(event.type)} action=${textValue(event.action)}${app} id=${textValue(event.id)}`
}

/**
 * One event as one line (with its newline). Text is in the old tool's spirit, grep- and
 * logfmt-friendly; json is the API's own fields, one object per line, for a drain or a SIEM.
 */
export function formatEvent(event: AuditEvent, format: OutputFormat): string {
  return `${format === 'json' ? JSON.stringify(event) : textLine(event)}\n`
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
 */
export class LineEncoder {
  private buffer: Buffer
  private offset = 0

  constructor(
    readonly format: OutputFormat,
    initialBytes = 1 << 20,
  ) {
    this.buffer = Buffer.allocUnsafe(initialBytes)
  }

  encode(events: readonly AuditEvent[], body?: Uint8Array, keep?: readonly boolean[]): Buffer {
    this.offset = 0
    if (this.format !== 'json' || !body || !this.copyElements(events, body, keep)) {
      this.offset = 0
      const json = this.format === 'json'
      for (let k = 0; k < events.length; k++) {
        if (!keep || keep[k]) this.writeLine(json ? JSON.stringify(events[k]) : textLine(events[k]))
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
    this.reserve(body.length + events.length)
    for (let k = 0; k < events.length; k++) {
      const start = spans[2 * k]
      const end = spans[2 * k + 1]
      if (body[start] !== 0x7b || body[end - 1] !== 0x7d) return false
      if (keep && !keep[k]) continue
      const element = body.subarray(start, end)
      if (multiline && (element.includes(0x0a) || element.includes(0x0d))) {
        this.writeLine(JSON.stringify(events[k]))
      } else {
        this.reserve(element.length + 1)
        this.buffer.set(element, this.offset)
        this.offset += element.length
        this.buffer[this.offset++] = 0x0a
      }
    }

    return true
  }

  private writeLine(line: string): void {
    // A UTF-16 code unit takes at most 3 bytes in UTF-8; +1 for the newline.
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
