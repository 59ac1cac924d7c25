/**
 * Alerts: short messages for a Slack-compatible incoming webhook (ALERT_WEBHOOK_URL), kept in
 * `audit_alerts` until the webhook takes them, so one that cannot be sent now is sent by the next
 * run (`process`, `serve`'s timer, `deliver`). Alerts only report: they never decide a day's
 * status or a run's exit code.
 *
 * Each alert has a unique key, `<kind>:<subject>[:<occurrence>]`; raising a key that exists does
 * nothing, which is what makes each alert announced once however many runs see its cause:
 *
 * | kind              | key                                   | raised by |
 * |-------------------|---------------------------------------|-----------|
 * | day-failed        | `day-failed:<day>:<attempt>`          | `process`, once per failed attempt of a day |
 * | day-recovered     | `day-recovered:<day>:<attempt>`       | `process`, when a FAILED/ERROR day ends SUCCESS |
 * | yesterday-missing | `yesterday-missing:<day>`             | `process` and `serve`, past HEALTH_REQUIRE_YESTERDAY_AFTER |
 * | sink-stopped      | `sink-stopped:<sink name>:<iso time>` | delivery, when a sink answers a 4xx and is stopped |
 * | late-events       | `late-events:<day>:<events count>`    | `process --catch-up`, when a settle re-read finds late or vanished events |
 * | archive-mismatch  | `archive-mismatch:<month>:<digest>`   | archive checks (`process --catch-up`, `archives verify`/`import`): a mismatch or a failed checksum, once per archive file |
 *
 * Nothing is recorded while ALERT_WEBHOOK_URL is unset: an unset webhook does not fill a table
 * with messages nobody will read, and setting it later does not replay old news.
 */
import {type Kysely, sql} from 'kysely'

import type {AlertWebhook, AlertsConfig} from '../config.js'
import {findDay} from '../db/audit-log-repository.js'
import type {Database, ProcessStatus} from '../db/schema.js'
import {yesterdayUtc} from '../dates.js'
import type {Logger} from '../logger.js'
import {redact, safeErrorMessage} from '../secrets.js'
import {oneLine} from '../text.js'
import {postToWebhook} from './webhook.js'

/** The most characters of one alert's text (Slack shows up to ~4,000 in one message comfortably). */
export const MAX_ALERT_TEXT = 2000
/** The most characters of a key. */
export const MAX_ALERT_KEY = 300
/** The most messages one flush posts, the "…and N more" summary included. */
export const DEFAULT_MAX_MESSAGES = 10
/** Per webhook request, the answer's body included. */
export const DEFAULT_ALERT_TIMEOUT_MS = 10_000
/** The most pending alerts one flush takes on: any beyond wait for the next. */
const MAX_LEASED = 1000
/** The most characters of the summary message. */
const MAX_SUMMARY_TEXT = 3500

/** Keys of the alerts this tool raises (see the table above). */
export const ALERT_KEYS = {
  dayFailed: (day: string, attempt: number) => `day-failed:${day}:${attempt}`,
  dayRecovered: (day: string, attempt: number) => `day-recovered:${day}:${attempt}`,
  yesterdayMissing: (day: string) => `yesterday-missing:${day}`,
  sinkStopped: (sink: string, at: Date) => `sink-stopped:${sink}:${at.toISOString()}`,
  lateEvents: (day: string, count: number) => `late-events:${day}:${count}`,
  archiveMismatch: (month: string, checksum: string) => `archive-mismatch:${month}:${checksum.slice(0, 16)}`,
} as const

export interface NewAlert {
  /** Unique: raising a key that exists does nothing. */
  key: string
  /** One line is best; it is redacted, folded to one line and cut to MAX_ALERT_TEXT characters. */
  text: string
}

/** recorded: new, will be sent; duplicate: that key exists already; off: no webhook is configured. */
export type RaiseOutcome = 'recorded' | 'duplicate' | 'off'

/** An alert's text as stored and sent: no secret, no control character, bounded. */
export function alertText(text: string): string {
  // Redacted first, on the whole text, so the cut cannot split a secret into pieces that no longer match.
  return oneLine(redact(text), MAX_ALERT_TEXT)
}

/**
 * Records an alert to be sent by the next flush, unless its key exists already. Does nothing
 * without a webhook (see the module's comment). Throws only on a database error: callers catch
 * it, as an alert never changes a run's outcome.
 */
export async function raiseAlert(db: Kysely<Database>, alert: NewAlert, webhook: AlertWebhook | undefined): Promise<RaiseOutcome> {
  if (!webhook) return 'off'
  const key = oneLine(redact(alert.key), MAX_ALERT_KEY)
  const inserted = await db
    .insertInto('audit_alerts')
    .values({key, text: alertText(alert.text), last_error: null})
    .onConflict((oc) => oc.column('key').doNothing())
    .returning('id')
    .executeTakeFirst()
  return inserted ? 'recorded' : 'duplicate'
}

// --- what `process` announces ----------------------------------------------------------------

/** Each day's status in an inclusive range (days without a record are absent). */
export async function dayStatuses(db: Kysely<Database>, range: {from: string; to: string}): Promise<Map<string, ProcessStatus>> {
  const rows = await db
    .selectFrom('audit_events_log')
    .select(['process_date', 'status'])
    .where('process_date', '>=', range.from)
    .where('process_date', '<=', range.to)
    .execute()
  return new Map(rows.map((row) => [row.process_date, row.status]))
}

/** What alerts need of a day's result (DayResult and RangeDayResult both fit). */
export interface FinishedDay {
  day: string
  outcome: string
  attempt?: number
  message?: string
  events?: number
}

/**
 * Raises an alert for each day that ended FAILED or ERROR (once per attempt, with the record's
 * error_message) and for each that ended SUCCESS having been FAILED or ERROR before the run
 * (`before`, read before it started). Returns how many were recorded.
 */
export async function raiseDayAlerts(
  db: Kysely<Database>,
  webhook: AlertWebhook | undefined,
  before: ReadonlyMap<string, ProcessStatus>,
  results: readonly FinishedDay[],
): Promise<number> {
  if (!webhook) return 0
  let recorded = 0
  for (const result of results) {
    const alert = await dayAlert(db, before, result)
    if (alert && (await raiseAlert(db, alert, webhook)) === 'recorded') recorded++
  }

  return recorded
}

async function dayAlert(db: Kysely<Database>, before: ReadonlyMap<string, ProcessStatus>, result: FinishedDay): Promise<NewAlert | undefined> {
  const {day} = result
  if (result.outcome === 'failed' || result.outcome === 'error') {
    // The record says what is kept: its status, attempt and (already redacted) reason.
    const row = await findDay(db, day)
    const recorded = row && (row.status === 'FAILED' || row.status === 'ERROR') ? row : undefined
    const attempt = recorded?.attempts ?? result.attempt
    // No attempt known: the day was never claimed (the database went first); nothing is kept to announce.
    if (attempt === undefined) return undefined
    const status = recorded?.status ?? (result.outcome === 'failed' ? 'FAILED' : 'ERROR')
    const reason = recorded?.error_message ?? result.message ?? 'no reason was recorded'
    return {key: ALERT_KEYS.dayFailed(day, attempt), text: `${day} ended ${status} on attempt ${attempt}: ${reason}`}
  }

  const was = before.get(day)
  if (result.outcome === 'success' && (was === 'FAILED' || was === 'ERROR')) {
    const row = await findDay(db, day)
    if (row?.status !== 'SUCCESS') return undefined
    const events = row.events_count ?? result.events ?? 0
    return {
      key: ALERT_KEYS.dayRecovered(day, row.attempts),
      text: `${day} recovered: SUCCESS on attempt ${row.attempts} with ${events} event(s) (it was ${was})`,
    }
  }

  return undefined
}

/**
 * Past HEALTH_REQUIRE_YESTERDAY_AFTER (UTC hour), raises `yesterday-missing:<day>` when yesterday
 * is not SUCCESS. Returns 'not-due' before the hour, without the setting, or when yesterday is done.
 */
export async function raiseYesterdayAlert(db: Kysely<Database>, alerts: AlertsConfig, now: Date): Promise<RaiseOutcome | 'not-due'> {
  const hour = alerts.requireYesterdayAfterHour
  if (!alerts.webhook) return 'off'
  if (hour === undefined || now.getUTCHours() < hour) return 'not-due'
  const day = yesterdayUtc(now)
  const row = await findDay(db, day)
  if (row?.status === 'SUCCESS') return 'not-due'
  const due = `${String(hour).padStart(2, '0')}:00 UTC`
  const state = row ? `${row.status}${row.error_message ? ` (${row.error_message})` : ''}` : 'MISSING (no record)'
  return raiseAlert(db, {key: ALERT_KEYS.yesterdayMissing(day), text: `yesterday (${day}) is still not SUCCESS after ${due}: it is ${state}`}, alerts.webhook)
}

// --- sending ---------------------------------------------------------------------------------

export interface FlushAlertsDeps {
  db: Kysely<Database>
  /** ALERT_WEBHOOK_URL; without it nothing is sent (nor was anything recorded). */
  webhook: AlertWebhook | undefined
  logger: Logger
  /** Per request, the answer included; default 10 s. */
  timeoutMs?: number
  /** The most messages this flush posts, the summary included; default 10. */
  maxMessages?: number
  /** Names the deployment in each message (HEROKU_APP_NAME). */
  source?: string
  /** Stops a request in flight (serve's shutdown). */
  signal?: AbortSignal
}

export interface FlushReport {
  /** Alerts the webhook took, those summed up in a summary included. */
  sent: number
  /** Alerts still waiting after this flush. */
  pending: number
  /** Why sending stopped, when it did (one safe line). */
  error?: string
}

interface LeasedAlert {
  id: number
  key: string
  text: string
  attempts: number
}

/**
 * Answers that refuse one message for what it says (400 `invalid_payload`, 413), not the webhook
 * itself: such an alert is passed over so the ones after it still go, and given up after
 * MAX_REFUSALS refusals, so one bad message never holds back every later alert.
 */
const REFUSED_FOR_CONTENT = new Set([400, 413, 422])
const MAX_REFUSALS = 3

/** "the alert webhook (hooks.slack.com)": all that is ever said of the URL. */
export function describeWebhook(webhook: AlertWebhook): string {
  return `the alert webhook (${webhook.host})`
}

/**
 * Sends what waits, oldest first: up to `maxMessages` alerts one message each; when more wait,
 * the last message is one summary ("…and N more", a line each while it fits) that counts for all
 * of them. The first failure (webhook down, 5xx, 429, timeout) stops the flush: that alert and
 * every unsent one wait for the next. Never throws: a failure is one warn line, and the report.
 */
export async function flushAlerts(deps: FlushAlertsDeps): Promise<FlushReport> {
  const {db, webhook, logger} = deps
  if (!webhook) return {sent: 0, pending: 0}
  const timeoutMs = deps.timeoutMs ?? DEFAULT_ALERT_TIMEOUT_MS
  const maxMessages = Math.max(1, deps.maxMessages ?? DEFAULT_MAX_MESSAGES)
  const where = describeWebhook(webhook)
  let leased: LeasedAlert[] = []
  let sent = 0
  try {
    leased = await lease(db, (maxMessages + 1) * timeoutMs + 60_000)
    const alone = leased.length > maxMessages ? leased.slice(0, maxMessages - 1) : leased
    const summed = leased.slice(alone.length)
    for (const [index, alert] of alone.entries()) {
      const outcome = await postToWebhook(webhook, message(alert.text, deps.source), {timeoutMs, signal: deps.signal})
      if (!outcome.ok && outcome.status !== undefined && REFUSED_FOR_CONTENT.has(outcome.status)) {
        await passOver(db, logger, where, alert, outcome.reason)
        continue
      }

      if (!outcome.ok) return await stop(db, logger, where, outcome.reason, [alert], leased.slice(index + 1), sent)
      await markSent(db, [alert])
      sent++
    }

    if (summed.length > 0) {
      const outcome = await postToWebhook(webhook, message(summary(summed), deps.source), {timeoutMs, signal: deps.signal})
      if (!outcome.ok) return await stop(db, logger, where, outcome.reason, summed, [], sent)
      await markSent(db, summed)
      sent += summed.length
    }

    const pending = await countPending(db)
    if (sent > 0) logger.info(`alerts: sent ${sent} to ${where}${pending > 0 ? `; ${pending} wait for the next run` : ''}`)
    return {sent, pending}
  } catch (error) {
    const reason = `the database failed (${safeErrorMessage(error)})`
    logger.warn(`alerts: could not send to ${where}: ${oneLine(reason)}; the next run tries again`)
    await release(db, leased).catch(() => {})
    return {sent, pending: Math.max(0, leased.length - sent), error: reason}
  }
}

/** Records why `failed` could not be sent, frees every unsent alert for the next flush, and says so once. */
async function stop(
  db: Kysely<Database>,
  logger: Logger,
  where: string,
  reason: string,
  failed: LeasedAlert[],
  unsent: LeasedAlert[],
  sent: number,
): Promise<FlushReport> {
  const lastError = oneLine(redact(reason), 500)
  await db
    .updateTable('audit_alerts')
    .set({last_error: lastError})
    .set((eb) => ({attempts: eb('attempts', '+', 1), leased_until: null}))
    .where('id', 'in', failed.map((a) => a.id))
    .execute()
  await release(db, unsent)
  const pending = await countPending(db)
  logger.warn(`alerts: could not send to ${where}: ${lastError}; ${pending} alert(s) kept for the next run${sent > 0 ? ` (${sent} sent)` : ''}`)
  return {sent, pending, error: lastError}
}

/** An alert the webhook refused for its content: kept for the next flush, or given up after MAX_REFUSALS (said once). */
async function passOver(db: Kysely<Database>, logger: Logger, where: string, alert: LeasedAlert, reason: string): Promise<void> {
  const refusal = oneLine(redact(reason), 500)
  const givenUp = alert.attempts + 1 >= MAX_REFUSALS
  await db
    .updateTable('audit_alerts')
    .set({last_error: givenUp ? `given up after ${MAX_REFUSALS} refusals: ${refusal}` : refusal})
    .set((eb) => ({attempts: eb('attempts', '+', 1), leased_until: null, ...(givenUp ? {sent_at: sql<Date>`now()`} : {})}))
    .where('id', '=', alert.id)
    .execute()
  const what = givenUp ? `given up after ${MAX_REFUSALS} refusals (it stays in audit_alerts, key ${oneLine(alert.key, 100)})` : 'kept for the next run; the others still go'
  logger.warn(`alerts: ${where} refused one alert (${refusal}): ${what}`)
}

/** Takes the oldest waiting alerts for this flush alone, for `leaseMs` (a crashed flush's lease runs out). */
async function lease(db: Kysely<Database>, leaseMs: number): Promise<LeasedAlert[]> {
  const result = await sql<LeasedAlert & {created_at: Date}>`
    UPDATE audit_alerts SET leased_until = now() + make_interval(secs => ${leaseMs / 1000})
    WHERE id IN (
      SELECT id FROM audit_alerts
      WHERE sent_at IS NULL AND (leased_until IS NULL OR leased_until < now())
      ORDER BY created_at, id
      LIMIT ${MAX_LEASED}
      FOR UPDATE SKIP LOCKED)
    RETURNING id, key, text, attempts, created_at`.execute(db)
  return result.rows.toSorted((a, b) => a.created_at.getTime() - b.created_at.getTime() || a.id - b.id).map(({id, key, text, attempts}) => ({id, key, text, attempts}))
}

async function markSent(db: Kysely<Database>, alerts: LeasedAlert[]): Promise<void> {
  await db
    .updateTable('audit_alerts')
    .set({last_error: null})
    .set((eb) => ({attempts: eb('attempts', '+', 1), sent_at: sql<Date>`now()`, leased_until: null}))
    .where('id', 'in', alerts.map((a) => a.id))
    .execute()
}

async function release(db: Kysely<Database>, alerts: LeasedAlert[]): Promise<void> {
  if (alerts.length === 0) return
  await db
    .updateTable('audit_alerts')
    .set({leased_until: null})
    .where('id', 'in', alerts.map((a) => a.id))
    .execute()
}

/** Alerts not yet sent. */
export async function countPending(db: Kysely<Database>): Promise<number> {
  const row = await db
    .selectFrom('audit_alerts')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('sent_at', 'is', null)
    .executeTakeFirstOrThrow()
  return Number(row.n)
}

/** The message as posted: who speaks, then the alert. */
function message(text: string, source: string | undefined): string {
  return `audit-logger${source ? ` (${oneLine(source, 100)})` : ''}: ${text}`
}

/** One message for many alerts: their count, then a line each while they fit. */
function summary(alerts: LeasedAlert[]): string {
  const head = `…and ${alerts.length} more alert(s):`
  const lines = [head]
  let length = head.length
  for (const [index, alert] of alerts.entries()) {
    const line = `• ${oneLine(alert.text, 300)}`
    const left = alerts.length - index
    // Room kept for the closing "(N not shown)".
    if (length + 1 + line.length > MAX_SUMMARY_TEXT - 40) {
      lines.push(`(${left} not shown: see the audit_alerts table)`)
      break
    }

    lines.push(line)
    length += 1 + line.length
  }

  return lines.join('\n')
}
