import type {SinkConfig} from '../config.js'
import {answerStart, networkCause} from '../http-answer.js'
import {redact} from '../secrets.js'
import {oneLine} from '../text.js'
import {authorization, contentType} from './sink-batch.js'

/** What became of one batch after the tries this run allows. */
export type PostOutcome =
  | {kind: 'accepted'; status: number}
  /** 413: the intake wants smaller requests. */
  | {kind: 'too-large'; message: string}
  /** Any other 4xx (or a redirect): trying again would get the same answer. */
  | {kind: 'rejected'; message: string}
  /** 429, 5xx, timeouts, network errors, still failing after the last try (or asked to wait longer than a run waits). */
  | {kind: 'unavailable'; message: string}

export interface RetryPolicy {
  /** Tries per batch in one run. */
  attempts: number
  /** First wait between tries, doubled each time (with jitter) up to maxWaitMs. */
  baseWaitMs: number
  /** The longest wait, Retry-After included: a longer Retry-After ends the run's delivery instead. */
  maxWaitMs: number
}

export const DEFAULT_RETRY: RetryPolicy = {attempts: 5, baseWaitMs: 1000, maxWaitMs: 60_000}

/** The most bytes of an answer's body read, for its message. */
const MAX_ANSWER_BYTES = 4096

export interface PostDeps {
  userAgent: string
  /** Waits between tries (aborted by `signal`). */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>
  /** Told of each failed try before the wait, e.g. to renew the sink's lease and log it. */
  onRetry?: (message: string, waitMs: number, attempt: number) => Promise<void>
  random?: () => number
}

function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason)
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    const onAbort = () => {
      clearTimeout(timer)
      reject(signal?.reason)
    }

    signal?.addEventListener('abort', onAbort, {once: true})
  })
}

/** Retry-After in ms (delta seconds or an HTTP date), or undefined when absent or unreadable. */
export function retryAfterMs(value: string | null, now = Date.now()): number | undefined {
  if (!value) return undefined
  const text = value.trim().slice(0, 64)
  if (/^\d{1,9}$/.test(text)) return Number(text) * 1000
  const date = Date.parse(text)
  return Number.isNaN(date) ? undefined : Math.max(0, date - now)
}

type Try = {ok: true; status: number} | {ok: false; retry: boolean; tooLarge?: boolean; message: string; retryAfterMs?: number}

async function postOnce(sink: SinkConfig, body: Buffer, deps: PostDeps, signal?: AbortSignal): Promise<Try> {
  const headers: Record<string, string> = {'Content-Type': contentType(sink.format), 'User-Agent': deps.userAgent}
  const auth = authorization(sink.format, sink.token)
  if (auth) headers.Authorization = auth
  const timeout = AbortSignal.timeout(sink.timeoutMs)
  let response: Response
  try {
    // No redirects: a credential must not follow one to another host.
    response = await fetch(sink.url, {method: 'POST', headers, body, redirect: 'manual', signal: signal ? AbortSignal.any([signal, timeout]) : timeout})
  } catch (error) {
    if (signal?.aborted) throw signal.reason
    const why = timeout.aborted ? `no answer within ${sink.timeoutMs / 1000} s` : `could not connect (${networkCause(error)})`
    return {ok: false, retry: true, message: why}
  }

  if (response.status >= 200 && response.status < 300) {
    await response.body?.cancel().catch(() => {})
    return {ok: true, status: response.status}
  }

  const excerpt = oneLine(redact(await answerStart(response, MAX_ANSWER_BYTES)), 200)
  const message = `HTTP ${response.status}${excerpt ? `: ${excerpt}` : ''}`
  if (response.status === 429 || response.status === 408 || response.status >= 500) {
    return {ok: false, retry: true, message, retryAfterMs: retryAfterMs(response.headers.get('retry-after'))}
  }

  if (response.status >= 300 && response.status < 400) {
    return {ok: false, retry: false, message: `${message} (a redirect: set SINK_URL to the address it names)`}
  }

  return {ok: false, retry: false, tooLarge: response.status === 413, message}
}

/**
 * POSTs one batch: 429, 5xx, 408, timeouts and network errors are tried again after a wait
 * (Retry-After when the intake gives one, else exponential backoff with jitter), up to the
 * policy's tries; any other answer decides at once.
 */
export async function postBatch(sink: SinkConfig, body: Buffer, deps: PostDeps, policy: RetryPolicy = DEFAULT_RETRY, signal?: AbortSignal): Promise<PostOutcome> {
  const sleep = deps.sleep ?? abortableSleep
  const random = deps.random ?? Math.random
  for (let attempt = 1; ; attempt++) {
    const outcome = await postOnce(sink, body, deps, signal)
    if (outcome.ok) return {kind: 'accepted', status: outcome.status}
    if (!outcome.retry) return {kind: outcome.tooLarge ? 'too-large' : 'rejected', message: outcome.message}
    if (attempt >= policy.attempts) return {kind: 'unavailable', message: `${outcome.message} (${attempt} tries)`}
    if (outcome.retryAfterMs !== undefined && outcome.retryAfterMs > policy.maxWaitMs) {
      return {kind: 'unavailable', message: `${outcome.message}; it asked to wait ${Math.ceil(outcome.retryAfterMs / 1000)} s, longer than a run waits`}
    }

    const backoff = Math.min(policy.maxWaitMs, policy.baseWaitMs * 2 ** (attempt - 1))
    const waitMs = outcome.retryAfterMs ?? Math.round(backoff / 2 + (random() * backoff) / 2)
    await deps.onRetry?.(outcome.message, waitMs, attempt)
    await sleep(waitMs, signal)
  }
}
