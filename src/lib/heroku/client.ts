import ky, {type KyInstance} from 'ky'

import type {EventFilters} from '../config.js'
import {redact, registerSecret} from '../secrets.js'
import {oneLine} from '../text.js'
import {HerokuApiError, describeHttpFailure} from './errors.js'
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
  lowRateLimit: 100,
  lowRatePaceMs: 800,
} as const

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

  /** One request for one page; throws Transient for what may be retried. */
  async function attempt(day: string, range: string, signal: AbortSignal, timeoutMs: number, pageNumber: number) {
    const timeout = new AbortController()
    const timer = setTimeout(() => timeout.abort(), timeoutMs)
    const combined = AbortSignal.any([signal, timeout.signal])
    const classify = (error: unknown): never => {
      if (signal.aborted) throw new HerokuApiError(`fetching ${day} was cancelled`, 'aborted')
      if (timeout.signal.aborted) {
        throw new Transient(new HerokuApiError(`Heroku API did not answer page ${pageNumber} of ${day} within ${timeoutMs / 1000} s`, 'timeout'))
      }

      throw new Transient(new HerokuApiError(`could not reach the Heroku API at ${apiHost}: ${networkReason(error)}`, 'network'))
    }

    try {
      const response = await http.get(path, {searchParams: searchParams(day), headers: {Range: range}, signal: combined}).catch(classify)
      const header = (name: string) => response.headers.get(name) ?? undefined
      const requestId = header('request-id')
      const remaining = header('ratelimit-remaining')
      const rateLimitRemaining = remaining !== undefined && /^\d+$/.test(remaining) ? Number(remaining) : undefined
      const warning = header('x-heroku-warning')
      if (warning) notify({kind: 'warning', message: oneLine(redact(warning))})
      // The bytes themselves: JSON lines can be cut from them (see AuditPage.body).
      const body = Buffer.from(await response.arrayBuffer().catch(classify))
      const text = bodyText(body)

      if (response.status !== 200 && response.status !== 206) {
        const body = parseErrorBody(text)
        const failure = new HerokuApiError(redact(describeHttpFailure(response.status, body, requestId)), 'http', {
          status: response.status,
          errorId: body.id,
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
    }
  }

  async function* fetchDay(day: string, fetchOptions: FetchDayOptions = {}): AsyncGenerator<AuditPage> {
    const deadline = now() + settings.totalTimeoutMs
    const total = new AbortController()
    const totalTimer = setTimeout(() => total.abort(), settings.totalTimeoutMs)
    // Aborts a page fetched ahead when the consumer stops early.
    const leave = new AbortController()
    const signal = AbortSignal.any([total.signal, leave.signal, ...(fetchOptions.signal ? [fetchOptions.signal] : [])])
    const seenRanges = new Set<string>()
    let range = `id ..; max=${settings.pageSize};`
    let lastRemaining: number | undefined

    const totalTimeout = () =>
      new HerokuApiError(`fetching ${day} took longer than the total timeout of ${settings.totalTimeoutMs / 1000} s`, 'timeout')
    // Waits, translating an abort into the right failure.
    const wait = async (ms: number) => {
      try {
        await sleep(ms, signal)
      } catch {
        if (fetchOptions.signal?.aborted) throw new HerokuApiError(`fetching ${day} was cancelled`, 'aborted')
        throw totalTimeout()
      }
    }

    /** One page, with every retry, wait and slow-down it needs. */
    const fetchPage = async (pageRange: string, pageNumber: number) => {
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
            if (error instanceof HerokuApiError && error.kind === 'aborted' && !fetchOptions.signal?.aborted) throw totalTimeout()
            throw error
          }

          const failure = error.failure
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

    let pending = fetchPage(range, 1)
    try {
      for (let pageNumber = 1; ; pageNumber++) {
        const page = await pending
        const current: AuditPage = {events: page.events, body: page.body, number: pageNumber, requestId: page.requestId, rateLimitRemaining: page.rateLimitRemaining}
        if (page.nextRange === undefined) {
          yield current
          return
        }

        // Next-Range is opaque; a value seen before would page forever.
        if (page.nextRange === range || seenRanges.has(page.nextRange)) {
          yield current
          throw new HerokuApiError(
            `Heroku API repeated the paging range after page ${pageNumber} of ${day}; stopped rather than loop${page.requestId ? ` (Request-Id ${page.requestId})` : ''}`,
            'paging',
            {requestId: page.requestId},
          )
        }

        seenRanges.add(range)
        range = page.nextRange
        // Ask for the next page while the consumer handles this one, so network and CPU overlap.
        pending = fetchPage(range, pageNumber + 1)
        pending.catch(() => {}) // its failure surfaces at the await above, or not at all if we leave
        yield current
      }
    } finally {
      // A reason made once: the default one is a DOMException, with a stack, for every day.
      leave.abort(LEFT)
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

function parseErrorBody(text: string): {id?: string; message?: string} {
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
  return redact(oneLine(String(reason), 200))
}

function withoutUndefined<T extends object>(object: T): Partial<T> {
  return Object.fromEntries(Object.entries(object).filter(([, value]) => value !== undefined)) as Partial<T>
}
