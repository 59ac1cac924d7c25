import {oneLine} from '../text.js'

/**
 * Why a fetch from the Heroku API failed. `malformed` means the API answered something we cannot
 * trust (the day ends ERROR); every other kind means the API could not give us the day (FAILED).
 */
export type HerokuFailureKind = 'http' | 'network' | 'timeout' | 'malformed' | 'paging' | 'aborted' | 'wait-too-long'

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

export function describeHttpFailure(status: number, body: {id?: string; message?: string}, requestId?: string): string {
  const parts = [`Heroku API answered ${status}${body.id ? ` ${body.id}` : ''}`]
  if (body.message) parts[0] += `: ${oneLine(body.message)}`
  const advice = ADVICE[status] ?? (status >= 500 ? 'Heroku had a server error' : undefined)
  if (advice) parts.push(advice)
  if (requestId) parts.push(`Request-Id ${requestId}`)
  return parts.join('; ')
}
