/**
 * One POST to a Slack-compatible incoming webhook: `{"text": "…"}`. Bounded: a timeout covers the
 * whole exchange, at most MAX_ANSWER_BYTES of the answer are read, redirects are not followed (the
 * URL's path is the credential), and every word of the answer is made safe before anyone sees it.
 */
import type {AlertWebhook} from '../config.js'
import {answerStart, networkCause} from '../http-answer.js'
import {redact} from '../secrets.js'
import {oneLine} from '../text.js'

/** The most bytes of a webhook's answer read (Slack answers "ok", or a short error code). */
export const MAX_ANSWER_BYTES = 2048

/** `status`: the webhook's HTTP answer, when it gave one. */
export type PostOutcome = {ok: true} | {ok: false; reason: string; status?: number}

/**
 * Slack reads `&`, `<` and `>` as markup (`<!channel>` would notify a whole channel), so text from
 * outside, such as an API's error message, is escaped as Slack asks.
 */
export function escapeSlack(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;')
}

/** POSTs `text`; never throws. A failure's reason is one safe line, naming no part of the URL. */
export async function postToWebhook(webhook: AlertWebhook, text: string, options: {timeoutMs: number; signal?: AbortSignal}): Promise<PostOutcome> {
  const timeout = AbortSignal.timeout(options.timeoutMs)
  const signal = options.signal ? AbortSignal.any([timeout, options.signal]) : timeout
  try {
    const response = await fetch(webhook.url, {
      method: 'POST',
      headers: {'content-type': 'application/json; charset=utf-8', accept: 'text/plain, application/json'},
      body: JSON.stringify({text: escapeSlack(text)}),
      redirect: 'manual',
      signal,
    })
    const answer = await answerStart(response, MAX_ANSWER_BYTES)
    if (response.status >= 200 && response.status < 300) return {ok: true}
    const said = answer.trim() ? `: ${oneLine(redact(answer), 200)}` : ''
    const redirect = response.status >= 300 && response.status < 400 ? ' (a redirect, not followed)' : ''
    return {ok: false, reason: `answered HTTP ${response.status}${redirect}${said}`, status: response.status}
  } catch (error) {
    if (timeout.aborted) return {ok: false, reason: `did not answer within ${options.timeoutMs / 1000} s`}
    if (options.signal?.aborted) return {ok: false, reason: 'stopped before it answered'}
    return {ok: false, reason: `could not be reached (${networkCause(error)})`}
  }
}
