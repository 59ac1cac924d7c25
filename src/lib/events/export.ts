import type {Kysely} from 'kysely'

import {addDays, isCalendarDate, yesterdayUtc} from '../dates.js'
import {type EventFilter, type EventHit, streamEvents} from '../db/event-queries.js'
import type {Database} from '../db/schema.js'
import {UsageError} from '../errors.js'
import type {AuditEvent} from '../heroku/types.js'
import {OutputClosed, isOutputClosed} from '../output/deliver.js'
import {formatEvent} from '../output/format-event.js'
import {escapeControls, oneLine} from '../text.js'
import {foldJsonText, prettyJson} from './event-json.js'
import {FilterError, type RawEventFilter, checkEventFilter} from './filter.js'

/*
 * `audit-logger events`: the store's events as lines on an output stream — the text line of
 * `process`, the stored JSON, or CSV — streamed in bounded batches with back-pressure.
 */

export const EXPORT_FORMATS = ['text', 'json', 'csv'] as const
export type ExportFormat = (typeof EXPORT_FORMATS)[number]

/** Days searched when none are given: the last week, ending yesterday (UTC). */
export const DEFAULT_EVENT_DAYS = 7

/** The most events one `--limit` asks for; without --limit every match is printed. */
export const MAX_EXPORT_LIMIT = 1_000_000

/** The search the flags ask for, as typed. */
export interface EventFlags extends RawEventFilter {
  date?: string
}

/**
 * The filter of `events`' flags: --date D, or --from/--to, or the last DEFAULT_EVENT_DAYS days
 * ending yesterday; every value checked by checkEventFilter. A bad value is a UsageError (exit 2).
 */
export function eventFlagsFilter(flags: EventFlags, now: Date = new Date()): EventFilter {
  const {date, ...raw} = flags
  let window: {from?: string; to?: string}
  if (date !== undefined) {
    const day = date.trim()
    if (!isCalendarDate(day)) throw new UsageError(`date "${oneLine(date, 40)}" is not a calendar day written YYYY-MM-DD`, 'write the day as e.g. 2025-09-28')
    window = {from: day, to: day}
  } else if (raw.from === undefined && raw.to === undefined) {
    const to = yesterdayUtc(now)
    window = {from: addDays(to, -(DEFAULT_EVENT_DAYS - 1)), to}
  } else {
    window = {from: raw.from, to: raw.to}
  }

  try {
    return checkEventFilter({...raw, ...window})
  } catch (error) {
    if (error instanceof FilterError) throw new UsageError(error.message, 'see --help for the flags and their values')
    throw error
  }
}

/** The search in a few words, for messages: 2025-09-28..2025-10-04, actor a@example.com, type app. */
export function describeFilter(filter: EventFilter): string {
  const days = filter.from === filter.to ? (filter.from ?? 'every day') : `${filter.from ?? '…'}..${filter.to ?? '…'}`
  const values = (['actor', 'type', 'action', 'app', 'ip'] as const).filter((name) => filter[name] !== undefined).map((name) => `${name} ${oneLine(filter[name], 80)}`)
  return [days, ...values].join(', ')
}

// --- one event as a line ----------------------------------------------------------------------

export const CSV_COLUMNS = ['created_at', 'day', 'id', 'type', 'action', 'actor_email', 'actor_id', 'app_name', 'app_id', 'owner_email', 'team_name', 'ip_address', 'account'] as const

/** What a spreadsheet would run as a formula (or DDE) if a cell started with it. */
const FORMULA_START = /^[=+\-@\t\r]/

/**
 * One CSV cell (RFC 4180): control characters escaped visibly, so a cell never breaks a row; a
 * leading ' on a value a spreadsheet would take for a formula; quoted when it holds " or a comma.
 */
export function csvCell(value: string | null): string {
  if (value === null) return ''
  const text = (FORMULA_START.test(value) ? "'" : '') + escapeControls(value)
  return /[",]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text
}

/** CSV rows end with CRLF, as RFC 4180 says. */
export const CSV_HEADER = `${CSV_COLUMNS.join(',')}\r\n`

export function csvRow(hit: EventHit): string {
  const values: Record<(typeof CSV_COLUMNS)[number], string | null> = {
    created_at: hit.created_at.toISOString(),
    day: hit.day,
    id: hit.id,
    type: hit.type,
    action: hit.action,
    actor_email: hit.actor_email,
    actor_id: hit.actor_id,
    app_name: hit.app_name,
    app_id: hit.app_id,
    owner_email: hit.owner_email,
    team_name: hit.team_name,
    ip_address: hit.ip_address,
    account: hit.account,
  }
  return `${CSV_COLUMNS.map((name) => csvCell(values[name])).join(',')}\r\n`
}

function parsed(text: string): AuditEvent | undefined {
  try {
    const value: unknown = JSON.parse(text)
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as AuditEvent) : undefined
  } catch {
    return undefined
  }
}

/** The line `process` prints for the event; from the search columns if its stored text is not an object (never from the API). */
export function textLine(hit: EventHit): string {
  const event = parsed(hit.event_json) ?? {
    id: hit.id,
    created_at: hit.created_at.toISOString(),
    type: hit.type,
    action: hit.action,
    actor: {email: hit.actor_email ?? undefined},
    app: hit.app_name === null ? null : {name: hit.app_name},
  }
  return formatEvent(event, 'text')
}

/**
 * Characters a terminal may act on or reorder (DEL, C1 controls, line separators, bidi overrides)
 * and C0 controls, which valid JSON holds only escaped. Outside a string JSON has none of them, so
 * writing them as \u escapes gives the same JSON value.
 */
// eslint-disable-next-line no-control-regex
const TERMINAL_ACTIVE = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F\u2028\u2029\u202A-\u202E\u2066-\u2069]/g

/** The same JSON, safe to show on a terminal. */
export function terminalSafeJson(text: string): string {
  return text.replaceAll(TERMINAL_ACTIVE, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

/**
 * The stored JSON text on one line: as stored, or, for an element the API pretty-printed over
 * several lines, with its line breaks removed (the same rule as /api/events.ndjson; every other
 * byte, big numbers and key order included, as sent).
 */
export function jsonLine(text: string): string {
  return foldJsonText(text)
}

export function formatHit(hit: EventHit, format: ExportFormat, terminal = false): string {
  if (format === 'csv') return csvRow(hit)
  if (format === 'text') return textLine(hit)
  const line = jsonLine(hit.event_json)
  return `${terminal ? terminalSafeJson(line) : line}\n`
}

/**
 * `events show`: the stored text as is, or pretty-printed as the status page shows it; for a
 * terminal, with what a terminal acts on escaped (the same JSON).
 */
export function showText(eventJson: string, options: {pretty?: boolean; terminal?: boolean} = {}): string {
  const text = (options.pretty ? prettyJson(eventJson) : undefined) ?? eventJson
  return `${options.terminal ? terminalSafeJson(text) : text}\n`
}

// --- streaming --------------------------------------------------------------------------------

function ignoreOutputError(): void {
  // The writes themselves notice a reader that went away (see ChunkedWriter).
}

/**
 * A reader that goes away (`| head -1`) makes the stream emit 'error' (EPIPE), which crashes a
 * process where nobody listens, possibly after the last write; the writes report it themselves.
 */
export function quietWhenReaderLeaves(output: NodeJS.WritableStream): void {
  if (!output.listeners('error').includes(ignoreOutputError)) output.on('error', ignoreOutputError)
}

/**
 * Lines gathered into chunks of about `chunkChars`, each written once the output has taken the
 * one before ('drain'): memory holds one chunk, however slow the reader. An output whose reader
 * went away (EPIPE…) is reported as OutputClosed by the write after it.
 */
class ChunkedWriter {
  private lines: string[] = []
  private chars = 0
  private failure: unknown
  private readonly onError = (error: unknown) => (this.failure ??= error)

  constructor(
    private readonly output: NodeJS.WritableStream,
    private readonly chunkChars = 64 * 1024,
  ) {
    output.on('error', this.onError)
  }

  async write(line: string): Promise<void> {
    this.lines.push(line)
    this.chars += line.length
    if (this.chars >= this.chunkChars) await this.flush()
  }

  async flush(): Promise<void> {
    this.check()
    if (this.lines.length === 0) return
    const chunk = this.lines.join('')
    this.lines = []
    this.chars = 0
    if (!this.output.write(chunk)) await this.settled(['drain', 'error', 'close'])
    this.check()
  }

  /** Flushes, then waits until the output has handed over everything (or failed). */
  async end(): Promise<void> {
    await this.flush()
    // A write() put on the stream itself (a harness capturing stdout) may never call back: not awaited.
    if (Object.hasOwn(this.output, 'write')) return
    await new Promise<void>((resolve) => this.output.write('', (error?: Error | null) => resolve(void (error && this.onError(error)))))
    this.check()
  }

  release(): void {
    this.output.off('error', this.onError)
  }

  private check(): void {
    if (this.failure === undefined && (this.output as {destroyed?: boolean}).destroyed) this.failure = new OutputClosed('ERR_STREAM_DESTROYED')
    if (this.failure === undefined) return
    if (isOutputClosed(this.failure)) throw new OutputClosed(String((this.failure as {code?: unknown}).code ?? 'closed'))
    throw this.failure
  }

  private settled(events: string[]): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        for (const event of events) this.output.off(event, done)
        resolve()
      }

      for (const event of events) this.output.on(event, done)
    })
  }
}

export interface ExportOptions {
  format: ExportFormat
  /** At most this many events; every match when absent. */
  limit?: number
  /** Events read from the database at a time. */
  batch?: number
  /** The output is a terminal: JSON lines have terminal-active characters escaped (the same JSON). */
  terminal?: boolean
}

export interface ExportResult {
  /** Events written. */
  events: number
  /** --limit stopped the stream while more events matched. */
  more: boolean
  /** The output's reader went away (`| head -1`) before the end: the stream stopped there. */
  outputClosed: boolean
}

/**
 * Writes every event matching `filter` to `output`, oldest first (by collection day, then
 * created_at, then id), read in batches by keyset: memory stays bounded however many match.
 * Nothing is written when nothing matches (not even the CSV header).
 */
export async function exportEvents(db: Kysely<Database>, filter: EventFilter, output: NodeJS.WritableStream, options: ExportOptions): Promise<ExportResult> {
  const writer = new ChunkedWriter(output)
  const {limit} = options
  let events = 0
  let more = false
  try {
    // One more than the limit is read, to tell "stopped at the limit" from "that was all".
    for await (const hit of streamEvents(db, filter, {order: 'oldest', limit: limit === undefined ? undefined : limit + 1, batch: options.batch})) {
      if (events === limit) {
        more = true
        break
      }

      if (events === 0 && options.format === 'csv') await writer.write(CSV_HEADER)
      await writer.write(formatHit(hit, options.format, options.terminal))
      events++
    }

    await writer.end()
    return {events, more, outputClosed: false}
  } catch (error) {
    if (error instanceof OutputClosed) return {events, more, outputClosed: true}
    throw error
  } finally {
    writer.release()
  }
}
