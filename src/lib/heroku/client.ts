import ky, {type KyInstance} from 'ky'

import type {EventFilters} from '../config.js'
import {registerSecret} from '../secrets.js'
import {HerokuApiError, QUOTE_LONG, QUOTE_SHORT, describeHttpFailure, quoted} from './errors.js'
import type {AuditEvent, AuditPage} from './types.js'

export interface AuditClientOptions {
  apiUrl: string
  token: string
  accountId: string
  filters?: EventFilters
  userAgent?: string
  /** The API version in the Accept header; Heroku's enterprise plugin uses `3.audit-trail`. */
  apiVersion?: string
  /** Events asked for per page (Heroku's maximum is 1000). */
  pageSize?: number
  /** Tries per request, the first included, for 429, 5xx, network errors and timeouts. */
  maxAttempts?: number
  baseDelayMs?: number
  maxDelayMs?: number
  /** A Retry-After longer than this fails the day at once instead of sleeping it out. */
  retryAfterCapMs?: number
  /** Covers one request: connecting, headers and the whole body. */
  attemptTimeoutMs?: number
  /** Covers the whole day: every page, retry and wait. */
  totalTimeoutMs?: number
  /**
   * The most bytes one page may hold once decoded (gzip undone): reading stops as soon as a body
   * passes it, and the day fails. Bounds the memory a page can take, whatever the server sends.
   */
  maxPageBytes?: number
  /** The most pages one day may take; a server still paging after that fails the day. */
  maxPages?: number
  /** When RateLimit-Remaining falls to this, requests are spaced out by `lowRatePaceMs`. */
  lowRateLimit?: number
  /** About the pool's refill interval (75 tokens a minute). */
  lowRatePaceMs?: number
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>
  random?: () => number
  now?: () => number
  /** Told about each retry and each slow-down, for diagnostics. */
  onNotice?: (notice: ClientNotice) => void
}

export type ClientNotice =
  | {kind: 'retry'; attempt: number; waitMs: number; reason: string}
  | {kind: 'slow-down'; waitMs: number; rateLimitRemaining: number}
  | {kind: 'warning'; message: string}

export interface FetchDayOptions {
  signal?: AbortSignal
}

export interface AuditClient {
  /** Yields every page of one UTC day's events, oldest first, until the last page. */
  fetchDay(day: string, options?: FetchDayOptions): AsyncGenerator<AuditPage>
}

export const DEFAULTS = {
  apiVersion: '3',
  pageSize: 1000,
  maxAttempts: 5,
  baseDelayMs: 1000,
  maxDelayMs: 30_000,
  retryAfterCapMs: 120_000,
  attemptTimeoutMs: 30_000,
  totalTimeoutMs: 15 * 60_000,
  // A real page of 1000 events is 0.5–1 MB; 32 MiB is 30–60 times that (an average of 32 KB an
  // event over a full page) and keeps a page's peak memory (bytes, text, parsed objects) in the
  // low hundreds of MB.
  maxPageBytes: 32 * 1024 * 1024,
  // 1,000,000 events at 1000 a page: far above any real account's day.
  maxPages: 1000,
  lowRateLimit: 100,
  lowRatePaceMs: 800,
} as const

/** An error body is read for its id and message only; past this it is ignored, and the status speaks alone. */
const MAX_ERROR_BODY_BYTES = 64 * 1024

/** Sleeps, but wakes with the signal's reason as soon as it aborts. */
export function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason)
      return
    }

    const onAbort = () => {
      clearTimeout(timer)
      reject(signal?.reason)
    }

    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    signal?.addEventListener('abort', onAbort, {once: true})
  })
}

/** Retry-After as milliseconds: either delta-seconds or an HTTP date. */
export function parseRetryAfter(value: string | null, now: number): number | undefined {
  if (value === null || value.trim() === '') return undefined
  const trimmed = value.trim()
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000
  // An HTTP date names a weekday and a month; Date.parse would also take "1.5" or "-1" as years.
  if (!/[a-z]/i.test(trimmed)) return undefined
  const date = Date.parse(trimmed)
  if (Number.isNaN(date)) return undefined
  return Math.max(0, date - now)
}

function isAuditEvent(value: unknown): value is AuditEvent {
  if (typeof value !== 'object' || value === null) return false
  const event = value as Record<string, unknown>
  return (
    typeof event.id === 'string' &&
    typeof event.type === 'string' &&
    typeof event.action === 'string' &&
    typeof event.created_at === 'string'
  )
}

/** Why a day's page fetched ahead is abandoned: its consumer stopped (the day ended or failed). */
const LEFT = new Error('the day was left before this page was needed')

/** The body as text, as fetch's text() reads it: UTF-8, a leading byte-order mark dropped. */
function bodyText(body: Buffer): string {
  const bom = body.length >= 3 && body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf
  return body.toString('utf8', bom ? 3 : 0)
}

/** A retryable outcome of one attempt: why, and how long the server asked us to wait. */
class Transient extends Error {
  constructor(
    readonly failure: HerokuApiError,
    readonly retryAfterMs?: number,
  ) {
    super(failure.message)
  }
}

/** A body that passed its cap: reading stopped there. */
class BodyTooLarge extends Error {}

/**
 * One read of a body that settles as soon as `signal` aborts, whatever the stream does. The abort
 * is listened for per read and let go once the read settles: one promise waiting for the whole
 * body would keep every settled read, and so every chunk, until the body ends.
 */
function readOrAbort(reader: ReadableStreamDefaultReader<Uint8Array>, signal: AbortSignal): ReturnType<typeof reader.read> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason)
      return
    }

    const onAbort = () => reject(signal.reason)
    signal.addEventListener('abort', onAbort, {once: true})
    reader.read().then(
      (result) => {
        signal.removeEventListener('abort', onAbort)
        resolve(result)
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort)
        reject(error)
      },
    )
  })
}

/**
 * Reads a body to its end, or stops as soon as `signal` aborts or the decoded bytes pass
 * `maxBytes`, cancelling the stream (which closes the connection), so a page costs at most its cap
 * in memory and never waits past the abort. Each read races the abort itself: fetch's own abort
 * does not reliably reach a body read, as undici holds the request's controller weakly; after a
 * garbage collection the abort is lost and the read would wait out undici's five-minute body timeout.
 */
async function readBody(body: ReadableStream<Uint8Array> | null, maxBytes: number, signal: AbortSignal): Promise<Buffer> {
  if (body === null) return Buffer.alloc(0)
  const reader = body.getReader()
  const cancel = () => {
    reader.cancel().catch(() => {})
  }

  signal.addEventListener('abort', cancel, {once: true})
  const chunks: Uint8Array[] = []
  let size = 0
  try {
    for (;;) {
      const {done, value} = await readOrAbort(reader, signal)
      // A stream cancelled by the abort also reads as done: its end was never reached.
      if (signal.aborted) throw signal.reason
      if (done) break
      size += value.byteLength
      if (size > maxBytes) throw new BodyTooLarge()
      chunks.push(value)
    }
  } catch (error) {
    cancel()
    throw error
  } finally {
    signal.removeEventListener('abort', cancel)
  }

  return Buffer.concat(chunks, size)
}

/** 33554432 → "32 MiB", for messages about the byte cap. */
export function formatBytes(bytes: number): string {
  const mib = bytes / (1024 * 1024)
  if (mib >= 1) return `${Number.isInteger(mib) ? mib : mib.toFixed(1)} MiB`
  return `${bytes} bytes`
}

export function createAuditClient(options: AuditClientOptions): AuditClient {
  const settings = {...DEFAULTS, ...withoutUndefined(options)}
  const sleep = options.sleep ?? abortableSleep
  const random = options.random ?? Math.random
  const now = options.now ?? Date.now
  const notify = options.onNotice ?? (() => {})
  const apiHost = new URL(options.apiUrl).host
  // Redaction must not depend on the caller: a proxy could echo the token back in a body or header.
  registerSecret(options.token)

  const base = new URL(options.apiUrl)
  if (base.protocol !== 'https:' && base.protocol !== 'http:') throw new Error(`HEROKU_API_URL must be an http(s) URL, got ${base.protocol}`)
  const http: KyInstance = ky.create({
    prefixUrl: options.apiUrl,
    headers: {
      Accept: `application/vnd.heroku+json; version=${settings.apiVersion}`,
      // A day's JSON shrinks about tenfold; fetch undoes the encoding.
      'Accept-Encoding': 'gzip, deflate',
      Authorization: `Bearer ${options.token}`,
      'User-Agent': options.userAgent ?? 'audit-logger',
    },
    retry: 0,
    timeout: false,
    throwHttpErrors: false,
    // A redirect is answered as the failure it is: following it would carry the token elsewhere.
    redirect: 'manual',
  })

  const path = `enterprise-accounts/${encodeURIComponent(options.accountId)}/events`

  function searchParams(day: string): Record<string, string> {
    const params: Record<string, string> = {day, order: 'asc'}
    const filters = options.filters ?? {}
    if (filters.type) params.type = filters.type
    if (filters.action) params.action = filters.action
    if (filters.actorEmail) params.actor = filters.actorEmail
    return params
  }

  /**
   * One request for one page, its body included; throws Transient for what may be retried.
   * `range` undefined sends no Range header.
   */
  async function attempt(day: string, range: string | undefined, stop: AbortSignal, timeoutMs: number, pageNumber: number) {
    const cancelled = () => new HerokuApiError(`fetching ${day} was cancelled`, 'aborted')
    if (stop.aborted) throw cancelled()
    // The attempt's own controller, held by this frame until it ends and aborted explicitly by its
    // timer or the day's stop; every wait below (the headers, each read of the body) races its abort.
    const cut = new AbortController()
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      cut.abort()
    }, timeoutMs)
    const onStop = () => cut.abort()
    stop.addEventListener('abort', onStop, {once: true})
    const aborted = new Promise<never>((_resolve, reject) => {
      cut.signal.addEventListener('abort', () => reject(cut.signal.reason), {once: true})
    })
    aborted.catch(() => {})
    const classify = (error: unknown): never => {
      if (stop.aborted) throw cancelled()
      if (timedOut) {
        throw new Transient(new HerokuApiError(`Heroku API did not answer page ${pageNumber} of ${day} within ${timeoutMs / 1000} s`, 'timeout'))
      }

      throw new Transient(new HerokuApiError(`could not reach the Heroku API at ${apiHost}: ${networkReason(error)}`, 'network'))
    }

    try {
      const request = http.get(path, {searchParams: searchParams(day), headers: range === undefined ? {} : {Range: range}, signal: cut.signal})
      // A response that comes after this attempt gave up is never read: cancelling it closes the connection.
      request.then(
        (late) => {
          if (cut.signal.aborted) late.body?.cancel().catch(() => {})
        },
        () => {},
      )
      const response = await Promise.race([request, aborted]).catch(classify)
      const header = (name: string) => response.headers.get(name) ?? undefined
      // What the server says is quoted (bounded, flattened) as it arrives, before any message holds it.
      const requestId = quoted(header('request-id'), QUOTE_SHORT) || undefined
      const remaining = header('ratelimit-remaining')
      const rateLimitRemaining = remaining !== undefined && /^\d+$/.test(remaining) ? Number(remaining) : undefined
      const warning = header('x-heroku-warning')
      if (warning) notify({kind: 'warning', message: quoted(warning, QUOTE_LONG)})
      const ok = response.status === 200 || response.status === 206
      // The bytes themselves: JSON lines can be cut from them (see AuditPage.body).
      let body: Buffer
      try {
        body = await readBody(response.body, ok ? settings.maxPageBytes : MAX_ERROR_BODY_BYTES, cut.signal)
      } catch (error) {
        if (!(error instanceof BodyTooLarge)) return classify(error)
        if (ok) {
          throw new HerokuApiError(
            `Heroku API sent more than ${formatBytes(settings.maxPageBytes)} for page ${pageNumber} of ${day}${requestId ? ` (Request-Id ${requestId})` : ''}; ` +
              'stopped reading it: a real page of 1000 events is about 1 MB (if this day really is that big, raise HEROKU_API_MAX_PAGE_BYTES)',
            'limit',
            {requestId},
          )
        }

        // No Heroku error body is that big: the status speaks alone.
        body = Buffer.alloc(0)
      }

      const text = bodyText(body)
      if (!ok) {
        const errorBody = parseErrorBody(text)
        const failure = new HerokuApiError(describeHttpFailure(response.status, errorBody, requestId), 'http', {
          status: response.status,
          errorId: quoted(errorBody.id, QUOTE_SHORT) || undefined,
          requestId,
        })
        if (response.status === 429 || response.status >= 500) {
          throw new Transient(failure, parseRetryAfter(header('retry-after') ?? null, now()))
        }

        throw failure
      }

      return {
        events: parseEvents(text, day, pageNumber, requestId),
        body,
        nextRange: header('next-range'),
        requestId,
        rateLimitRemaining,
      }
    } finally {
      clearTimeout(timer)
      stop.removeEventListener('abort', onStop)
    }
  }

  async function* fetchDay(day: string, fetchOptions: FetchDayOptions = {}): AsyncGenerator<AuditPage> {
    const deadline = now() + settings.totalTimeoutMs
    // The day's own controller, aborted explicitly by the total timeout, the caller's signal or the
    // consumer leaving (never linked through AbortSignal.any, whose links the garbage collector may drop).
    const stop = new AbortController()
    const totalTimer = setTimeout(() => stop.abort(), settings.totalTimeoutMs)
    const caller = fetchOptions.signal
    const onCallerAbort = () => stop.abort()
    if (caller?.aborted) stop.abort()
    else caller?.addEventListener('abort', onCallerAbort, {once: true})
    const signal = stop.signal
    const seenRanges = new Set<string>()
    let range: string | undefined = `id ..; max=${settings.pageSize};`
    let lastRemaining: number | undefined

    const totalTimeout = () =>
      new HerokuApiError(`fetching ${day} took longer than the total timeout of ${settings.totalTimeoutMs / 1000} s`, 'timeout')
    // Waits, translating an abort into the right failure.
    const wait = async (ms: number) => {
      try {
        await sleep(ms, signal)
      } catch {
        if (caller?.aborted) throw new HerokuApiError(`fetching ${day} was cancelled`, 'aborted')
        throw totalTimeout()
      }
    }

    /** One page, with every retry, wait and slow-down it needs. */
    const fetchPage = async (pageRange: string | undefined, pageNumber: number) => {
      for (let attemptNumber = 1; ; attemptNumber++) {
        // Slow down before the shared pool runs dry, not after: other tools use it too.
        if (lastRemaining !== undefined && lastRemaining <= settings.lowRateLimit) {
          notify({kind: 'slow-down', waitMs: settings.lowRatePaceMs, rateLimitRemaining: lastRemaining})
          await wait(settings.lowRatePaceMs)
        }

        const left = deadline - now()
        if (left <= 0) throw totalTimeout()
        try {
          const page = await attempt(day, pageRange, signal, Math.min(settings.attemptTimeoutMs, left), pageNumber)
          lastRemaining = page.rateLimitRemaining
          return page
        } catch (error) {
          if (!(error instanceof Transient)) {
            if (error instanceof HerokuApiError && error.kind === 'aborted' && !caller?.aborted) throw totalTimeout()
            throw error
          }

          const failure = error.failure
          // An attempt cut short by the day's deadline timed out because the day did: say so.
          if (failure.kind === 'timeout' && left < settings.attemptTimeoutMs) throw totalTimeout()
          if (error.retryAfterMs !== undefined && error.retryAfterMs > settings.retryAfterCapMs) {
            throw new HerokuApiError(
              `${failure.message}; it asked to wait ${Math.ceil(error.retryAfterMs / 1000)} s, more than the ${settings.retryAfterCapMs / 1000} s this run will wait: run again later`,
              'wait-too-long',
              {...failure.details, attempts: attemptNumber},
            )
          }

          if (attemptNumber >= settings.maxAttempts) {
            throw new HerokuApiError(`${failure.message} (gave up after ${attemptNumber} attempts)`, failure.kind, {
              ...failure.details,
              attempts: attemptNumber,
            })
          }

          const waitMs = error.retryAfterMs ?? backoff(attemptNumber)
          if (now() + waitMs >= deadline) {
            throw new HerokuApiError(`${failure.message}; no time left to retry within the total timeout of ${settings.totalTimeoutMs / 1000} s`, 'timeout', {
              ...failure.details,
              attempts: attemptNumber,
            })
          }

          notify({kind: 'retry', attempt: attemptNumber, waitMs, reason: failure.message})
          // The retry wait already spaces this request out; no extra pacing on top.
          lastRemaining = undefined
          await wait(waitMs)
        }
      }
    }

    /**
     * The first page. The events link declares no Range, so an API may refuse ours (416): then
     * the day is asked for once more without one, and a plain 200 array is the whole day.
     */
    const firstPage = async () => {
      try {
        return await fetchPage(range, 1)
      } catch (error) {
        if (!(error instanceof HerokuApiError && error.kind === 'http' && error.details.status === 416)) throw error
        notify({kind: 'retry', attempt: 1, waitMs: 0, reason: `${error.message}; asking once more without a Range header`})
        range = undefined
        return fetchPage(undefined, 1)
      }
    }

    let pending = firstPage()
    try {
      for (let pageNumber = 1; ; pageNumber++) {
        const page = await pending
        const current: AuditPage = {events: page.events, body: page.body, number: pageNumber, requestId: page.requestId, rateLimitRemaining: page.rateLimitRemaining}
        if (page.nextRange === undefined) {
          yield current
          return
        }

        const requestId = page.requestId ? ` (Request-Id ${page.requestId})` : ''
        // A page with more to come holds at most what was asked for: a server that ignores the page
        // size while paging would make every bound on the day (pages × events) meaningless.
        if (page.events.length > settings.pageSize) {
          throw new HerokuApiError(
            `Heroku API sent ${page.events.length} events on page ${pageNumber} of ${day}, more than the ${settings.pageSize} a page holds, and said more were to come (Next-Range)${requestId}; stopped rather than trust it`,
            'malformed',
            {requestId: page.requestId},
          )
        }

        // Next-Range is opaque; a value seen before would page forever.
        if (page.nextRange === range || seenRanges.has(page.nextRange)) {
          yield current
          throw new HerokuApiError(`Heroku API repeated the paging range after page ${pageNumber} of ${day}; stopped rather than loop${requestId}`, 'paging', {
            requestId: page.requestId,
          })
        }

        // A server that invents a new Next-Range each time would page forever too.
        if (pageNumber >= settings.maxPages) {
          yield current
          throw new HerokuApiError(
            `Heroku API still had more after ${settings.maxPages} pages of ${day}, the most one day may take (${settings.maxPages * settings.pageSize} events at ${settings.pageSize} a page)${requestId}; stopped rather than page on`,
            'limit',
            {requestId: page.requestId},
          )
        }

        if (range !== undefined) seenRanges.add(range)
        range = page.nextRange
        // Ask for the next page while the consumer handles this one, so network and CPU overlap.
        pending = fetchPage(range, pageNumber + 1)
        pending.catch(() => {}) // its failure surfaces at the await above, or not at all if we leave
        yield current
      }
    } finally {
      caller?.removeEventListener('abort', onCallerAbort)
      // A reason made once: the default one is a DOMException, with a stack, for every day.
      stop.abort(LEFT)
      clearTimeout(totalTimer)
    }
  }

  /** Exponential backoff with "equal jitter" (half fixed, half random), so retrying clients spread out. */
  function backoff(attemptNumber: number): number {
    const ceiling = Math.min(settings.maxDelayMs, settings.baseDelayMs * 2 ** (attemptNumber - 1))
    return Math.round(ceiling / 2 + (random() * ceiling) / 2)
  }

  return {fetchDay}
}

/** Heroku's error body: its id and message, when it is JSON that holds them. */
export function parseErrorBody(text: string): {id?: string; message?: string} {
  try {
    const body = JSON.parse(text) as unknown
    if (typeof body === 'object' && body !== null) {
      const {id, message} = body as Record<string, unknown>
      return {id: typeof id === 'string' ? id : undefined, message: typeof message === 'string' ? message : undefined}
    }
  } catch {
    // Not JSON: fall through to the status alone.
  }

  return {}
}

function parseEvents(text: string, day: string, pageNumber: number, requestId?: string): AuditEvent[] {
  const where = `page ${pageNumber} of ${day}${requestId ? ` (Request-Id ${requestId})` : ''}`
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    throw new HerokuApiError(`Heroku API sent a malformed response for ${where}: the body is not valid JSON (${text.length} bytes)`, 'malformed', {requestId})
  }

  if (!Array.isArray(body)) {
    throw new HerokuApiError(`Heroku API sent a malformed response for ${where}: expected a JSON array of events, got ${body === null ? 'null' : typeof body}`, 'malformed', {requestId})
  }

  const bad = body.findIndex((event) => !isAuditEvent(event))
  if (bad !== -1) {
    throw new HerokuApiError(`Heroku API sent a malformed response for ${where}: event ${bad + 1} lacks an id, type, action or created_at`, 'malformed', {requestId})
  }

  return body as AuditEvent[]
}

/** The low-level reason of a network failure (ECONNREFUSED, ECONNRESET…), without any header. */
function networkReason(error: unknown): string {
  const {code, message, cause} = (error ?? {}) as {code?: string; message?: string; cause?: {code?: string; message?: string}}
  const reason = code ?? cause?.code ?? cause?.message ?? message ?? String(error)
  return quoted(String(reason), 200)
}

function withoutUndefined<T extends object>(object: T): Partial<T> {
  return Object.fromEntries(Object.entries(object).filter(([, value]) => value !== undefined)) as Partial<T>
}
