import {createHash, randomUUID} from 'node:crypto'

import type {Kysely} from 'kysely'

import type {SinkConfig} from '../config.js'
import type {Database} from '../db/schema.js'
import {
  type DayPosition,
  type PendingDay,
  advance,
  clearStop,
  dayPosition,
  finishDay,
  findSink,
  leaseSink,
  nextPendingDay,
  noteFailure,
  readBatch,
  registerSink,
  releaseSink,
  sinkBacklogs,
  stopSink,
} from '../db/sink-queries.js'
import type {Logger} from '../logger.js'
import {type SinkBatch, buildBatch} from './sink-batch.js'
import {DEFAULT_RETRY, type PostDeps, type RetryPolicy, postBatch} from './sink-post.js'

/**
 * The sink's name in the database: its format and host, and a short hash of the whole URL, so two
 * intakes on one host stay apart while a token in the URL's path or query is never stored.
 */
export function sinkName(sink: Pick<SinkConfig, 'url' | 'format' | 'target'>): string {
  const hash = createHash('sha256').update(`${sink.format} ${sink.url}`).digest('hex').slice(0, 12)
  return `${sink.target} #${hash}`
}

/**
 * done: nothing is waiting. unavailable: the intake kept failing (429, 5xx, timeouts): the next run
 * resumes. stopped: the intake refused a batch (4xx): no run sends more until `deliver` gets
 * through. busy: another run is delivering to this sink. interrupted: a signal stopped the run.
 */
export type DeliveryOutcome = 'done' | 'unavailable' | 'stopped' | 'busy' | 'interrupted'

export interface DeliveryReport {
  sink: string
  target: string
  outcome: DeliveryOutcome
  delivered: number
  requests: number
  /** Events stored and not yet accepted, after this run. */
  pending: number
  message?: string
}

interface Prepared {
  batch: SinkBatch
  /** The position after the batch's last event. */
  next: DayPosition
}

export interface DeliveryDeps {
  db: Kysely<Database>
  logger: Logger
  userAgent: string
  /**
   * Told once when a sink becomes stopped (to record an alert), on `trx`, the stop's own
   * transaction: should it fail, the sink is not stopped either, and the next run tries again.
   */
  onStopped?: (event: {sink: string; target: string; reason: string; stoppedAt: Date}, trx: Kysely<Database>) => Promise<void>
  sleep?: PostDeps['sleep']
  random?: PostDeps['random']
}

export interface DeliveryOptions {
  sink: SinkConfig
  /**
   * Try a stopped sink again (the `deliver` command, run after fixing what the intake refused).
   * `process` leaves a stopped sink alone and says so.
   */
  retryStopped: boolean
  retry?: RetryPolicy
  signal?: AbortSignal
}

/**
 * Long enough for one request and the longest wait between tries, the most that passes between
 * two renewals; short, so a run killed mid-delivery holds the sink back only briefly.
 */
function leaseMsFor(sink: SinkConfig, retry: RetryPolicy): number {
  return sink.timeoutMs + retry.maxWaitMs + 30_000
}

/**
 * Sends every stored event the sink has not accepted yet, oldest day first, in batches bounded
 * by count and bytes, moving the sink's durable position after each accepted batch. At least
 * once: a batch accepted but not recorded (a crash in between) is sent again by the next run.
 */
export async function deliverToSink(deps: DeliveryDeps, options: DeliveryOptions): Promise<DeliveryReport> {
  const {db, logger} = deps
  const {sink} = options
  const retry = options.retry ?? {...DEFAULT_RETRY, attempts: sink.maxAttempts}
  const name = sinkName(sink)
  const leaseMs = leaseMsFor(sink, retry)
  let delivered = 0
  let requests = 0
  const report = async (outcome: DeliveryOutcome, message?: string): Promise<DeliveryReport> => {
    const backlog = (await sinkBacklogs(db)).find((b) => b.name === name)
    return {sink: name, target: sink.target, outcome, delivered, requests, pending: backlog?.pending_events ?? 0, ...(message ? {message} : {})}
  }

  await registerSink(db, {name, format: sink.format, target: sink.target})
  const current = await findSink(db, name)
  if (current?.stopped_at && !options.retryStopped) {
    return report('stopped', `stopped since ${current.stopped_at.toISOString()}: ${current.stop_reason ?? 'refused'}; fix it, then run \`audit-logger deliver\` to resume`)
  }

  const token = randomUUID()
  if (!(await leaseSink(db, name, token, leaseMs))) return report('busy', 'another run is delivering to this sink; it carries on from the same position')
  const postDeps: PostDeps = {
    userAgent: deps.userAgent,
    sleep: deps.sleep,
    random: deps.random,
    onRetry: async (message, waitMs, attempt) => {
      logger.warn(`sink ${sink.target}: ${message}; trying again in ${(waitMs / 1000).toFixed(1)} s (try ${attempt + 1} of ${retry.attempts})`)
      await noteFailure(db, name, message, leaseMs).catch(() => {})
    },
  }

  let batchLimit = sink.batchEvents
  // Only Splunk's records carry the time on their own.
  const withEpoch = sink.format === 'splunk-hec'
  /** The next batch, read and encoded while the one before it is in flight. */
  const prepare = async (day: PendingDay, after: DayPosition | undefined): Promise<Prepared | undefined> => {
    const events = await readBatch(db, day, after, batchLimit, withEpoch)
    if (events.length === 0) return undefined
    const batch = buildBatch(events, sink.format, sink.batchBytes)
    const last = events[batch.count - 1]
    return {batch, next: {createdAt: last.created_at, id: last.id}}
  }

  // An accepted batch's position is recorded while the next batch is posted; the next answer waits for it.
  let recording: {done: Promise<boolean>; count: number} | undefined
  /** The last accepted batch's position recorded; false when it no longer belonged to this run. */
  const recorded = async (): Promise<boolean> => {
    if (!recording) return true
    const {done, count} = recording
    recording = undefined
    if (!(await done)) return false
    delivered += count
    return true
  }

  let prefetch: Promise<Prepared | undefined> | undefined
  try {
    let day: PendingDay | undefined
    days: while ((day = await nextPendingDay(db, name))) {
      let position = await dayPosition(db, name, day)
      for (;;) {
        if (options.signal?.aborted) {
          await recorded()
          return await report('interrupted')
        }

        const prepared = await (prefetch ?? prepare(day, position))
        prefetch = undefined
        if (!prepared) {
          if ((await recorded()) && (await finishDay(db, name, token, day))) continue days
          break
        }

        prefetch = prepare(day, prepared.next)
        prefetch.catch(() => {})
        requests++
        let outcome
        try {
          outcome = await postBatch(sink, prepared.batch.body, postDeps, retry, options.signal)
        } catch (error) {
          if (options.signal?.aborted) {
            await recorded()
            return await report('interrupted')
          }

          throw error
        }

        if (!(await recorded())) break
        if (outcome.kind === 'accepted') {
          recording = {done: advance(db, name, token, day, prepared.next, prepared.batch.count, leaseMs), count: prepared.batch.count}
          recording.done.catch(() => {})
          position = prepared.next
          continue
        }

        prefetch = undefined
        if (outcome.kind === 'too-large' && prepared.batch.count > 1) {
          batchLimit = Math.max(1, Math.floor(prepared.batch.count / 2))
          logger.warn(`sink ${sink.target}: ${outcome.message}; sending at most ${batchLimit} events per request from now on (lower SINK_BATCH_BYTES or SINK_BATCH_EVENTS)`)
          continue
        }

        if (outcome.kind === 'unavailable') {
          await noteFailure(db, name, outcome.message, leaseMs)
          return await report('unavailable', `${outcome.message}; the next run resumes from the same position`)
        }

        const reason = outcome.message
        await stopSink(db, name, reason, deps.onStopped && ((trx, stoppedAt) => deps.onStopped!({sink: name, target: sink.target, reason, stoppedAt}, trx)))

        return await report('stopped', `refused a batch (${reason}); nothing more is sent until it is fixed and \`audit-logger deliver\` gets through`)
      }

      // The day was stored again (deliver it from its start) or the lease was taken.
      prefetch = undefined
      if (!(await leaseSink(db, name, token, leaseMs))) return await report('busy', 'another run took over this sink')
    }

    if (options.retryStopped) await clearStop(db, name, token)
    return await report('done')
  } finally {
    await recording?.done.catch(() => {})
    await releaseSink(db, name, token).catch(() => {})
  }
}

/** The one line a run says about a sink, and at which level. */
export function deliveryLine(report: DeliveryReport): {level: 'success' | 'info' | 'warn'; message: string} {
  const sent = `${report.delivered} event(s) in ${report.requests} request(s)`
  const waiting = report.pending > 0 ? `${report.pending} event(s) waiting` : 'nothing waiting'
  const detail = report.message ? `: ${report.message}` : ''
  switch (report.outcome) {
    case 'done': {
      return {level: report.delivered > 0 ? 'success' : 'info', message: `sink ${report.target}: delivered ${sent}; ${waiting}`}
    }

    case 'busy': {
      return {level: 'info', message: `sink ${report.target}: not delivered by this run${detail}; ${waiting}`}
    }

    default: {
      return {level: 'warn', message: `sink ${report.target}: ${report.outcome} after delivering ${sent}${detail}; ${waiting}`}
    }
  }
}
