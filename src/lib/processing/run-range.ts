import {type Kysely, sql} from 'kysely'

import type {EventStore} from '../db/event-store.js'
import type {Database} from '../db/schema.js'
import type {AuditClient} from '../heroku/client.js'
import type {Logger} from '../logger.js'
import type {OutputFormat} from '../output/format-event.js'
import {redact, safeErrorMessage} from '../secrets.js'
import {escapeControls, oneLine, renderTable} from '../text.js'
import {isDatabaseUnreachable, retryOnLostConnection} from './database-failure.js'
import {type DayOutcome, type DayResult, exitCodeFor, processDay} from './process-day.js'
import {type Progress, outcomeLabel} from './progress.js'

/** About how fast Heroku refills an account's pool: 4500 tokens an hour. */
export const REFILL_PER_MINUTE = 75

/** A range's day either went through the day job, or was never started (budget, signal, database, output or account). */
export type RangeOutcome = DayOutcome | 'not-started'

export interface RangeDayResult extends Omit<DayResult, 'outcome'> {
  outcome: RangeOutcome
}

export type RangeStop =
  | {reason: 'budget'; rateLimitRemaining: number; reserve: number; daysLeft: number; retryInMinutes: number}
  | {reason: 'signal'; daysLeft: number}
  | {reason: 'database'; daysLeft: number; message: string}
  | {reason: 'output'; daysLeft: number}
  /** The API refused the token or the account: `problem` says how, and what to fix. */
  | {reason: 'account'; daysLeft: number; day: string; problem: string}

export interface RangeResult {
  results: RangeDayResult[]
  stopped?: RangeStop
  /** The worst outcome's exit code (see rangeExitCode). */
  exitCode: 0 | 1
}

export interface RunRangeDeps {
  db: Kysely<Database>
  client: AuditClient
  output: NodeJS.WritableStream
  logger: Logger
  progress?: Progress
  /** The event store, when on: each day's events are kept in it (see processDay). */
  store?: EventStore
  /** The day job; tests may wrap it. */
  processDay?: typeof processDay
  /** Does the database answer? Asked after a day failed for want of it; default `SELECT 1`. */
  probeDatabase?: () => Promise<void>
}

export interface RunRangeOptions {
  /** The days to go through the claim protocol, in the order given (oldest first). */
  days: string[]
  format: OutputFormat
  force: boolean
  staleAfterMinutes: number
  heartbeatIntervalMs: number
  /** No new day starts once RateLimit-Remaining is below this; 0 turns the budget off. */
  rateLimitReserve: number
  outputDir?: string
  /** With the store: the first day it keeps (see ProcessDayOptions). */
  storeFrom?: string
  /** LOG_LINES_PER_SECOND (see ProcessDayOptions). */
  linesPerSecond?: number
  /** Aborts the day in progress (recorded FAILED) and starts no other. */
  signal?: AbortSignal
  /** Told which day starts, e.g. to prefix the API client's notices. */
  onDayStart?: (day: string) => void
}

/** Minutes until the pool is back above the reserve, at ~75 tokens a minute; at least 1. */
export function minutesToRefill(rateLimitRemaining: number, reserve: number): number {
  return Math.max(1, Math.ceil((reserve - rateLimitRemaining) / REFILL_PER_MINUTE))
}

/**
 * Exit code of a range: 1 when a day ended FAILED, ERROR or lost its claim, or when a signal
 * interrupted the range; 0 otherwise. A budget stop alone is 0: nothing failed, the untouched
 * days keep no record, and the next run (catch-up) takes them; failing would page someone for
 * the tool being polite to the shared rate limit.
 */
export function rangeExitCode(results: RangeDayResult[], stopped?: RangeStop): 0 | 1 {
  const outcomes = results.map((r) => r.outcome).filter((o): o is DayOutcome => o !== 'not-started')
  if (stopped?.reason === 'signal' || stopped?.reason === 'database' || stopped?.reason === 'output' || stopped?.reason === 'account') return 1
  return exitCodeFor(outcomes)
}

/**
 * Runs the day job for each day, one at a time, oldest first. A failing day does not stop the
 * others. The rate budget: the RateLimit-Remaining of the last response seen is checked before
 * each day; once it is below the reserve no new day starts, and the rest are left untouched (no
 * record written, so they stay missing rather than FAILED). No request is spent just to probe the
 * pool: the first day's own responses are the first reading, so the budget can be undercut by at
 * most that one day's pages.
 */
export async function runRange(deps: RunRangeDeps, options: RunRangeOptions): Promise<RangeResult> {
  const {progress} = deps
  const logger = progress ? progress.wrap(deps.logger) : deps.logger
  const job = deps.processDay ?? processDay
  const results: RangeDayResult[] = []
  let rateLimitRemaining: number | undefined
  let stopped: RangeStop | undefined

  progress?.start(options.days.length)
  try {
    for (const [index, day] of options.days.entries()) {
      const daysLeft = options.days.length - index
      if (options.signal?.aborted) {
        stopped = {reason: 'signal', daysLeft}
        break
      }

      if (options.rateLimitReserve > 0 && rateLimitRemaining !== undefined && rateLimitRemaining < options.rateLimitReserve) {
        stopped = {
          reason: 'budget',
          rateLimitRemaining,
          reserve: options.rateLimitReserve,
          daysLeft,
          retryInMinutes: minutesToRefill(rateLimitRemaining, options.rateLimitReserve),
        }
        break
      }

      options.onDayStart?.(day)
      progress?.dayStarted(day)
      const result = await runOne(job, {...deps, logger}, options, day)
      if (result.rateLimitRemaining !== undefined) rateLimitRemaining = result.rateLimitRemaining
      results.push(result)
      progress?.dayFinished(result)
      // stdout's reader is gone: every later day would be fetched for nobody.
      if (result.outputClosed && index < options.days.length - 1) {
        stopped = {reason: 'output', daysLeft: daysLeft - 1}
        break
      }

      // A token or account the API refuses fails every day alike: stop at the first, say what to fix.
      if (result.accountProblem !== undefined && index < options.days.length - 1) {
        stopped = {reason: 'account', daysLeft: daysLeft - 1, day, problem: result.accountProblem}
        break
      }

      // Without a database no day can be claimed or recorded: rather than fail every day left
      // (each after a connection timeout), stop, once one probe confirms it is gone.
      if (result.databaseUnreachable && index < options.days.length - 1) {
        const gone = await whyDatabaseIsGone(deps)
        if (gone !== undefined) {
          stopped = {reason: 'database', daysLeft: daysLeft - 1, message: gone}
          break
        }
      }
    }
  } finally {
    progress?.stop()
  }

  const why = {
    budget: 'rate budget: left for a later run',
    database: 'the database cannot be reached',
    output: 'stdout was closed',
    account: 'the API refused the token or account',
    signal: 'interrupted before it started',
  }[stopped?.reason ?? 'signal']
  for (const day of options.days.slice(results.length)) {
    results.push({day, outcome: 'not-started', events: 0, pages: 0, durationMs: 0, message: why})
  }

  return {results, stopped, exitCode: rangeExitCode(results, stopped)}
}

/** One day; an exception (e.g. the database gone during the claim) becomes that day's ERROR. */
async function runOne(job: typeof processDay, deps: RunRangeDeps & {logger: Logger}, options: RunRangeOptions, day: string): Promise<DayResult> {
  const started = Date.now()
  try {
    return await job(
      {db: deps.db, client: deps.client, output: deps.output, logger: deps.logger, store: deps.store},
      {
        day,
        format: options.format,
        force: options.force,
        staleAfterMinutes: options.staleAfterMinutes,
        heartbeatIntervalMs: options.heartbeatIntervalMs,
        signal: options.signal,
        outputDir: options.outputDir,
        storeFrom: options.storeFrom,
        linesPerSecond: options.linesPerSecond,
      },
    )
  } catch (error) {
    const unreachable = isDatabaseUnreachable(error)
    const message = `not processed: ${unreachable ? 'the database cannot be reached: ' : ''}${safeErrorMessage(error)}`
    return {day, outcome: 'error', events: 0, pages: 0, durationMs: Date.now() - started, message, ...(unreachable ? {databaseUnreachable: true} : {})}
  }
}

/** undefined when the database answers, else why not. */
async function whyDatabaseIsGone(deps: RunRangeDeps): Promise<string | undefined> {
  try {
    // Tried on fresh connections for a moment: a connection killed once is not a database gone.
    await retryOnLostConnection(deps.probeDatabase ?? (() => sql`SELECT 1`.execute(deps.db).then(() => {})))
    return undefined
  } catch (error) {
    return safeErrorMessage(error)
  }
}

/** The closing table on stderr: one line per day, then the totals and, if stopped, what next. */
export function renderRangeSummary(result: RangeResult, options: {rerun: string}): string {
  const header = ['DATE', 'OUTCOME', 'EVENTS', 'PAGES', 'DURATION', 'NOTE']
  const rows = result.results.map((r) => [
    r.day,
    outcomeLabel(r.outcome),
    r.outcome === 'not-started' ? '-' : String(r.events),
    r.outcome === 'not-started' ? '-' : String(r.pages),
    r.outcome === 'not-started' ? '-' : `${(r.durationMs / 1000).toFixed(1)} s`,
    r.outcome === 'success' ? '' : oneLine(r.message ?? '', 100),
  ])
  const lines = renderTable(header, rows, new Set([2, 3, 4]))

  const tally = new Map<string, number>()
  for (const r of result.results) tally.set(outcomeLabel(r.outcome), (tally.get(outcomeLabel(r.outcome)) ?? 0) + 1)
  const parts = [...tally].map(([label, n]) => `${n} ${label}`)
  lines.push('', `${result.results.length} day(s): ${parts.join(', ')}.`)

  const {stopped} = result
  if (stopped?.reason === 'budget') {
    lines.push(
      `Stopped for the rate budget: RateLimit-Remaining ${stopped.rateLimitRemaining} is below the reserve of ${stopped.reserve}, ` +
        `so ${stopped.daysLeft} day(s) were not started (left without a record, not FAILED) and the account's other tools keep working. ` +
        `Run again in about ${stopped.retryInMinutes} minute(s): ${options.rerun}`,
    )
  } else if (stopped?.reason === 'signal') {
    lines.push(`Interrupted: ${stopped.daysLeft} day(s) were not started. Run again: ${options.rerun}`)
  } else if (stopped?.reason === 'output') {
    lines.push(`Stopped: stdout was closed by its reader, so ${stopped.daysLeft} day(s) were not started. Run again with stdout read to the end: ${options.rerun}`)
  } else if (stopped?.reason === 'database') {
    lines.push(`Stopped: the database cannot be reached (${oneLine(stopped.message, 300)}), so ${stopped.daysLeft} day(s) were not started. Run again once it is back: ${options.rerun}`)
  } else if (stopped?.reason === 'account') {
    lines.push(
      `Stopped: ${stopped.problem}. That is about the account, not ${stopped.day}: every other day would get the same answer, so ${stopped.daysLeft} day(s) were not started (left without a record). ` +
        `Fix it, then run again: ${options.rerun}`,
    )
  }

  // Masked first, then each line escaped: the rerun hint quotes flags as typed (an --output-dir may hold anything).
  return `${redact(lines.join('\n')).split('\n').map((line) => escapeControls(line)).join('\n')}\n`
}
