/**
 * A year of a busy account's events, for the search benchmarks: generateEvents' shapes, types and
 * actions, re-cast onto a realistic population: a few hundred actors and a few thousand apps,
 * each used with a long-tailed (Zipf) frequency, so a handful of people and CI bots do most of
 * the work; each actor mostly from their own couple of addresses; weekdays busier than weekends.
 * Deterministic: the same options always give the same events.
 */
import type {Kysely} from 'kysely'

import {addDays, isoWeekday} from '../src/lib/dates.js'
import {ensurePartitions, eventRecord, eventStoreFor} from '../src/lib/db/event-store.js'
import type {Database} from '../src/lib/db/schema.js'
import type {AuditEvent} from '../src/lib/heroku/types.js'
import {ENTERPRISE_ACCOUNT, generateEvents} from '../test/fake-heroku/events.js'

export interface BusyAccountOptions {
  /** The last day of the year (the first is 364 days before it). */
  lastDay: string
  /** About how many events the year holds. */
  events: number
  actors?: number
  apps?: number
  teams?: number
}

/** splitmix32: small and well mixed, enough to pick from populations. */
function random32(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x9e3779b9) >>> 0
    let z = state
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b)
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35)
    return ((z ^ (z >>> 16)) >>> 0) / 4_294_967_296
  }
}

/** Picks index k of n with weight 1/(k+1)^s: rank 0 is the busiest. */
function zipf(n: number, s: number): (random: () => number) => number {
  const cumulative = new Float64Array(n)
  let total = 0
  for (let k = 0; k < n; k++) cumulative[k] = total += 1 / (k + 1) ** s
  return (random) => {
    const target = random() * total
    let low = 0
    let high = n - 1
    while (low < high) {
      const middle = (low + high) >> 1
      if (cumulative[middle] < target) low = middle + 1
      else high = middle
    }

    return low
  }
}

const hex = (n: number, width: number) => n.toString(16).padStart(width, '0')

/** Documentation addresses only (RFC 5737, RFC 3849). */
function address(n: number): string {
  const v4 = ['192.0.2', '198.51.100', '203.0.113']
  return n < 3 * 254 ? `${v4[n % 3]}.${1 + Math.floor(n / 3)}` : `2001:db8:${hex(Math.floor(n / 65_536), 1)}::${hex(n % 65_536, 1)}`
}

/** The population, and a function re-casting one generated event onto it. */
function population(options: Required<Omit<BusyAccountOptions, 'lastDay' | 'events'>>) {
  const random = random32(11)
  const teams = Array.from({length: options.teams}, (_, k) => ({id: `30000000-0000-4000-8000-${hex(k + 1, 12)}`, name: `team-${k + 1}`}))
  // Ten CI bots first: with the Zipf weights below they are the busiest actors, as in real accounts.
  const actors = Array.from({length: options.actors}, (_, k) => ({
    id: `10000000-0000-4000-8000-${hex(k + 1, 12)}`,
    email: k < 10 ? `ci-bot-${k + 1}@acme.example.com` : `user${String(k + 1).padStart(4, '0')}@acme.example.com`,
    // One to four addresses of one's own (office, home, VPN…), drawn from a pool shared by everyone.
    addresses: Array.from({length: 1 + Math.floor(random() * 4)}, () => address(Math.floor(random() * 4000))),
  }))
  const apps = Array.from({length: options.apps}, (_, k) => ({
    app: {id: `20000000-0000-4000-8000-${hex(k + 1, 12)}`, name: `${['api', 'web', 'worker', 'etl', 'bff'][k % 5]}-${String(k + 1).padStart(4, '0')}`},
    team: k % 7 === 6 ? null : teams[k % teams.length],
    owner: actors[(k * 7) % actors.length],
  }))
  const actorRank = zipf(actors.length, 1.1)
  const appRank = zipf(apps.length, 1.0)

  return (event: AuditEvent, random: () => number): AuditEvent => {
    const actor = actors[actorRank(random)]
    const recast: AuditEvent = {...event}
    if (event.actor) recast.actor = {id: actor.id, email: actor.email}
    if (event.app) {
      const {app, team, owner} = apps[appRank(random)]
      recast.app = app
      recast.owner = {id: owner.id, email: owner.email}
      recast.team = team
    } else if (event.team) {
      recast.team = teams[Math.floor(random() * teams.length)]
    }

    // Now and then a rare action (a rollback, about one event in 2,000): a search for it finds few.
    if (event.type === 'app' && random() < 0.0015) recast.action = 'rollback'
    if (event.request) {
      // Mostly from one's own addresses; now and then from anywhere (travel, a new laptop).
      const ip = random() < 0.9 ? actor.addresses[Math.floor(random() * actor.addresses.length)] : address(Math.floor(random() * 6000))
      recast.request = {ip_address: ip}
    }

    return recast
  }
}

/** The year's days, each with how many events it gets: weekdays 1.15, weekends 0.35 of the mean. */
export function busyDays(options: BusyAccountOptions): Array<{day: string; count: number}> {
  const days = Array.from({length: 365}, (_, k) => addDays(options.lastDay, k - 364))
  const weight = (day: string) => (isoWeekday(day) >= 6 ? 0.35 : 1.15)
  const total = days.reduce((sum, day) => sum + weight(day), 0)
  return days.map((day) => ({day, count: Math.round((options.events * weight(day)) / total)}))
}

/** One day of the busy account's events, sorted by created_at. */
export function busyDay(day: string, count: number, recast: ReturnType<typeof population>): AuditEvent[] {
  const random = random32(Number(day.replaceAll('-', '')))
  return (generateEvents(day, count, {seed: 3}) as AuditEvent[]).map((event) => ({...recast(event, random), enterprise_account: ENTERPRISE_ACCOUNT}))
}

/**
 * Loads the year into the store the way the day job does: one transaction per day, one append per
 * page of 1000 (COPY on PostgreSQL). Returns the events stored.
 */
export async function seedBusyAccount(db: Kysely<Database>, options: BusyAccountOptions, progress?: (day: string, stored: number) => void): Promise<number> {
  const recast = population({actors: options.actors ?? 300, apps: options.apps ?? 3000, teams: options.teams ?? 40})
  const days = busyDays(options)
  await ensurePartitions(db, days.map((d) => d.day))
  const store = eventStoreFor(db)
  let stored = 0
  for (const {day, count} of days) {
    const events = busyDay(day, count, recast)
    await store.transaction(async (_trx, append) => {
      for (let k = 0; k < events.length; k += 1000) {
        const page = events.slice(k, k + 1000)
        await append(page.map((event, n) => eventRecord(day, event, JSON.stringify(event), k + n + 1)))
      }
    })
    stored += events.length
    progress?.(day, stored)
  }

  return stored
}
