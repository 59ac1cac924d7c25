/**
 * `serve`'s alert round: every few minutes, the yesterday check and a flush of what waits, so
 * alerts go out even on days no `process` run does (Scheduler stopped, the job never started).
 */
import type {Kysely} from 'kysely'

import type {AlertsConfig} from '../config.js'
import type {Database} from '../db/schema.js'
import type {Logger} from '../logger.js'
import {safeErrorMessage} from '../secrets.js'
import {flushAlerts, raiseYesterdayAlert} from './alerts.js'

export const DEFAULT_ALERT_INTERVAL_MS = 5 * 60_000

export interface AlertTimerDeps {
  db: Kysely<Database>
  alerts: AlertsConfig
  logger: Logger
  clock?: () => Date
  /** Between rounds; default 5 minutes. */
  intervalMs?: number
  /** Before the first round; default 1 s, so a restart sends what waits soon. */
  firstDelayMs?: number
  /** Per webhook request (see flushAlerts). */
  timeoutMs?: number
}

export interface AlertTimer {
  /** Stops the rounds, cuts short a request in flight, and waits for the round to end. */
  stop(): Promise<void>
  /** Runs one round now (tests), or waits for the one in flight. */
  round(): Promise<void>
}

/**
 * Starts the rounds; none without a webhook (nothing is recorded then). The timers are unref'd:
 * they never keep the process alive. Rounds never overlap, and never throw.
 */
export function startAlertTimer(deps: AlertTimerDeps): AlertTimer {
  const {db, alerts, logger} = deps
  const {webhook} = alerts
  if (!webhook) return {stop: async () => {}, round: async () => {}}
  const clock = deps.clock ?? (() => new Date())
  const stopping = new AbortController()
  let inFlight: Promise<void> | undefined

  const once = async () => {
    try {
      await raiseYesterdayAlert(db, alerts, clock())
    } catch (error) {
      logger.warn(`alerts: could not check yesterday now (${safeErrorMessage(error)}); trying again in a few minutes`)
    }

    if (!stopping.signal.aborted) await flushAlerts({db, webhook, logger, source: alerts.source, timeoutMs: deps.timeoutMs, signal: stopping.signal})
  }

  const round = (): Promise<void> => {
    if (stopping.signal.aborted) return inFlight ?? Promise.resolve()
    inFlight ??= once().finally(() => (inFlight = undefined))
    return inFlight
  }

  const first = setTimeout(() => void round(), deps.firstDelayMs ?? 1000).unref()
  const every = setInterval(() => void round(), deps.intervalMs ?? DEFAULT_ALERT_INTERVAL_MS).unref()
  return {
    round,
    async stop() {
      clearTimeout(first)
      clearInterval(every)
      stopping.abort()
      await inFlight
    },
  }
}
