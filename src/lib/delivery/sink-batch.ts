import type {SinkFormat} from '../config.js'
import type {OutgoingEvent} from '../db/sink-queries.js'

/*
 * The bodies a sink receives. Every record is one line holding the stored event, so its `id` is
 * always there for the receiving end to drop repeats (delivery is at least once).
 */

/**
 * The stored text on one line. A raw CR or LF in valid JSON can only be whitespace between
 * tokens (inside a string they must be escaped), so making it a space changes nothing else.
 */
function singleLine(json: string): string {
  return json.includes('\n') || json.includes('\r') ? json.replaceAll(/[\r\n]/g, ' ') : json
}

/** One event's record, with its newline. */
export function sinkRecord(event: OutgoingEvent, format: SinkFormat): string {
  const json = singleLine(event.json)
  if (format === 'ndjson') return `${json}\n`
  // Splunk HTTP Event Collector: several events per request, one JSON object each.
  return `{"time":${event.epoch},"source":"audit-logger","sourcetype":"heroku:audit","event":${json}}\n`
}

export interface SinkBatch {
  body: Buffer
  /** How many of the events given went into the body (at least one). */
  count: number
  lastId: string
}

/**
 * The longest run of `events` whose records fit in `maxBytes` (at least the first, however big:
 * an event larger than the bound goes alone rather than never).
 */
export function buildBatch(events: readonly OutgoingEvent[], format: SinkFormat, maxBytes: number): SinkBatch {
  const parts: string[] = []
  let bytes = 0
  for (const event of events) {
    const record = sinkRecord(event, format)
    const size = Buffer.byteLength(record)
    if (parts.length > 0 && bytes + size > maxBytes) break
    parts.push(record)
    bytes += size
  }

  return {body: Buffer.from(parts.join('')), count: parts.length, lastId: events[parts.length - 1].id}
}

export function contentType(format: SinkFormat): string {
  return format === 'ndjson' ? 'application/x-ndjson' : 'application/json'
}

export function authorization(format: SinkFormat, token: string | undefined): string | undefined {
  if (token === undefined) return undefined
  return format === 'splunk-hec' ? `Splunk ${token}` : `Bearer ${token}`
}
