/**
 * Reads a Heroku monthly audit archive as it downloads: hashes the gzip bytes, inflates them and
 * cuts the JSON into events, in bounded memory whatever the month's size.
 *
 * The archive is gzip of either a bare array of events or an object whose "entries" key holds that
 * array (heroku-audit-api.md, "archives"). Each event comes with its exact bytes from the file, so
 * it can be stored as Heroku wrote it (as event-store.ts does with API pages).
 *
 * Every batch is provisional: the SHA-256 Heroku lists is only checked once the input ends, so a
 * caller keeps nothing unless the generator returns normally.
 */
import {isUtf8} from 'node:buffer'
import {createHash} from 'node:crypto'
import {createGunzip, type Gunzip} from 'node:zlib'

import type {AuditEvent} from '../heroku/types.js'

/** Events, in file order, with each one's JSON text exactly as in the file. */
export interface ArchiveBatch {
  events: AuditEvent[]
  /**
   * Each event's UTF-8 bytes, byte for byte as in the file. Often views into inflated chunks of
   * 64 KiB: hand them on (a COPY), do not keep them for long.
   */
  texts: Buffer[]
}

export interface ReadArchiveOptions {
  /** SHA-256 hex of the gzip bytes, as the archive listing gives it (either case is accepted). */
  expectedChecksum: string
  /** Most JSON bytes the gzip may inflate to (default DEFAULT_MAX_INFLATED_BYTES). */
  maxInflatedBytes?: number
  /** Most bytes one event's JSON text may have (default DEFAULT_MAX_EVENT_BYTES). */
  maxEventBytes?: number
  /** Most events per batch (default DEFAULT_BATCH_EVENTS). */
  batchEvents?: number
  signal?: AbortSignal
}

/** What the generator returns once the whole archive was read and its checksum matched. */
export interface ArchiveSummary {
  /** SHA-256 hex of the gzip bytes (lowercase). */
  checksum: string
  gzipBytes: number
  /** Inflated bytes: the JSON document's length. */
  jsonBytes: number
  events: number
  /** 'array' for a bare array of events, 'entries' for an object with an "entries" array. */
  shape: 'array' | 'entries'
}

/**
 * A month of millions of events (about 1.5 KB each) stays well below this; a gzip bomb stops here.
 * Inflating is streamed, so reaching the cap costs time (about a minute), never memory.
 */
export const DEFAULT_MAX_INFLATED_BYTES = 16 * 1024 ** 3
/** Real events are a few KB; this still leaves room for a big `data` payload. */
export const DEFAULT_MAX_EVENT_BYTES = 1024 ** 2
/** Keeps each database COPY a reasonable size. */
export const DEFAULT_BATCH_EVENTS = 1000
/** A batch is also handed on once its texts reach this many bytes, whatever its event count. */
export const BATCH_FLUSH_BYTES = 4 * 1024 ** 2

/** The download does not hash to what Heroku lists: nothing read from it can be trusted. */
export class ArchiveChecksumMismatch extends Error {
  constructor(
    readonly expected: string,
    readonly actual: string,
  ) {
    super(`checksum mismatch: Heroku lists ${expected.slice(0, 12)}…, the download hashes to ${actual.slice(0, 12)}…`)
    this.name = 'ArchiveChecksumMismatch'
  }
}

/** The archive's checksum matched, but its content is not gzip of the JSON expected. */
export class ArchiveMalformed extends Error {
  constructor(
    message: string,
    /** 1-based position of the event at fault, when one is. */
    readonly event?: number,
    /** 0-based byte offset in the inflated JSON where the fault is, when known. */
    readonly offset?: number,
  ) {
    super(message)
    this.name = 'ArchiveMalformed'
  }
}

const SHA256_HEX = /^[0-9a-f]{64}$/
/** zlib's inflated chunks: bigger than its 16 KiB default for fewer hand-offs on a big month. */
const INFLATE_CHUNK_BYTES = 64 * 1024

/**
 * Reads the archive's events in batches. Throws ArchiveChecksumMismatch when the gzip bytes do
 * not hash to `expectedChecksum` — also when the content fails to inflate or parse, since a
 * corrupt download explains that — else ArchiveMalformed for content that is not as expected.
 *
 * The input's chunks must not be reused by their producer once handed over (zlib may still hold
 * them). Stopping early (break, or the signal) stops reading the input.
 */
export async function* readArchiveEvents(gzipBytes: AsyncIterable<Uint8Array>, options: ReadArchiveOptions): AsyncGenerator<ArchiveBatch, ArchiveSummary, undefined> {
  const expected = options.expectedChecksum.toLowerCase()
  if (!SHA256_HEX.test(expected)) {
    throw new RangeError(`the archive's listed checksum is not a SHA-256 hex digest: ${JSON.stringify(options.expectedChecksum.slice(0, 80))}`)
  }

  const maxInflatedBytes = positive(options.maxInflatedBytes, DEFAULT_MAX_INFLATED_BYTES, 'maxInflatedBytes')
  const scanner = new ArchiveScanner(positive(options.maxEventBytes, DEFAULT_MAX_EVENT_BYTES, 'maxEventBytes'), positive(options.batchEvents, DEFAULT_BATCH_EVENTS, 'batchEvents'))
  const {signal} = options
  signal?.throwIfAborted()

  const gunzip = createGunzip({chunkSize: INFLATE_CHUNK_BYTES})
  const pump = new GzipPump(gzipBytes, gunzip, signal)
  const onAbort = () => {
    pump.stop()
    gunzip.destroy(signal?.reason)
  }

  signal?.addEventListener('abort', onAbort, {once: true})
  try {
    let jsonBytes = 0
    try {
      for await (const inflated of gunzip as AsyncIterable<Buffer>) {
        jsonBytes += inflated.length
        if (jsonBytes > maxInflatedBytes) {
          throw new ArchiveMalformed(`the archive inflates to more than ${maxInflatedBytes} bytes (the limit): refusing it as a likely gzip bomb`)
        }

        scanner.scan(inflated)
        for (let batch = scanner.takeBatch(); batch; batch = scanner.takeBatch()) {
          yield batch
          signal?.throwIfAborted()
        }
      }

      scanner.finish()
    } catch (error) {
      if (signal?.aborted) throw signal.reason
      // The content failed: hash the rest of the download, as a corrupt one explains bad content.
      pump.stopFeeding()
      gunzip.destroy()
      const {checksum} = await pump.done
      if (checksum !== expected) throw new ArchiveChecksumMismatch(expected, checksum)
      throw asMalformed(error)
    }

    const last = scanner.takeLastBatch()
    if (last) {
      yield last
      signal?.throwIfAborted()
    }

    const {checksum, bytes} = await pump.done
    if (checksum !== expected) throw new ArchiveChecksumMismatch(expected, checksum)
    return {checksum, gzipBytes: bytes, jsonBytes, events: scanner.eventCount, shape: scanner.shape ?? 'array'}
  } finally {
    signal?.removeEventListener('abort', onAbort)
    pump.stop()
    gunzip.destroy()
    // Prompt, as stop() cuts short a pending read: the download is let go before this returns.
    await pump.done.catch(() => {})
  }
}

function positive(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback
  if (!(value > 0) || !Number.isSafeInteger(value)) throw new RangeError(`${name} must be a positive integer, not ${value}`)
  return value
}

/** zlib's errors (and a stream cut short) in the words of an archive that is not valid gzip. */
function asMalformed(error: unknown): unknown {
  if (error instanceof ArchiveMalformed) return error
  const code = (error as {code?: unknown} | undefined)?.code
  if (code === 'Z_BUF_ERROR') return new ArchiveMalformed('the archive\'s gzip data ends early: the file is truncated')
  if (typeof code === 'string' && code.startsWith('Z_')) return new ArchiveMalformed(`the archive is not valid gzip: ${(error as Error).message}`)
  return error
}

/**
 * Reads the input, hashing every byte, and writes it to zlib while its content is wanted. Waits
 * for zlib to drain, so a slow consumer of events holds the download back instead of piling up
 * inflated data.
 */
class GzipPump {
  /** The whole input's SHA-256 and length; rejects when the input fails or reading is stopped. */
  readonly done: Promise<{checksum: string; bytes: number}>
  private feeding = true
  private stopped = false
  private readPending = false
  private rejectPendingRead?: (reason: unknown) => void

  constructor(
    private readonly input: AsyncIterable<Uint8Array>,
    private readonly gunzip: Gunzip,
    private readonly signal: AbortSignal | undefined,
  ) {
    this.done = this.run()
    // Nobody awaits it when the consumer stops early; its failure is reported through zlib then.
    this.done.catch(() => {})
  }

  /** Keep hashing to the end, but send zlib nothing more. */
  stopFeeding(): void {
    this.feeding = false
  }

  /** Stop reading the input altogether (an abort, or the consumer is gone). */
  stop(): void {
    this.feeding = false
    if (this.stopped) return
    this.stopped = true
    this.rejectPendingRead?.(this.signal?.reason ?? new Error('archive reading stopped'))
  }

  private async run(): Promise<{checksum: string; bytes: number}> {
    const hash = createHash('sha256')
    let iterator: AsyncIterator<Uint8Array> | undefined
    let bytes = 0
    let finished = false
    try {
      iterator = this.input[Symbol.asyncIterator]()
      for (;;) {
        const step = await this.next(iterator)
        if (this.stopped) throw this.signal?.reason ?? new Error('archive reading stopped')
        if (step.done) {
          finished = true
          break
        }

        const chunk = step.value
        hash.update(chunk)
        bytes += chunk.byteLength
        if (this.feeding && !this.gunzip.destroyed && chunk.byteLength > 0 && !this.gunzip.write(chunk)) await drainedOrClosed(this.gunzip)
      }
    } catch (error) {
      // The consumer learns of it through zlib; the hash is never complete.
      if (!this.gunzip.destroyed) this.gunzip.destroy(error as Error)
      throw error
    } finally {
      // Let the producer let go of its connection; not awaited behind a read that hangs.
      if (iterator && !finished) {
        const letGo = Promise.resolve().then(() => iterator?.return?.())
        if (this.readPending) letGo.catch(() => {})
        else await letGo.catch(() => {})
      }
    }

    if (this.feeding && !this.gunzip.destroyed) this.gunzip.end()
    return {checksum: hash.digest('hex'), bytes}
  }

  /** The input's next chunk; rejected at once by stop(), however long the input takes. */
  private next(iterator: AsyncIterator<Uint8Array>): Promise<IteratorResult<Uint8Array>> {
    if (this.stopped) return Promise.reject(this.signal?.reason ?? new Error('archive reading stopped'))
    this.readPending = true
    return new Promise((resolve, reject) => {
      this.rejectPendingRead = reject
      iterator.next().then(
        (step) => {
          this.readPending = false
          resolve(step)
        },
        (error: unknown) => {
          this.readPending = false
          reject(error)
        },
      )
    })
  }
}

function drainedOrClosed(stream: Gunzip): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      stream.off('drain', done)
      stream.off('close', done)
      resolve()
    }

    stream.on('drain', done)
    stream.on('close', done)
  })
}

// The scanner's states: where in the document the next byte is.
const ROOT = 0 // before the root value (a BOM and whitespace allowed)
const OBJECT_FIRST_KEY = 1 // after the root object's "{"
const OBJECT_NEXT_KEY = 2 // after a "," in the root object
const KEY = 3 // inside a key of the root object
const COLON = 4 // after a key
const OBJECT_VALUE = 5 // after a key's ":"
const SKIP_NESTED = 6 // inside another key's string, object or array value
const SKIP_SCALAR = 7 // inside another key's number, true, false or null
const OBJECT_AFTER_VALUE = 8 // after a value of the root object
const ARRAY_FIRST = 9 // after the events array's "["
const ARRAY_NEXT = 10 // after a "," in the events array
const EVENT = 11 // inside an event
const ARRAY_AFTER_EVENT = 12 // after an event
const END = 13 // after the root value: only whitespace may follow

const QUOTE = 0x22
const BACKSLASH = 0x5c
const BOM = [0xef, 0xbb, 0xbf]

// What a byte means to the nesting scan: most bytes mean nothing.
const OPENS = 1
const CLOSES = 2
const STARTS_STRING = 3
const NESTING = new Uint8Array(256)
NESTING[0x7b] = OPENS // {
NESTING[0x5b] = OPENS // [
NESTING[0x7d] = CLOSES // }
NESTING[0x5d] = CLOSES // ]
NESTING[QUOTE] = STARTS_STRING

const WHITESPACE = new Uint8Array(256)
for (const c of [0x20, 0x0a, 0x0d, 0x09]) WHITESPACE[c] = 1

// Bytes of a JSON number, true, false or null, in a skipped value (checked loosely).
const SCALAR = new Uint8Array(256)
for (const c of Buffer.from('0123456789+-.eEtrufalsn')) SCALAR[c] = 1

/** Longest key that can still be "entries" (each letter as a \uXXXX escape), quotes included. */
const LONGEST_ENTRIES_KEY = 2 + 6 * 'entries'.length

/**
 * Cuts the inflated JSON into events, chunk by chunk, tracking only what splitting needs: strings
 * (and their escapes), nesting, and the few bytes around the events array. Each event's text is
 * then checked by JSON.parse; the values of other keys of a root object are only checked for
 * balanced strings and brackets, as they are skipped.
 */
class ArchiveScanner {
  shape: 'array' | 'entries' | undefined
  eventCount = 0

  private state = ROOT
  /** Inflated bytes before the current chunk. */
  private chunkOffset = 0
  private bomBytes = 0
  private entriesSeen = false
  /** Whether the root object's key being read, or whose value is next, is "entries". */
  private valueIsEntries = false

  // A nested value being scanned (an event, or a skipped value).
  private depth = 0
  private inString = false
  private escapePending = false

  /** The current event's (or key's) bytes from earlier chunks. */
  private pieces: Buffer[] = []
  private pieceBytes = 0
  /** Offset of the current event's (or key's) first byte in the inflated JSON. */
  private valueOffset = 0

  private batch: ArchiveBatch = {events: [], texts: []}
  private batchBytes = 0
  private readonly full: ArchiveBatch[] = []

  constructor(
    private readonly maxEventBytes: number,
    private readonly batchEvents: number,
  ) {}

  /** A batch that is complete, if any. */
  takeBatch(): ArchiveBatch | undefined {
    return this.full.shift()
  }

  /** The last, partial batch, once the document is complete. */
  takeLastBatch(): ArchiveBatch | undefined {
    const batch = this.batch
    this.batch = {events: [], texts: []}
    this.batchBytes = 0
    return batch.events.length > 0 ? batch : undefined
  }

  /** Throws unless the document is complete. */
  finish(): void {
    if (this.state === END) return
    const at = this.chunkOffset
    if (this.state === ROOT) throw new ArchiveMalformed(at === this.bomBytes ? 'the archive is empty: no JSON in it' : 'the archive holds only whitespace: no JSON in it', undefined, at)
    if (this.state === EVENT) throw new ArchiveMalformed(`the archive's JSON ends inside event ${this.eventCount + 1} (begun at byte ${this.valueOffset}): the file is truncated`, this.eventCount + 1, at)
    throw new ArchiveMalformed(`the archive's JSON ends early, at byte ${at}: the file is truncated`, undefined, at)
  }

  scan(chunk: Buffer): void {
    const n = chunk.length
    let i = 0
    // Where the current event or key began in this chunk (0 when it began in an earlier one).
    let start = 0
    while (i < n) {
      switch (this.state) {
        case ROOT: {
          const c = chunk[i]
          const at = this.chunkOffset + i
          if (at === this.bomBytes && at < BOM.length && c === BOM[at]) {
            this.bomBytes++
            i++
          } else if (this.bomBytes > 0 && this.bomBytes < BOM.length) {
            throw this.malformedAt(i, 'the archive starts with a broken byte-order mark')
          } else if (WHITESPACE[c]) {
            i++
          } else if (c === 0x5b /* [ */) {
            this.shape = 'array'
            this.state = ARRAY_FIRST
            i++
          } else if (c === 0x7b /* { */) {
            this.shape = 'entries'
            this.state = OBJECT_FIRST_KEY
            i++
          } else {
            throw this.malformedAt(i, 'the archive\'s JSON is neither an array of events nor an object with an "entries" array')
          }

          break
        }

        case OBJECT_FIRST_KEY:
        case OBJECT_NEXT_KEY: {
          i = skipWhitespace(chunk, i)
          if (i === n) break
          const c = chunk[i]
          if (c === QUOTE) {
            // The quote is left to KEY's scan, which keeps it as part of the key's text.
            this.state = KEY
            this.pieces = []
            this.pieceBytes = 0
            this.valueOffset = this.chunkOffset + i
            this.startNested()
            start = i
          } else if (c === 0x7d /* } */ && this.state === OBJECT_FIRST_KEY) {
            throw this.malformedAt(i, 'the archive\'s JSON object has no "entries" array')
          } else {
            throw this.malformedAt(i, 'the archive\'s JSON object is malformed: a key was expected')
          }

          break
        }

        case KEY: {
          const end = this.scanNested(chunk, i)
          if (end < 0) {
            this.keepPiece(chunk.subarray(start, n), LONGEST_ENTRIES_KEY)
            i = n
            break
          }

          this.keepPiece(chunk.subarray(start, end), LONGEST_ENTRIES_KEY)
          this.valueIsEntries = this.isEntriesKey()
          if (this.valueIsEntries) {
            // Keeping both would take holding one: reject the ambiguity instead.
            if (this.entriesSeen) throw new ArchiveMalformed(`the archive's JSON object has more than one "entries" key (the second at byte ${this.valueOffset})`, undefined, this.valueOffset)
            this.entriesSeen = true
          }

          this.state = COLON
          this.pieces = []
          i = end
          break
        }

        case COLON: {
          i = skipWhitespace(chunk, i)
          if (i === n) break
          if (chunk[i] !== 0x3a /* : */) throw this.malformedAt(i, 'the archive\'s JSON object is malformed: ":" was expected after a key')
          this.state = OBJECT_VALUE
          i++
          break
        }

        case OBJECT_VALUE: {
          i = skipWhitespace(chunk, i)
          if (i === n) break
          const c = chunk[i]
          if (this.valueIsEntries) {
            if (c !== 0x5b /* [ */) throw this.malformedAt(i, 'the archive\'s "entries" is not an array')
            this.state = ARRAY_FIRST
            i++
          } else if (NESTING[c] === OPENS || c === QUOTE) {
            this.startNested()
            this.state = SKIP_NESTED
          } else if (SCALAR[c]) {
            this.state = SKIP_SCALAR
          } else {
            throw this.malformedAt(i, 'the archive\'s JSON object is malformed: a value was expected')
          }

          break
        }

        case SKIP_NESTED: {
          const end = this.scanNested(chunk, i)
          if (end < 0) {
            i = n
          } else {
            this.state = OBJECT_AFTER_VALUE
            i = end
          }

          break
        }

        case SKIP_SCALAR: {
          while (i < n && SCALAR[chunk[i]]) i++
          if (i < n) this.state = OBJECT_AFTER_VALUE
          break
        }

        case OBJECT_AFTER_VALUE: {
          i = skipWhitespace(chunk, i)
          if (i === n) break
          const c = chunk[i]
          if (c === 0x2c /* , */) {
            this.state = OBJECT_NEXT_KEY
          } else if (c === 0x7d /* } */) {
            if (!this.entriesSeen) throw this.malformedAt(i, 'the archive\'s JSON object has no "entries" array')
            this.state = END
          } else {
            throw this.malformedAt(i, 'the archive\'s JSON object is malformed: "," or "}" was expected after a value')
          }

          i++
          break
        }

        case ARRAY_FIRST:
        case ARRAY_NEXT: {
          i = skipWhitespace(chunk, i)
          if (i === n) break
          const c = chunk[i]
          if (c === 0x7b /* { */) {
            this.state = EVENT
            this.pieces = []
            this.pieceBytes = 0
            this.valueOffset = this.chunkOffset + i
            this.startNested()
            start = i
          } else if (c === 0x5d /* ] */ && this.state === ARRAY_FIRST) {
            this.closeArray()
            i++
          } else {
            const position = this.eventCount + 1
            const what = c === 0x5d ? 'missing: the array ends with a ","' : 'not a JSON object'
            throw new ArchiveMalformed(`event ${position} (byte ${this.chunkOffset + i} of the archive's JSON) is ${what}`, position, this.chunkOffset + i)
          }

          break
        }

        case EVENT: {
          const end = this.scanNested(chunk, i)
          if (end < 0) {
            this.keepPiece(chunk.subarray(start, n), Number.POSITIVE_INFINITY)
            this.checkEventSize(this.pieceBytes)
            i = n
            break
          }

          this.emitEvent(chunk.subarray(start, end))
          this.state = ARRAY_AFTER_EVENT
          i = end
          break
        }

        case ARRAY_AFTER_EVENT: {
          i = skipWhitespace(chunk, i)
          if (i === n) break
          const c = chunk[i]
          if (c === 0x2c /* , */) {
            this.state = ARRAY_NEXT
          } else if (c === 0x5d /* ] */) {
            this.closeArray()
          } else {
            throw this.malformedAt(i, `the archive's events array is malformed: "," or "]" was expected after event ${this.eventCount}`)
          }

          i++
          break
        }

        case END: {
          i = skipWhitespace(chunk, i)
          if (i < n) throw this.malformedAt(i, 'the archive has more after its JSON document')
          break
        }
      }
    }

    this.chunkOffset += n
  }

  private closeArray(): void {
    this.state = this.shape === 'array' ? END : OBJECT_AFTER_VALUE
  }

  /** scanNested's state for a value that starts here: outside any string, nothing open yet. */
  private startNested(): void {
    this.depth = 0
    this.inString = false
    this.escapePending = false
  }

  /**
   * Scans a string, object or array from `i`, resuming where the last chunk left it: the index
   * just after its end, or -1 when the chunk ends first.
   */
  private scanNested(chunk: Buffer, i: number): number {
    const n = chunk.length
    let depth = this.depth
    if (this.inString) {
      i = this.scanString(chunk, i)
      if (i < 0) return -1
      if (depth === 0) return i
    }

    while (i < n) {
      const kind = NESTING[chunk[i++]]
      if (kind === 0) continue
      if (kind === OPENS) {
        depth++
      } else if (kind === CLOSES) {
        if (--depth === 0) {
          this.depth = 0
          return i
        }
      } else {
        this.inString = true
        i = this.scanString(chunk, i)
        if (i < 0) {
          this.depth = depth
          return -1
        }

        if (depth === 0) return i
      }
    }

    this.depth = depth
    return -1
  }

  /**
   * Scans the inside of a string from `i`: the index just after its closing quote, or -1 when the
   * chunk ends first. Jumps from quote to quote; a quote preceded by an odd run of backslashes is
   * escaped. A run never reaches back before `i`: what precedes is the opening quote, an escaped
   * byte, or a chunk that ended outside an escape (else escapePending says so).
   */
  private scanString(chunk: Buffer, i: number): number {
    const n = chunk.length
    if (this.escapePending) {
      if (i >= n) return -1
      this.escapePending = false
      i++
    }

    for (;;) {
      const quote = chunk.indexOf(QUOTE, i)
      if (quote < 0) {
        this.escapePending = (backslashesBefore(chunk, n, i) & 1) === 1
        return -1
      }

      if ((backslashesBefore(chunk, quote, i) & 1) === 0) {
        this.inString = false
        return quote + 1
      }

      i = quote + 1
    }
  }

  /** Keeps a piece of the current event or key, up to `limit` bytes in all. */
  private keepPiece(piece: Buffer, limit: number): void {
    if (piece.length === 0) return
    this.pieceBytes += piece.length
    if (this.pieceBytes <= limit) this.pieces.push(piece)
  }

  private isEntriesKey(): boolean {
    if (this.pieceBytes > LONGEST_ENTRIES_KEY) return false
    const text = this.pieces.length === 1 ? this.pieces[0] : Buffer.concat(this.pieces)
    try {
      return JSON.parse(text.toString('utf8')) === 'entries'
    } catch {
      throw new ArchiveMalformed(`the archive's JSON object has a malformed key at byte ${this.valueOffset}`, undefined, this.valueOffset)
    }
  }

  private checkEventSize(bytes: number): void {
    if (bytes > this.maxEventBytes) {
      const position = this.eventCount + 1
      throw new ArchiveMalformed(
        `event ${position} (byte ${this.valueOffset} of the archive's JSON) is larger than ${this.maxEventBytes} bytes, the most one event may have`,
        position,
        this.valueOffset,
      )
    }
  }

  private emitEvent(tail: Buffer): void {
    const position = this.eventCount + 1
    const size = this.pieceBytes + tail.length
    this.checkEventSize(size)
    // One copy, and only for an event split across chunks.
    const text = this.pieces.length === 0 ? tail : Buffer.concat([...this.pieces, tail], size)
    this.pieces = []
    this.pieceBytes = 0

    const where = `event ${position} (byte ${this.valueOffset} of the archive's JSON)`
    // JSON is UTF-8: a stray byte would become U+FFFD in the parsed event but not in the text kept.
    if (!isUtf8(text)) throw new ArchiveMalformed(`${where} is not valid UTF-8`, position, this.valueOffset)
    let event: AuditEvent
    try {
      // The text starts with "{" and ends at its matching "}": when it parses, it is an object.
      event = JSON.parse(text.toString('utf8')) as AuditEvent
    } catch (error) {
      // Not V8's message: it quotes the event, which may hold terminal controls.
      const at = /position (\d+)/.exec((error as Error).message)
      const detail = at ? ` (at its byte ${at[1]})` : ''
      throw new ArchiveMalformed(`${where} is not valid JSON${detail}`, position, this.valueOffset)
    }

    this.eventCount = position
    this.batch.events.push(event)
    this.batch.texts.push(text)
    this.batchBytes += size
    if (this.batch.events.length >= this.batchEvents || this.batchBytes >= BATCH_FLUSH_BYTES) {
      this.full.push(this.batch)
      this.batch = {events: [], texts: []}
      this.batchBytes = 0
    }
  }

  private malformedAt(i: number, message: string): ArchiveMalformed {
    const offset = this.chunkOffset + i
    return new ArchiveMalformed(`${message} (at byte ${offset})`, undefined, offset)
  }
}

function skipWhitespace(chunk: Buffer, i: number): number {
  const n = chunk.length
  while (i < n && WHITESPACE[chunk[i]]) i++
  return i
}

/** How many backslashes directly precede `end`, counting no further back than `floor`. */
function backslashesBefore(chunk: Buffer, end: number, floor: number): number {
  let k = end
  while (k > floor && chunk[k - 1] === BACKSLASH) k--
  return end - k
}
