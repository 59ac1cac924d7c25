import type {Kysely} from 'kysely'

import {busiestDayEvents, dayStates} from '../db/audit-log-repository.js'
import {migrationState} from '../db/migrate.js'
import type {Database, ProcessStatus} from '../db/schema.js'
import {addDays, daysBetween, yesterdayUtc} from '../dates.js'

export type PlanMode = 'date' | 'range' | 'catch-up'

export interface PlannedDay {
  day: string
  /** The record's status when planned, or MISSING when the day has none. */
  status: ProcessStatus | 'MISSING'
  /** fetch: the run would claim and fetch it; skip: it is done or held by a live run. */
  action: 'fetch' | 'skip'
  /** Why, in a few words. */
  reason: string
}

export interface ApiEstimate {
  /** One request per fetched day: a day always needs at least its first page. */
  minimum: number
  /** If every fetched day were as busy as the busiest SUCCESS day on record (known days: their own count). */
  estimate: number
  /** Events the estimate assumes for a day whose count is unknown. */
  assumedEventsPerDay: number
  pageSize: number
  /** Retries of 429, 5xx and timeouts come on top: up to this many tries per request. */
  maxAttemptsPerRequest: number
}

export interface Plan {
  mode: PlanMode
  from: string
  to: string
  /** Every day of the range or window, oldest first. */
  days: PlannedDay[]
  /** The days a run goes through the claim protocol for, oldest first (see planDays). */
  attempt: string[]
  /** False when the table could not be read (migrations pending): every day was taken as MISSING. */
  stateKnown: boolean
  note?: string
  api: ApiEstimate
}

export interface PlanOptions {
  mode: PlanMode
  from: string
  to: string
  force: boolean
  staleAfterMinutes: number
  pageSize: number
  maxAttemptsPerRequest: number
}

/** The catch-up window: the `days` days that end yesterday (UTC), yesterday included. */
export function catchUpWindow(days: number, now: Date = new Date()): {from: string; to: string} {
  const to = yesterdayUtc(now)
  return {from: addDays(to, -(days - 1)), to}
}

/**
 * Plans a range or a catch-up from the table, with reads only (no claim, no migration), so the
 * same function serves `--dry-run`. What each day's record means:
 *   none, FAILED, ERROR, PROCESSING without a heartbeat → fetch (new, retried, taken over);
 *   SUCCESS → skip unless forced; PROCESSING with a live heartbeat → skip (another run has it).
 *
 * A range attempts every one of its days: the claim is re-checked per day when the run gets
 * there, so a day finished or failed by another run meanwhile is handled by the same protocol.
 * A catch-up attempts only the days planned for fetching: it is about healing gaps, and the
 * window's done days need not be listed again.
 */
export async function planDays(db: Kysely<Database>, options: PlanOptions): Promise<Plan> {
  const window = daysBetween(options.from, options.to)
  const migrations = await migrationState(db)
  const pending = migrations.filter((m) => !m.executedAt).length
  const stateKnown = pending === 0
  const states = stateKnown ? await dayStates(db, options, options.staleAfterMinutes) : []
  const busiest = stateKnown ? await busiestDayEvents(db) : 0
  const byDay = new Map(states.map((s) => [s.day, s]))

  const days: PlannedDay[] = window.map((day) => {
    const state = byDay.get(day)
    if (!state) return {day, status: 'MISSING', action: 'fetch', reason: 'no record yet'}
    switch (state.status) {
      case 'FAILED':
      case 'ERROR': {
        return {day, status: state.status, action: 'fetch', reason: `retry the ${state.status} day`}
      }

      case 'PROCESSING': {
        return state.live
          ? {day, status: state.status, action: 'skip', reason: 'held by a live run'}
          : {day, status: state.status, action: 'fetch', reason: `take over a run with no heartbeat for ${options.staleAfterMinutes} min`}
      }

      case 'SUCCESS': {
        return options.force
          ? {day, status: state.status, action: 'fetch', reason: `forced: fetch again (had ${state.eventsCount} events)`}
          : {day, status: state.status, action: 'skip', reason: `already SUCCESS (${state.eventsCount} events)`}
      }
    }
  })

  const fetched = days.filter((d) => d.action === 'fetch')
  const pagesOf = (events: number) => Math.max(1, Math.ceil(events / options.pageSize))
  const estimate = fetched.reduce((sum, d) => {
    const known = d.status === 'SUCCESS' ? byDay.get(d.day)?.eventsCount : undefined
    return sum + pagesOf(known ?? busiest)
  }, 0)

  return {
    mode: options.mode,
    from: options.from,
    to: options.to,
    days,
    attempt: options.mode === 'catch-up' ? fetched.map((d) => d.day) : window,
    stateKnown,
    note: stateKnown
      ? undefined
      : `the database has ${pending} pending migration(s), so its records were not read: every day is planned as if it had none (run \`audit-logger db init\` first for a true plan)`,
    api: {
      minimum: fetched.length,
      estimate,
      assumedEventsPerDay: busiest,
      pageSize: options.pageSize,
      maxAttemptsPerRequest: options.maxAttemptsPerRequest,
    },
  }
}

/** The dry-run's text: what would be fetched and why, and what it would cost in API requests. */
export function renderPlan(plan: Plan): string {
  const lines: string[] = []
  const what = plan.mode === 'catch-up' ? `catch-up over ${plan.from}..${plan.to}` : plan.from === plan.to ? plan.from : `${plan.from}..${plan.to}`
  const fetched = plan.days.filter((d) => d.action === 'fetch')
  lines.push(`Dry run — ${what}: ${fetched.length} of ${plan.days.length} day(s) would be fetched. Nothing was fetched or recorded.`)
  if (plan.note) lines.push(`Note: ${plan.note}.`)
  const width = Math.max(6, ...plan.days.map((d) => d.status.length))
  lines.push(`${'DATE'.padEnd(10)}  ${'STATUS'.padEnd(width)}  PLAN`)
  for (const d of plan.days) lines.push(`${d.day}  ${d.status.padEnd(width)}  ${d.action}: ${d.reason}`)
  const {api} = plan
  if (fetched.length === 0) {
    lines.push('API requests: none.')
  } else {
    const basis = api.assumedEventsPerDay > 0
      ? `about ${api.estimate} if each day is as busy as the busiest recorded day (${api.assumedEventsPerDay} events; pages of ${api.pageSize})`
      : `more for a day past ${api.pageSize} events (one request per page of ${api.pageSize}; no recorded day to estimate from)`
    lines.push(
      `API requests: at least ${api.minimum} (one per day); ${basis}. A day's page count is only known once fetched, ` +
        `and retries of 429/5xx/timeouts come on top (up to ${api.maxAttemptsPerRequest} ${api.maxAttemptsPerRequest === 1 ? 'try' : 'tries'} per request).`,
    )
  }

  return `${lines.join('\n')}\n`
}
