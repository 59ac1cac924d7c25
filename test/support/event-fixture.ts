/** Stored events the `events` suites share: plain ones for every filter, and the hostile and odd ones. */
import type {Kysely} from 'kysely'

import {addDays, todayUtc, yesterdayUtc} from '../../src/lib/dates.js'
import type {Database} from '../../src/lib/db/schema.js'
import type {AuditEvent} from '../../src/lib/heroku/types.js'
import {seedEvents} from './event-seed.js'

export const D1 = '2025-09-27'
export const D2 = '2025-09-28'
export const D3 = '2025-09-30'
export const YESTERDAY = yesterdayUtc()
/** The first day of the default window (the last 7 days ending yesterday), the day before it, and today. */
export const WINDOW_FIRST = addDays(YESTERDAY, -6)
export const BEFORE_WINDOW = addDays(YESTERDAY, -7)
export const TODAY = todayUtc()

const ACTORS = ['ann@example.com', 'bob@example.com']
const TYPES = ['app', 'addon', 'collaborator']
const ACTIONS = ['create', 'destroy']
const APPS = ['billing-api', 'web']
const IPS = ['203.0.113.7', '198.51.100.2']

/**
 * The n-th plain event of a day. Its actor, type, action, app and IP are independent digits of n
 * (2 × 3 × 2 × 2 × 2 = 48 combinations), so each filter narrows any combination of the others;
 * created_at is deliberately out of step with n, so the order seen is the store's, not the insertion's.
 */
export function event(day: string, n: number): AuditEvent {
  const actor = n % 2
  const app = Math.floor(n / 12) % 2
  return {
    id: `${day}-e${String(n).padStart(2, '0')}`,
    type: TYPES[Math.floor(n / 2) % 3],
    action: ACTIONS[Math.floor(n / 6) % 2],
    created_at: `${day}T${String((n * 5) % 24).padStart(2, '0')}:${String(n % 60).padStart(2, '0')}:00Z`,
    actor: {id: `actor-${actor}`, email: ACTORS[actor]},
    app: {id: `app-${app}`, name: APPS[app]},
    owner: {email: 'owner@example.com'},
    enterprise_account: {id: 'ea-1', name: 'acme'},
    team: {name: 'ops'},
    request: {ip_address: IPS[Math.floor(n / 24) % 2]},
    data: {n},
  }
}

/** Everything hostile a user can type into a field the API reports. */
export const HOSTILE: AuditEvent = {
  id: 'hostile-1',
  type: 'app',
  action: 'update',
  created_at: `${D2}T23:30:00Z`,
  actor: {id: '+1-actor', email: 'mallory\u001B]0;pwned\u0007@example.com'},
  app: {id: '@app', name: '=HYPERLINK("http://evil.example","click")'},
  owner: {email: '-2+3@example.com'},
  enterprise_account: {name: 'acme, "inc"'},
  team: {name: 'ops\r\nforged,row'},
  request: {ip_address: '\t198.51.100.9'},
  data: {note: 'line1\nline2\u2028\u202E\u009B'},
}

/** The hostile event's row as a spreadsheet must see it: guarded, escaped, quoted (RFC 4180). */
export const HOSTILE_CSV =
  `${D2}T23:30:00.000Z,${D2},hostile-1,app,update,mallory\\x1B]0;pwned\\x07@example.com,'+1-actor,` +
  `"'=HYPERLINK(""http://evil.example"",""click"")",'@app,'-2+3@example.com,"ops\\x0D\\x0Aforged,row",'\\x09198.51.100.9,"acme, ""inc"""\r\n`

/** An element stored byte for byte as the API wrote it: spacing and escapes that a serializer would change. */
export const ODD_TEXT = `{"id":"odd-1", "type":"app","action":"create" ,"created_at":"${D3}T01:00:00Z","actor":{"email":"ann@example.com"},"data":{"caf\\u00e9":"\\ud83e\\udd86"}}`
export const ODD = JSON.parse(ODD_TEXT) as AuditEvent

/** An element the API pretty-printed over several lines; stored as it came, indented inside its array. */
export const PRETTY: AuditEvent = {...event(D3, 30), id: 'pretty-1', created_at: `${D3}T02:00:00Z`}
export const PRETTY_STORED = JSON.stringify(PRETTY, null, 2).replaceAll('\n', '\n  ')

export interface StoredDay {
  day: string
  events: AuditEvent[]
  /** The page's text when not JSON.stringify(events). */
  body?: string
}

export const FIXTURE: StoredDay[] = [
  {day: D1, events: Array.from({length: 48}, (_, n) => event(D1, n))},
  {day: D2, events: [...Array.from({length: 12}, (_, n) => event(D2, n)), HOSTILE]},
  {day: D3, events: [ODD], body: `[${ODD_TEXT}]`},
  {day: D3, events: [PRETTY], body: JSON.stringify([PRETTY], null, 2)},
  {day: D3, events: Array.from({length: 4}, (_, n) => event(D3, n))},
  {day: BEFORE_WINDOW, events: [event(BEFORE_WINDOW, 1)]},
  {day: WINDOW_FIRST, events: [event(WINDOW_FIRST, 1), event(WINDOW_FIRST, 2)]},
  {day: YESTERDAY, events: [event(YESTERDAY, 3)]},
  {day: TODAY, events: [event(TODAY, 1)]},
]

/** The fixture's events with their day, in the store's order: day, created_at, id. */
export const ALL = FIXTURE.flatMap(({day, events}) => events.map((e) => ({day, event: e}))).sort(
  (a, b) => a.day.localeCompare(b.day) || Date.parse(a.event.created_at) - Date.parse(b.event.created_at) || (a.event.id < b.event.id ? -1 : 1),
)

/** The ids of the fixture's events of from..to that `keep` keeps, in the store's order. */
export function idsWhere(from: string, to: string, keep: (e: AuditEvent) => boolean = () => true): string[] {
  return ALL.filter(({day, event: e}) => day >= from && day <= to && keep(e)).map(({event: e}) => e.id)
}

/** Each filter alone, and all five together (which each one narrows: see the suites), with what it keeps. */
export const FILTER_CASES: Array<{filter: Record<string, string>; keep: (e: AuditEvent) => boolean}> = [
  {filter: {actor: 'bob@example.com'}, keep: (e) => e.actor?.email === 'bob@example.com'},
  {filter: {type: 'addon'}, keep: (e) => e.type === 'addon'},
  {filter: {action: 'destroy'}, keep: (e) => e.action === 'destroy'},
  {filter: {app: 'web'}, keep: (e) => e.app?.name === 'web'},
  {filter: {ip: '198.51.100.2'}, keep: (e) => e.request?.ip_address === '198.51.100.2'},
  {filter: {app: '=HYPERLINK("http://evil.example","click")'}, keep: (e) => e.id === HOSTILE.id},
]

export const ALL_FIVE = {actor: 'ann@example.com', type: 'app', action: 'create', app: 'billing-api', ip: '203.0.113.7'}

export function keepAllFive(e: AuditEvent, leaveOut?: keyof typeof ALL_FIVE): boolean {
  const checks: Record<keyof typeof ALL_FIVE, boolean> = {
    actor: e.actor?.email === ALL_FIVE.actor,
    type: e.type === ALL_FIVE.type,
    action: e.action === ALL_FIVE.action,
    app: e.app?.name === ALL_FIVE.app,
    ip: e.request?.ip_address === ALL_FIVE.ip,
  }
  return Object.entries(checks).every(([name, ok]) => name === leaveOut || ok)
}

export async function storeDay(db: Kysely<Database>, {day, events, body}: StoredDay): Promise<void> {
  await seedEvents(db, day, body ?? events)
}

/** Stores `perDay` events of about 1.3 KB on each day, in one transaction a day. */
export async function storeMany(db: Kysely<Database>, days: readonly string[], perDay: number): Promise<void> {
  for (const day of days) {
    const events = Array.from({length: perDay}, (_, k) => ({...event(day, k % 24), id: `${day}-big-${String(k).padStart(6, '0')}`, data: {pad: 'x'.repeat(1000)}}))
    await seedEvents(db, day, events)
  }
}
