import {redact} from '../secrets.js'
import {oneLine} from '../text.js'

/**
 * Why a fetch from the Heroku API failed. `malformed` means the API answered something we cannot
 * trust (the day ends ERROR); every other kind means the API could not give us the day (FAILED),
 * `limit` included: the answer passed a bound this run keeps (page bytes, pages per day), as a
 * timeout is one on time.
 */
export type HerokuFailureKind = 'http' | 'network' | 'timeout' | 'malformed' | 'paging' | 'limit' | 'aborted' | 'wait-too-long'

/** A failure mapped to a safe, readable message: status, Heroku's error id, Request-Id; never the token. */
export class HerokuApiError extends Error {
  constructor(
    message: string,
    readonly kind: HerokuFailureKind,
    readonly details: {status?: number; errorId?: string; requestId?: string; attempts?: number} = {},
  ) {
    super(message)
    this.name = 'HerokuApiError'
  }
}

/** How much of what a server says is quoted in a message: an error id, a Request-Id… */
export const QUOTE_SHORT = 100
/** …and an error message, a warning, a network reason. */
export const QUOTE_LONG = 300

/**
 * Longer than anything redact() masks (a registered secret, or a URL's user:password@), so one cut
 * short at the end of what is scanned, and so left unmasked, is dropped whole.
 */
const SECRET_MARGIN = 2048

/**
 * What a server said, made safe to print and store: secrets masked, on one line with control
 * characters escaped, at most `max` characters. Only the start is looked at, so a megabyte of
 * text costs no more than a short one downstream (the logger measures every character of a line).
 */
export function quoted(value: string | null | undefined, max: number): string {
  if (!value) return ''
  const scanned = max * 2 + 2 * SECRET_MARGIN
  if (value.length <= scanned) return oneLine(redact(value), max)
  // A secret that straddles the cut escapes redaction: drop the margin where it would be.
  const masked = redact(value.slice(0, scanned))
  return oneLine(`${masked.slice(0, masked.length - SECRET_MARGIN)}…`, max)
}

/** What to tell the operator for the 4xx errors Heroku documents. */
const ADVICE: Record<number, string> = {
  400: 'the request was refused as malformed',
  401: 'the API token is missing, invalid or expired: set HEROKU_API_TOKEN to a valid token',
  402: 'the account is delinquent: settle its billing',
  403: "the token's user must be an Enterprise Admin of the account",
  404: 'HEROKU_ACCOUNT_ID is wrong or not an enterprise account',
  406: 'the API refused our Accept header (a bug in audit-logger)',
  416: 'the API refused the paging Range',
  422: 'the API refused the request parameters',
  429: 'the account reached the API rate limit',
}

/**
 * Answers about the token or the account rather than the day asked for, so every other day would
 * get the same one: 401 (token), 402 (billing), 403 (not an Enterprise Admin), 404 (the path
 * names nothing but the account).
 */
const ACCOUNT_WIDE = new Set([401, 402, 403, 404])

/** For an answer that concerns the whole account (see ACCOUNT_WIDE): what it was and what to fix; else undefined. */
export function accountProblem(error: unknown): string | undefined {
  if (!(error instanceof HerokuApiError) || error.kind !== 'http') return undefined
  const {status, errorId} = error.details
  if (status === undefined || !ACCOUNT_WIDE.has(status)) return undefined
  return `Heroku API answered ${status}${errorId ? ` ${errorId}` : ''}: ${ADVICE[status]}`
}

/**
 * The message of an HTTP failure. `body` and `requestId` come from the server: they are quoted
 * (bounded, flattened) here, so no caller can pass them on raw.
 */
export function describeHttpFailure(status: number, body: {id?: string; message?: string}, requestId?: string): string {
  const id = quoted(body.id, QUOTE_SHORT)
  const parts = [`Heroku API answered ${status}${id ? ` ${id}` : ''}`]
  if (body.message) parts[0] += `: ${quoted(body.message, QUOTE_LONG)}`
  const advice = ADVICE[status] ?? (status >= 500 ? 'Heroku had a server error' : undefined)
  if (advice) parts.push(advice)
  if (requestId) parts.push(`Request-Id ${quoted(requestId, QUOTE_SHORT)}`)
  return parts.join('; ')
}
