/**
 * Heroku's monthly audit-trail archives (heroku-audit-api.md, "archives"): the list, one month's
 * details, and the download of its file.
 *
 * What the API says is hostile until checked: every field of an archive is validated, bodies and
 * waits are bounded, and a bad entry fails with one line naming what is wrong. API calls carry the
 * token, so they never follow a redirect; 429, 5xx, network failures and timeouts are retried.
 *
 * The file lives on another host (S3) behind a pre-signed URL: it is fetched without the token or
 * any Heroku header, its URL is registered as a secret (the signature is a credential), and
 * messages name only its host. It is streamed, never buffered: the caller hashes, inflates and
 * parses the chunks as they come, and checks the checksum at the end. A download is never retried
 * mid-stream; the caller may try the month again (after asking for fresh details: URLs expire).
 *
 * Requests go through node:http rather than fetch: fetch would undo a Content-Encoding on the file
 * (S3 may store a .gz with `Content-Encoding: gzip`), and the checksum is over the stored bytes.
 */
import {request as httpRequest, type ClientRequest, type IncomingMessage, type OutgoingHttpHeaders} from 'node:http'
import {request as httpsRequest} from 'node:https'

import {networkCause} from '../http-answer.js'
import {registerSecret} from '../secrets.js'
import {type ClientNotice, abortableSleep, formatBytes, parseErrorBody, parseRetryAfter} from './client.js'
import {HerokuApiError, QUOTE_SHORT, describeHttpFailure, quoted} from './errors.js'

/** One month's archive, as listed by Heroku and checked here. */
export interface ArchiveInfo {
  /** 'YYYY-MM' */
  month: string
  year: number
  /** When Heroku wrote it: the current month's archive covers the days before this one (UTC). */
  createdAt: Date
  /** Pre-signed: a credential in itself. Never log it; openDownload registers it as a secret. */
  url: string
  /** SHA-256 of the gzip file, 64 lowercase hex digits. */
  checksum: string
  /** The gzip file's size in bytes. */
  size: number
}

export interface ArchiveClientOptions {
  apiUrl: string
  token: string
  accountId: string
  userAgent?: string
  /** The API version in the Accept header; Heroku's enterprise plugin sends `3.audit-trail` for archives. */
  apiVersion?: string
  /** Covers one API request: connecting, headers and the whole body. */
  attemptTimeoutMs?: number
  /** Tries per API request, the first included, for 429, 5xx, network errors and timeouts. */
  maxAttempts?: number
  baseDelayMs?: number
  maxDelayMs?: number
  /** A Retry-After longer than this fails at once instead of sleeping it out. */
  retryAfterCapMs?: number
  /** The most bytes an API answer may have: the list of every month is a few KB. */
  metadataMaxBytes?: number
  /** Redirects a download follows (they carry no credentials); one more fails it. */
  maxRedirects?: number
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>
  random?: () => number
  now?: () => number
  /** Told about each retry, for diagnostics. */
  onNotice?: (notice: ClientNotice) => void
}

export interface DownloadOptions {
  /** Aborting it cancels the body and closes the connection. */
  signal?: AbortSignal
  /** The most bytes the file may have; default max(2 × the listed size, 64 MiB). */
  maxBytes?: number
  /** The longest wait for the answer or for the next bytes (not counting the caller's own time); default 30 s. */
  idleTimeoutMs?: number
  /** The whole download, from openDownload to the last byte, the caller's time included; default 2 h. */
  totalTimeoutMs?: number
}

export interface ArchiveClient {
  /** Every month Heroku has an archive for, oldest first. */
  listArchives(signal?: AbortSignal): Promise<ArchiveInfo[]>
  /**
   * One month's archive ('YYYY-MM'); undefined when Heroku answers 404: no archive for it (yet),
   * or a wrong account, which listArchives tells apart (it fails).
   */
  getArchive(month: string, signal?: AbortSignal): Promise<ArchiveInfo | undefined>
  /**
   * Starts the download of the file and resolves once storage answered 200: the body follows as
   * chunks, as they arrive. Iterate it to its end, or leave the loop early to close the connection;
   * it fails with an ArchiveDownloadError.
   */
  openDownload(info: ArchiveInfo, options?: DownloadOptions): Promise<AsyncIterable<Uint8Array>>
}

/**
 * Why a download failed, in one line that names only the storage host. Not a HerokuApiError: a 403
 * from storage (an expired URL) says nothing about the token or the account.
 */
export class ArchiveDownloadError extends Error {
  constructor(
    message: string,
    readonly kind: 'http' | 'network' | 'timeout' | 'limit' | 'redirect' | 'aborted',
    readonly status?: number,
  ) {
    super(message)
    this.name = 'ArchiveDownloadError'
  }
}

const MiB = 1024 * 1024

export const ARCHIVE_DEFAULTS = {
  apiVersion: '3.audit-trail',
  attemptTimeoutMs: 30_000,
  maxAttempts: 4,
  baseDelayMs: 1000,
  maxDelayMs: 30_000,
  retryAfterCapMs: 120_000,
  metadataMaxBytes: MiB,
  maxRedirects: 3,
  idleTimeoutMs: 30_000,
  // Generous on purpose: the caller inflates and stores millions of events while it reads.
  totalTimeoutMs: 2 * 60 * 60_000,
  // The floor of the default byte cap, so a small listed size never cuts a file that grew a little.
  minDownloadCapBytes: 64 * MiB,
} as const

/** An error body is read for its id and message only; past this the status speaks alone. */
const MAX_ERROR_BODY_BYTES = 64 * 1024
/** Of a storage error (S3's XML), only the start is read, for its <Code>. */
const MAX_STORAGE_ERROR_BYTES = 4096
/** An archive list paging on past this is not a list of months. */
const MAX_LIST_PAGES = 20
/** A pre-signed S3 URL is well under 2 KB. */
const MAX_URL_LENGTH = 16 * 1024

const MONTH_PATTERN = /^(\d{4})-(0[1-9]|1[0-2])$/
const TIMESTAMP = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$/
// eslint-disable-next-line no-control-regex
const CONTROL_OR_SPACE = /[\u0000-\u0020\u007F-\u009F]/

/** An attempt's failure that may be retried: why, and how long the server asked us to wait. */
class Retryable extends Error {
  constructor(
    readonly failure: HerokuApiError,
    readonly retryAfterMs?: number,
  ) {
    super(failure.message)
  }
}

/**
 * Ends one exchange early, once, for the first reason that comes: a timer, the caller's signal.
 * Whatever waits on the exchange goes through `race()`, so it wakes at once with that reason.
 */
class Cutoff {
  reason?: Error
  private readonly listeners = new Set<() => void>()
  private readonly cleanups: (() => void)[] = []

  stop(reason: Error): void {
    if (this.reason) return
    this.reason = reason
    for (const listener of [...this.listeners]) listener()
  }

  /** Calls `listener` on stop (at once if stopped already); returns what lets it go. */
  onStop(listener: () => void): () => void {
    if (this.reason) {
      listener()
      return () => {}
    }
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  /**
   * `work`, or the stop's reason if that comes first. Each wait listens only until it settles: one
   * promise raced by every read of a big body would keep a reaction per chunk.
   */
  race<T>(work: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const release = this.onStop(() => reject(this.reason))
      work.then(
        (value) => {
          release()
          resolve(value)
        },
        (error: unknown) => {
          release()
          reject(error)
        },
      )
    })
  }

  /** A timer that stops the exchange after `ms`, armed by start() (again, from zero) until pause(). */
  timer(ms: number, reason: () => Error): {start(): void; pause(): void} {
    let handle: NodeJS.Timeout | undefined
    const pause = () => clearTimeout(handle)
    this.cleanups.push(pause)
    return {
      start: () => {
        pause()
        handle = setTimeout(() => this.stop(reason()), ms)
      },
      pause,
    }
  }

  follow(signal: AbortSignal | undefined, reason: () => Error): void {
    if (!signal) return
    if (signal.aborted) return this.stop(reason())
    const onAbort = () => this.stop(reason())
    signal.addEventListener('abort', onAbort, {once: true})
    this.cleanups.push(() => signal.removeEventListener('abort', onAbort))
  }

  /** Lets go of the timers and the signal. */
  dispose(): void {
    for (const cleanup of this.cleanups) cleanup()
  }
}

interface Exchange {
  request: ClientRequest
  response: IncomingMessage
}

/** Sends a GET (a fresh connection each time) and resolves once the answer's headers arrive. */
function send(url: URL, headers: OutgoingHttpHeaders, cutoff: Cutoff): Promise<Exchange> {
  return cutoff.race(
    new Promise<Exchange>((resolve, reject) => {
      const request = (url.protocol === 'https:' ? httpsRequest : httpRequest)(url, {method: 'GET', headers, agent: false})
      cutoff.onStop(() => request.destroy())
      // Kept for the request's life: an error after the answer must not go unhandled.
      request.on('error', reject)
      request.once('response', (response) => resolve({request, response}))
      request.end()
    }),
  )
}

/** Up to `maxBytes` of a body; `complete` is false when there was more (the rest is never read). */
async function readBounded(response: IncomingMessage, maxBytes: number, cutoff: Cutoff): Promise<{bytes: Buffer; complete: boolean}> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of raced(response, cutoff)) {
    chunks.push(chunk)
    size += chunk.length
    if (size > maxBytes) return {bytes: Buffer.concat(chunks).subarray(0, maxBytes), complete: false}
  }
  return {bytes: Buffer.concat(chunks), complete: true}
}

/** The body's chunks, each wait raced against the cutoff. */
async function* raced(response: IncomingMessage, cutoff: Cutoff): AsyncGenerator<Buffer> {
  const iterator = response[Symbol.asyncIterator]() as AsyncIterator<Buffer>
  for (;;) {
    const step = await cutoff.race(iterator.next())
    if (step.done) return
    yield step.value
  }
}

function header(response: IncomingMessage, name: string): string | undefined {
  const value = response.headers[name]
  return Array.isArray(value) ? value.join(', ') : value
}

/** A value from the API, shown safely in a message: bounded, on one line, controls escaped. */
function shown(value: unknown): string {
  if (typeof value === 'string') return `"${quoted(value, QUOTE_SHORT)}"`
  if (typeof value === 'number' || typeof value === 'boolean') return quoted(String(value), QUOTE_SHORT)
  if (value === null) return 'null'
  return Array.isArray(value) ? 'an array' : typeof value === 'object' ? 'an object' : typeof value
}

function wrong(field: string, value: unknown, expected: string): string {
  return value === undefined ? `${field} is missing (expected ${expected})` : `${field} is ${shown(value)}, not ${expected}`
}

/** Is `value` an ISO 8601 time whose day and time exist ('2025-02-30' does not)? */
function isRealTime(value: string): boolean {
  const match = TIMESTAMP.exec(value)
  if (!match) return false
  const [year, month, day, hours, minutes, seconds] = match.slice(1, 7).map(Number)
  const date = new Date(Date.UTC(year, month - 1, day))
  const dayExists = date.getUTCFullYear() === year && date.getUTCMonth() === month - 1 && date.getUTCDate() === day
  return dayExists && hours <= 23 && minutes <= 59 && seconds <= 59 && !Number.isNaN(Date.parse(value))
}

/** What is wrong with an archive URL, never quoting it (its query is a signature); undefined when fine. */
function urlProblem(value: unknown): string | undefined {
  if (typeof value !== 'string') return value === undefined ? 'url is missing' : `url is ${shown(value)}, not a URL`
  if (value.length > MAX_URL_LENGTH) return `url is ${value.length} characters long, more than ${MAX_URL_LENGTH}`
  if (CONTROL_OR_SPACE.test(value)) return 'url holds spaces or control characters'
  let url: URL
  try {
    url = new URL(value)
  } catch {
    return 'url is not a valid absolute URL'
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return `url is not an http(s) URL (its scheme is "${quoted(url.protocol, 20)}")`
  if (url.username || url.password) return 'url carries a user name or password'
  return undefined
}

/** The archive an API entry describes, or what is wrong with it (one phrase). */
function archiveFromJson(value: unknown): ArchiveInfo | string {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return `expected an object, got ${shown(value)}`
  const entry = value as Record<string, unknown>
  const {year, month, created_at: createdAt, url, checksum, size} = entry
  if (typeof year !== 'number' || !Number.isInteger(year) || year < 2000 || year > 9999) return wrong('year', year, 'a whole number from 2000 to 9999')
  if (typeof month !== 'string' || !/^(0[1-9]|1[0-2])$/.test(month)) return wrong('month', month, 'a string "01" to "12"')
  if (typeof createdAt !== 'string' || !isRealTime(createdAt)) return wrong('created_at', createdAt, 'a real time in ISO 8601 (e.g. 2025-07-01T00:02:19Z)')
  const badUrl = urlProblem(url)
  if (badUrl) return badUrl
  if (typeof checksum !== 'string' || !/^[0-9a-f]{64}$/i.test(checksum)) return wrong('checksum', checksum, 'a SHA-256 of 64 hex digits')
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) return wrong('size', size, 'a whole number of bytes')
  return {
    month: `${year}-${month}`,
    year,
    createdAt: new Date(createdAt),
    url: url as string,
    checksum: checksum.toLowerCase(),
    size,
  }
}

/** The start of an S3 error body is XML naming a <Code>; a word of it is worth quoting. */
function storageErrorCode(text: string): string | undefined {
  return /<Code>([A-Za-z]{1,64})<\/Code>/.exec(text)?.[1]
}

export function createArchiveClient(options: ArchiveClientOptions): ArchiveClient {
  const settings = {
    apiVersion: options.apiVersion ?? ARCHIVE_DEFAULTS.apiVersion,
    attemptTimeoutMs: options.attemptTimeoutMs ?? ARCHIVE_DEFAULTS.attemptTimeoutMs,
    maxAttempts: options.maxAttempts ?? ARCHIVE_DEFAULTS.maxAttempts,
    baseDelayMs: options.baseDelayMs ?? ARCHIVE_DEFAULTS.baseDelayMs,
    maxDelayMs: options.maxDelayMs ?? ARCHIVE_DEFAULTS.maxDelayMs,
    retryAfterCapMs: options.retryAfterCapMs ?? ARCHIVE_DEFAULTS.retryAfterCapMs,
    metadataMaxBytes: options.metadataMaxBytes ?? ARCHIVE_DEFAULTS.metadataMaxBytes,
    maxRedirects: options.maxRedirects ?? ARCHIVE_DEFAULTS.maxRedirects,
  }
  const sleep = options.sleep ?? abortableSleep
  const random = options.random ?? Math.random
  const now = options.now ?? Date.now
  const notify = options.onNotice ?? (() => {})
  const userAgent = options.userAgent ?? 'audit-logger'
  registerSecret(options.token)

  const base = new URL(options.apiUrl)
  if (base.protocol !== 'https:' && base.protocol !== 'http:') throw new Error(`HEROKU_API_URL must be an http(s) URL, got ${base.protocol}`)
  const apiHost = base.host
  const archivesUrl = `${options.apiUrl.replace(/\/+$/, '')}/enterprise-accounts/${encodeURIComponent(options.accountId)}/archives`
  const apiHeaders: OutgoingHttpHeaders = {
    Accept: `application/vnd.heroku+json; version=${settings.apiVersion}`,
    // The answers are small; the bytes as sent keep the byte cap honest.
    'Accept-Encoding': 'identity',
    Authorization: `Bearer ${options.token}`,
    'User-Agent': userAgent,
  }

  /** One API request and its whole body, parsed; throws Retryable for what may be retried. */
  async function attempt(url: string, what: string, range: string | undefined, signal?: AbortSignal) {
    const cutoff = new Cutoff()
    cutoff.follow(signal, () => new HerokuApiError(`reading ${what} was cancelled`, 'aborted'))
    const timeoutSeconds = settings.attemptTimeoutMs / 1000
    cutoff.timer(settings.attemptTimeoutMs, () => new Retryable(new HerokuApiError(`Heroku API took longer than ${timeoutSeconds} s to send ${what}`, 'timeout'))).start()
    let exchange: Exchange | undefined
    try {
      exchange = await send(new URL(url), range === undefined ? apiHeaders : {...apiHeaders, Range: range}, cutoff)
      const {response} = exchange
      const status = response.statusCode ?? 0
      const requestId = quoted(header(response, 'request-id'), QUOTE_SHORT) || undefined
      const at = requestId ? ` (Request-Id ${requestId})` : ''
      if (status >= 300 && status < 400) {
        throw new HerokuApiError(`Heroku API answered ${status} for ${what}, a redirect: not followed, as it would carry the token${at}`, 'http', {status, requestId})
      }

      const ok = status === 200 || status === 206
      const body = await readBounded(response, ok ? settings.metadataMaxBytes : MAX_ERROR_BODY_BYTES, cutoff)
      if (!ok) {
        const errorBody = body.complete ? parseErrorBody(body.bytes.toString('utf8')) : {}
        const failure = new HerokuApiError(describeHttpFailure(status, errorBody, requestId), 'http', {
          status,
          errorId: quoted(errorBody.id, QUOTE_SHORT) || undefined,
          requestId,
        })
        if (status === 429 || status >= 500) throw new Retryable(failure, parseRetryAfter(header(response, 'retry-after') ?? null, now()))
        throw failure
      }

      if (!body.complete) {
        throw new HerokuApiError(`Heroku API sent more than ${formatBytes(settings.metadataMaxBytes)} for ${what}${at}; stopped reading it: a list of every month is a few KB`, 'limit', {requestId})
      }

      let json: unknown
      try {
        json = JSON.parse(body.bytes.toString('utf8').replace(/^\uFEFF/, ''))
      } catch {
        throw new HerokuApiError(`Heroku API sent a malformed answer for ${what}: the body is not valid JSON (${body.bytes.length} bytes)${at}`, 'malformed', {requestId})
      }

      return {json, requestId, at, nextRange: status === 206 ? header(response, 'next-range') : undefined}
    } catch (error) {
      if (cutoff.reason) throw cutoff.reason
      if (error instanceof HerokuApiError || error instanceof Retryable) throw error
      throw new Retryable(new HerokuApiError(`could not reach the Heroku API at ${apiHost}: ${networkCause(error)}`, 'network'))
    } finally {
      cutoff.dispose()
      exchange?.request.destroy()
    }
  }

  /** `attempt`, again after 429, 5xx, network failures and timeouts, waiting as asked or backing off. */
  async function withRetries(what: string, signal: AbortSignal | undefined, work: () => ReturnType<typeof attempt>): ReturnType<typeof attempt> {
    for (let attemptNumber = 1; ; attemptNumber++) {
      try {
        return await work()
      } catch (error) {
        if (!(error instanceof Retryable)) throw error
        const {failure, retryAfterMs} = error
        const details = {...failure.details, attempts: attemptNumber}
        if (retryAfterMs !== undefined && retryAfterMs > settings.retryAfterCapMs) {
          throw new HerokuApiError(
            `${failure.message}; it asked to wait ${Math.ceil(retryAfterMs / 1000)} s, more than the ${settings.retryAfterCapMs / 1000} s this run will wait: run again later`,
            'wait-too-long',
            details,
          )
        }

        if (attemptNumber >= settings.maxAttempts) throw new HerokuApiError(`${failure.message} (gave up after ${attemptNumber} attempts)`, failure.kind, details)
        const waitMs = retryAfterMs ?? backoff(attemptNumber)
        notify({kind: 'retry', attempt: attemptNumber, waitMs, reason: failure.message})
        try {
          await sleep(waitMs, signal)
        } catch {
          throw new HerokuApiError(`reading ${what} was cancelled`, 'aborted')
        }
      }
    }
  }

  /** Exponential backoff with "equal jitter" (half fixed, half random), so retrying clients spread out. */
  function backoff(attemptNumber: number): number {
    const ceiling = Math.min(settings.maxDelayMs, settings.baseDelayMs * 2 ** (attemptNumber - 1))
    return Math.round(ceiling / 2 + (random() * ceiling) / 2)
  }

  function malformed(what: string, problem: string, answer: {at: string; requestId?: string}): HerokuApiError {
    return new HerokuApiError(`Heroku API sent a malformed ${what}: ${problem}${answer.at}`, 'malformed', {requestId: answer.requestId})
  }

  async function listArchives(signal?: AbortSignal): Promise<ArchiveInfo[]> {
    const archives: ArchiveInfo[] = []
    const byMonth = new Set<string>()
    const rangesSeen = new Set<string>()
    let range: string | undefined
    // The archives link declares no paging; should a list ever page, every page is read.
    for (let page = 1; ; page++) {
      const answer = await withRetries('the archive list', signal, () => attempt(archivesUrl, 'the archive list', range, signal))
      if (!Array.isArray(answer.json)) throw malformed('archive list', `expected a JSON array of archives, got ${shown(answer.json)}`, answer)
      for (const entry of answer.json) {
        const info = archiveFromJson(entry)
        if (typeof info === 'string') throw malformed('archive list', `archive ${archives.length + 1}: ${info}`, answer)
        if (byMonth.has(info.month)) throw malformed('archive list', `archive ${archives.length + 1}: ${info.month} is listed twice`, answer)
        byMonth.add(info.month)
        archives.push(info)
      }

      if (answer.nextRange === undefined) break
      if (rangesSeen.has(answer.nextRange) || page >= MAX_LIST_PAGES) {
        throw new HerokuApiError(`Heroku API kept paging the archive list (page ${page}); stopped rather than loop${answer.at}`, 'paging', {requestId: answer.requestId})
      }
      rangesSeen.add(answer.nextRange)
      range = answer.nextRange
    }

    return archives.sort((a, b) => (a.month < b.month ? -1 : a.month > b.month ? 1 : 0))
  }

  async function getArchive(month: string, signal?: AbortSignal): Promise<ArchiveInfo | undefined> {
    const parts = MONTH_PATTERN.exec(month)
    if (!parts) throw new RangeError(`not a month (YYYY-MM): ${shown(month)}`)
    const what = `the archive of ${month}`
    let answer: Awaited<ReturnType<typeof attempt>>
    try {
      answer = await withRetries(what, signal, () => attempt(`${archivesUrl}/${parts[1]}/${parts[2]}`, what, undefined, signal))
    } catch (error) {
      if (error instanceof HerokuApiError && error.kind === 'http' && error.details.status === 404) return undefined
      throw error
    }

    const info = archiveFromJson(answer.json)
    if (typeof info === 'string') throw malformed(`archive for ${month}`, info, answer)
    if (info.month !== month) throw malformed(`archive for ${month}`, `it describes ${info.month}`, answer)
    return info
  }

  async function openDownload(info: ArchiveInfo, download: DownloadOptions = {}): Promise<AsyncIterable<Uint8Array>> {
    let url = new URL(info.url)
    // The query string is a signature: whatever quotes the URL, or its query, shows a mask instead.
    registerSecret(info.url)
    registerSecret(url.search.slice(1))
    const maxBytes = download.maxBytes ?? Math.max(2 * info.size, ARCHIVE_DEFAULTS.minDownloadCapBytes)
    const idleMs = download.idleTimeoutMs ?? ARCHIVE_DEFAULTS.idleTimeoutMs
    const totalMs = download.totalTimeoutMs ?? ARCHIVE_DEFAULTS.totalTimeoutMs
    const what = `the archive of ${info.month}`
    const cutoff = new Cutoff()
    cutoff.follow(download.signal, () => new ArchiveDownloadError(`downloading ${what} was cancelled`, 'aborted'))
    cutoff.timer(totalMs, () => new ArchiveDownloadError(`downloading ${what} from ${url.host} took longer than the total timeout of ${totalMs / 1000} s`, 'timeout')).start()
    const idle = cutoff.timer(idleMs, () => new ArchiveDownloadError(`archive storage at ${url.host} sent nothing for ${idleMs / 1000} s while sending ${what}`, 'timeout'))
    const storageHeaders: OutgoingHttpHeaders = {Accept: '*/*', 'Accept-Encoding': 'identity', 'User-Agent': userAgent}
    const failure = (error: unknown, doing: string) =>
      cutoff.reason ?? (error instanceof ArchiveDownloadError ? error : new ArchiveDownloadError(`archive storage at ${url.host} ${doing}: ${networkCause(error)}`, 'network'))

    let exchange: Exchange | undefined
    try {
      for (let redirects = 0; ; redirects++) {
        idle.start()
        exchange = await send(url, storageHeaders, cutoff)
        const status = exchange.response.statusCode ?? 0
        if (status === 200) break
        if (![301, 302, 303, 307, 308].includes(status)) {
          const start = await readBounded(exchange.response, MAX_STORAGE_ERROR_BYTES, cutoff).catch(() => ({bytes: Buffer.alloc(0)}))
          const code = storageErrorCode(start.bytes.toString('utf8'))
          const hint = status === 403 ? ' (the pre-signed URL may have expired: ask Heroku for the archive again)' : ''
          throw new ArchiveDownloadError(`archive storage at ${url.host} answered ${status}${code ? ` ${code}` : ''} for ${what}${hint}`, 'http', status)
        }

        exchange.request.destroy()
        url = redirectTarget(url, header(exchange.response, 'location'), redirects, what)
      }
    } catch (error) {
      cutoff.dispose()
      exchange?.request.destroy()
      throw failure(error, `could not be reached for ${what}`)
    }

    idle.pause()
    const {request, response} = exchange
    const declared = Number(header(response, 'content-length'))
    if (declared > maxBytes) {
      cutoff.dispose()
      request.destroy()
      throw new ArchiveDownloadError(`archive storage at ${url.host} announced ${formatBytes(declared)} for ${what}, more than the ${formatBytes(maxBytes)} this download takes (Heroku lists ${info.size} bytes)`, 'limit')
    }

    /** The body as it arrives; the idle timer runs only while waiting for bytes, not while the caller works. */
    async function* body(): AsyncGenerator<Uint8Array> {
      const iterator = response[Symbol.asyncIterator]() as AsyncIterator<Buffer>
      let received = 0
      try {
        for (;;) {
          idle.start()
          const step = await cutoff.race(iterator.next()).catch((error: unknown) => {
            throw failure(error, `broke off ${what} after ${received} bytes`)
          })
          idle.pause()
          if (step.done) break
          received += step.value.length
          if (received > maxBytes) {
            throw new ArchiveDownloadError(`archive storage at ${url.host} sent more than ${formatBytes(maxBytes)} for ${what} (Heroku lists ${info.size} bytes); stopped reading it`, 'limit')
          }
          yield step.value
        }

        if (!response.complete) throw new ArchiveDownloadError(`archive storage at ${url.host} closed the connection ${received} bytes into ${what}, before its end`, 'network')
      } finally {
        cutoff.dispose()
        request.destroy()
      }
    }

    return body()
  }

  /** Where a storage redirect leads, if it may be followed: at most maxRedirects, http(s) only, never down from https. */
  function redirectTarget(from: URL, location: string | undefined, redirects: number, what: string): URL {
    const refuse = (why: string) => new ArchiveDownloadError(`archive storage at ${from.host} redirected ${what} ${why}; not followed`, 'redirect')
    if (redirects >= settings.maxRedirects) throw refuse(`more than ${settings.maxRedirects} times`)
    let target: URL
    try {
      target = new URL(location ?? '', from)
    } catch {
      throw refuse('to an address that is not a URL')
    }
    if (location === undefined || location === '') throw refuse('without saying where (no Location)')
    if (target.protocol !== 'https:' && target.protocol !== 'http:') throw refuse(`to a "${quoted(target.protocol, 20)}" address`)
    if (from.protocol === 'https:' && target.protocol === 'http:') throw refuse('from https to plain http')
    if (target.username || target.password) throw refuse('to an address carrying a user name or password')
    // A redirect to more storage is pre-signed too.
    registerSecret(target.href)
    return target
  }

  return {listArchives, getArchive, openDownload}
}
