/**
 * Deterministic audit-trail events for the fake Heroku API.
 *
 * The same (day, count, seed) always yields the same events, so tests and benchmarks can
 * compare what the logger stored against what the fake served without keeping fixtures.
 * The shapes follow the `audit-trail-event` schema (see shared/heroku-audit-api.md),
 * including the optional parts: team events carry no `app`/`owner`, and a few system events
 * have a `null` actor and no request IP.
 */

export interface AuditUser {
  id: string
  email: string
}

export interface AuditNamed {
  id: string
  name: string
}

export interface AuditEvent {
  id: string
  type: string
  action: string
  actor?: AuditUser | null
  app?: AuditNamed | null
  owner?: AuditUser | null
  enterprise_account?: AuditNamed
  team?: AuditNamed | null
  request?: {ip_address: string}
  data?: Record<string, unknown>
  created_at: string
}

export interface GenerateOptions {
  /** Varies everything, ids included; default 1. */
  seed?: number
}

/** The account every generated event belongs to; the fake's default accounts list both forms. */
export const ENTERPRISE_ACCOUNT: AuditNamed = {id: '00000000-0000-4000-8000-000000000001', name: 'acme'}

const DAY_PATTERN = /^(\d{4})-(\d{2})-(\d{2})$/
const SECONDS_PER_DAY = 86_400

/** True when `day` is a real calendar day written `YYYY-MM-DD` (so `2025-02-30` is not). */
export function isValidDay(day: string): boolean {
  const match = DAY_PATTERN.exec(day)
  if (!match) return false
  const [year, month, date] = [Number(match[1]), Number(match[2]), Number(match[3])]
  const utc = new Date(Date.UTC(2000, month - 1, date))
  // Date.UTC maps years 0–99 to 1900–1999: the year is set on its own.
  utc.setUTCFullYear(year, month - 1, date)
  // Date.UTC rolls overflowing days/months into the next ones; a round trip exposes that.
  return utc.getUTCFullYear() === year && utc.getUTCMonth() === month - 1 && utc.getUTCDate() === date
}

/** A fixed UUID for the `index`-th member of a pool; `prefix` (one hex digit) keeps pools apart. */
function poolId(prefix: string, index: number): string {
  return `${prefix}0000000-0000-4000-8000-${(index + 1).toString(16).padStart(12, '0')}`
}

const USERS: AuditUser[] = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi'].map(
  (name, i) => ({id: poolId('1', i), email: `${name}@example.com`}),
)

const TEAMS: AuditNamed[] = ['platform', 'payments', 'data'].map((name, i) => ({id: poolId('3', i), name}))

const APPS: {app: AuditNamed; team: AuditNamed | null; owner: AuditUser}[] = [
  'billing-api', 'checkout-web', 'ledger-worker', 'reports-etl', 'status-page', 'search-indexer',
  'auth-gateway', 'marketing-site', 'mobile-bff', 'notifications',
].map((name, i) => ({
  app: {id: poolId('2', i), name},
  // Most apps are team-owned; a few personal apps have no team.
  team: i % 4 === 3 ? null : TEAMS[i % TEAMS.length],
  owner: USERS[i % USERS.length],
}))

const ADDON_PLANS = ['heroku-postgresql:essential-0', 'heroku-redis:mini', 'papertrail:choklad', 'scheduler:standard']
const CONFIG_KEYS = ['DATABASE_URL', 'REDIS_URL', 'LOG_LEVEL', 'SENTRY_DSN', 'FEATURE_FLAGS', 'WEB_CONCURRENCY']
const REGIONS = ['us', 'eu']

/** mulberry32: a tiny, well-distributed 32-bit PRNG, plenty for test data. */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
  }
}

/** FNV-1a, to turn (seed, day) into a PRNG seed so every day gets its own stream. */
function hashString(text: string): number {
  let hash = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193)
  }
  return hash >>> 0
}

type Random = () => number

function pick<T>(random: Random, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)]
}

/** What varies per kind of event; ids, timestamps and the account are filled in afterwards. */
type EventBody = Omit<AuditEvent, 'id' | 'created_at' | 'enterprise_account'>

interface Template {
  weight: number
  build: (random: Random) => EventBody
}

function ipAddress(random: Random): string {
  // Documentation ranges (RFC 5737) only.
  return `${pick(random, ['192.0.2', '198.51.100', '203.0.113'])}.${1 + Math.floor(random() * 254)}`
}

/** An event about an app, done by a user from some IP. */
function appEvent(random: Random, type: string, action: string, data: Record<string, unknown>): EventBody {
  const {app, team, owner} = pick(random, APPS)
  return {
    type,
    action,
    actor: pick(random, USERS),
    app,
    owner,
    team,
    request: {ip_address: ipAddress(random)},
    data,
  }
}

const TEMPLATES: Template[] = [
  {weight: 6, build: r => appEvent(r, 'app', 'create', {region: pick(r, REGIONS), stack: 'heroku-24'})},
  {weight: 2, build: r => appEvent(r, 'app', 'destroy', {})},
  {weight: 10, build: r => appEvent(r, 'app', 'update', {maintenance: r() < 0.5})},
  {weight: 6, build: r => appEvent(r, 'addon', 'create', {plan: pick(r, ADDON_PLANS)})},
  {weight: 6, build: r => appEvent(r, 'collaborator', 'create', {email: pick(r, USERS).email, permissions: ['view', 'deploy']})},
  // Only the names of config vars, as Heroku never puts secret values in the audit trail.
  {weight: 14, build: r => appEvent(r, 'config_var', 'update', {keys: [pick(r, CONFIG_KEYS)]})},
  {weight: 3, build: r => appEvent(r, 'applink_connection', 'create', {connection_name: `conn-${Math.floor(r() * 1000)}`})},
  {
    // Team events concern no app: `app` and `owner` are absent altogether.
    weight: 4,
    build: r => ({
      type: 'team_membership',
      action: 'create',
      actor: pick(r, USERS),
      team: pick(r, TEAMS),
      request: {ip_address: ipAddress(r)},
      data: {email: pick(r, USERS).email, role: pick(r, ['member', 'admin', 'viewer'])},
    }),
  },
  {
    // Done by Heroku itself (plan maintenance): no actor, no request IP.
    weight: 1,
    build: r => ({...appEvent(r, 'addon', 'update', {plan: pick(r, ADDON_PLANS), reason: 'maintenance'}), actor: null, request: undefined}),
  },
]

const TOTAL_WEIGHT = TEMPLATES.reduce((sum, t) => sum + t.weight, 0)

function pickTemplate(random: Random): Template {
  let roll = random() * TOTAL_WEIGHT
  for (const template of TEMPLATES) {
    roll -= template.weight
    if (roll < 0) return template
  }
  return TEMPLATES[TEMPLATES.length - 1]
}

function pad2(n: number): string {
  return n.toString().padStart(2, '0')
}

/**
 * `count` events spread over the UTC day `day`, sorted ascending by `created_at` (seconds
 * precision, as Heroku writes it; busy days therefore have ties).
 *
 * Ids are UUID-shaped, unique across days, and readable: `YYYYMMDD-SSSS-4000-8000-<index>`,
 * where SSSS is the seed's low 16 bits and the index counts up in `created_at` order.
 */
export function generateEvents(day: string, count: number, opts: GenerateOptions = {}): AuditEvent[] {
  if (!isValidDay(day)) throw new RangeError(`generateEvents: not a calendar day: ${JSON.stringify(day)}`)
  if (!Number.isInteger(count) || count < 0) throw new RangeError(`generateEvents: bad count: ${count}`)
  const seed = opts.seed ?? 1
  const random = mulberry32(hashString(`${seed}:${day}`))

  const seconds = Array.from({length: count}, () => Math.floor(random() * SECONDS_PER_DAY)).sort((a, b) => a - b)
  const idPrefix = `${day.replaceAll('-', '')}-${(seed & 0xffff).toString(16).padStart(4, '0')}-4000-8000-`

  return seconds.map((second, index) => {
    const body = pickTemplate(random).build(random)
    const time = `${pad2(Math.floor(second / 3600))}:${pad2(Math.floor(second / 60) % 60)}:${pad2(second % 60)}`
    const event: AuditEvent = {
      id: idPrefix + index.toString(16).padStart(12, '0'),
      ...body,
      enterprise_account: ENTERPRISE_ACCOUNT,
      created_at: `${day}T${time}Z`,
    }
    // Spread-in `undefined` would survive in the object (though not in JSON); drop it outright.
    if (event.request === undefined) delete event.request
    return event
  })
}

/**
 * Events whose payloads test a store and a page: a `\u0000` escape and a lone surrogate in
 * `data`, emoji, 50 KB of `data`, markup and terminal controls in what users typed, an event of
 * a type no list knows, and no optional part at all. Sorted by `created_at`, ids unique.
 */
export function oddEvents(day: string): AuditEvent[] {
  const base = generateEvents(day, 6, {seed: 7})
  const at = (k: number) => base[k].created_at
  return [
    {...base[0], data: {note: 'nul \u0000 inside', lone: '\ud800', emoji: '🦆🚀', crlf: 'a\r\nb'}},
    {...base[1], data: {blob: 'x'.repeat(50_000)}},
    {...base[2], app: {id: base[2].app?.id ?? 'app', name: '<script>alert(1)</script>'}, actor: {id: 'actor-odd', email: 'evil\u001B]0;title\u0007@example.com'}},
    {id: base[3].id, type: 'applink_connection', action: 'create', created_at: at(3)},
    {...base[4], request: {ip_address: '2001:db8::1'}},
    {...base[5], team: {id: 'team-odd', name: 'ops "quoted"\ttab'}},
  ]
}

/** The `count` UTC days before the one `now` falls in, oldest first: whole days only, never today. */
export function pastDays(count: number, now: number): string[] {
  const DAY_MS = 86_400_000
  const todayStart = Math.floor(now / DAY_MS) * DAY_MS
  return Array.from({length: count}, (_, k) => new Date(todayStart - (count - k) * DAY_MS).toISOString().slice(0, 10))
}
