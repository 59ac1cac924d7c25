import {type Kysely, sql} from 'kysely'

import {type EventStore, ensurePartitions, eventRecord, eventTexts} from '../db/event-store.js'
import type {Database} from '../db/schema.js'
import {createStaging, dropMatched, prepareStaging, recordSettled, storeOnly, storeStaged, storedDigest} from '../db/staging-queries.js'
import {addDays} from '../dates.js'
import type {AuditClient} from '../heroku/client.js'
import {HerokuApiError, accountProblem} from '../heroku/errors.js'
import type {Logger} from '../logger.js'
import type {PaceClock} from '../output/deliver.js'
import type {OutputFormat} from '../output/format-event.js'
import {safeErrorMessage} from '../secrets.js'
import {oneLine} from '../text.js'
import {writeStagedEvents} from './write-staged.js'

/*
 * Settle: a SUCCESS day is read once more, SETTLE_HOURS after it was collected, because the
 * events API may show an event some time after it happened. The re-read is compared by id with
 * the store: events not there before (late) are stored, written on stdout and counted; stored
 * events no longer served (vanished) are counted and named, never deleted.
 */

export interface SettleDeps {
  db: Kysely<Database>
  client: AuditClient
  store: EventStore
  output: NodeJS.WritableStream
  logger: Logger
  paceClock?: PaceClock
}

export interface SettleOptions {
  day: string
  format: OutputFormat
  linesPerSecond?: number
  /** Settle again a day settled before (the default leaves it alone). */
  again?: boolean
  signal?: AbortSignal
}

/**
 * settled: compared and recorded. skipped: no longer a SUCCESS day to settle (re-collected, reset,
 * or settled by another run meanwhile): nothing changed. failed: the re-read or the database
 * failed: nothing changed, the next catch-up tries again.
 */
export type SettleOutcome = 'settled' | 'skipped' | 'failed'

export interface SettleResult {
  day: string
  outcome: SettleOutcome
  late: number
  vanished: number
  matched: number
  pages: number
  /** Some of the stored ids the re-read no longer got. */
  vanishedSample: string[]
  digest?: string
  message?: string
  rateLimitRemaining?: number
  /** The API refused the token or account (see DayResult.accountProblem): settling more days is pointless. */
  accountProblem?: boolean
}

class NoLongerSettleable extends Error {}

export async function settleDay(deps: SettleDeps, options: SettleOptions): Promise<SettleResult> {
  const {db, client, store, output} = deps
  const {day} = options
  let pages = 0
  let rateLimitRemaining: number | undefined
  const result = (outcome: SettleOutcome, extra: Partial<SettleResult> = {}): SettleResult => ({
    day,
    outcome,
    late: 0,
    vanished: 0,
    matched: 0,
    pages,
    vanishedSample: [],
    ...(rateLimitRemaining === undefined ? {} : {rateLimitRemaining}),
    ...extra,
  })

  const before = await db.selectFrom('audit_events_log').select(['status', 'claim_token', 'settled_at']).where('process_date', '=', day).executeTakeFirst()
  if (before?.status !== 'SUCCESS' || (before.settled_at && !options.again)) {
    return result('skipped', {message: `${day} is not a SUCCESS day waiting to settle`})
  }

  try {
    await ensurePartitions(db, [day])
    return await store.transaction(async (trx, append) => {
      await createStaging(trx)
      let position = 0
      for await (const page of client.fetchDay(day, {signal: options.signal})) {
        pages++
        rateLimitRemaining = page.rateLimitRemaining ?? rateLimitRemaining
        const texts = eventTexts(page.events, page.body)
        await append(page.events.map((event, k) => eventRecord(day, event, texts[k], ++position)))
      }

      await prepareStaging(trx)
      // The record is locked from here to the commit: a forced rerun, a reset or another settle of
      // the day waits, and one that came first is seen.
      const now = await sql<{status: string; claim_token: string | null; settled_at: Date | null}>`
        SELECT status, claim_token, settled_at FROM audit_events_log WHERE process_date = ${day} FOR UPDATE`.execute(trx)
      const row = now.rows[0]
      if (row?.status !== 'SUCCESS' || row.claim_token !== before.claim_token || (row.settled_at && !options.again)) throw new NoLongerSettleable()
      const [gone] = await storeOnly(trx, [day])
      const matched = (await dropMatched(trx, day, addDays(day, 1))).get(day) ?? 0
      const late = await storeStaged(trx, [day])
      await writeStagedEvents(trx, [day], output, {format: options.format, linesPerSecond: options.linesPerSecond, paceClock: deps.paceClock, signal: options.signal})
      const {digest} = await storedDigest(trx, day)
      const vanished = gone?.count ?? 0
      if (!(await recordSettled(trx, {day, claimToken: before.claim_token, late, vanished, digest}))) throw new NoLongerSettleable()
      return result('settled', {late, vanished, matched, digest, vanishedSample: gone?.sample ?? []})
    }, 'audit_staged_events')
  } catch (error) {
    if (error instanceof NoLongerSettleable) return result('skipped', {message: `${day} was re-collected, reset or settled by another run meanwhile; left as it is`})
    // The same account-wide refusals a day's run stops a range for (see accountProblem).
    const account = accountProblem(error) !== undefined
    if (error instanceof HerokuApiError && error.details.status === 429) rateLimitRemaining = 0
    return result('failed', {message: `settling ${day} failed: ${oneLine(safeErrorMessage(error), 500)}; nothing changed, the next catch-up tries again`, ...(account ? {accountProblem: true} : {})})
  }
}

/** One line about a settled day, for stderr. */
export function settleLine(result: SettleResult): {level: 'info' | 'warn'; message: string} {
  if (result.outcome !== 'settled') return {level: result.outcome === 'failed' ? 'warn' : 'info', message: result.message ?? `${result.day}: not settled`}
  const parts = [`${result.day}: settled, ${result.matched} event(s) as before`]
  if (result.late > 0) parts.push(`${result.late} late event(s) stored and written`)
  if (result.vanished > 0) parts.push(`${result.vanished} stored event(s) no longer served (kept; e.g. ${result.vanishedSample.slice(0, 3).map((id) => oneLine(id, 80)).join(', ')})`)
  return {level: result.late > 0 || result.vanished > 0 ? 'warn' : 'info', message: parts.join('; ')}
}
