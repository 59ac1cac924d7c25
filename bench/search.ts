/**
 * Benchmarks 5 and 5e (`search`, `search-embedded`): `/api/events` over a year of a busy account,
 * each filter alone and combined, newest first, over the whole store and 30 days back, and the
 * next page by cursor; then the query plans searchEvents relies on (EXPLAIN (ANALYZE, BUFFERS)).
 * The store is seeded once per engine and shared with the `events` CLI benchmark (events-cli.ts).
 */
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {CompiledQuery, type Kysely, type KyselyPlugin, sql} from 'kysely'

import {addDays, yesterdayUtc} from '../src/lib/dates.js'
import {createDb} from '../src/lib/db/connection.js'
import {openEmbeddedDb} from '../src/lib/db/embedded.js'
import {type EventFilter, searchEvents, storeStats} from '../src/lib/db/event-queries.js'
import {migrateToLatest} from '../src/lib/db/migrate.js'
import type {Database} from '../src/lib/db/schema.js'
import {createLogger} from '../src/lib/logger.js'
import {buildApp} from '../src/lib/web/app.js'
import {DEFAULT_EVENTS_PAGE} from '../src/lib/web/event-view.js'
import type {VersionInfo} from '../src/lib/web/version.js'
import {createScratchDatabase} from '../test/support/db.js'
import {seedBusyAccount} from './busy-account.js'
import {runLoadInWorker} from './load-worker.js'
import {percentile, table, verdict} from './support.js'

export type EngineName = 'postgres' | 'embedded'

/** Values worth searching for, found in the seeded store. */
export interface SearchValues {
  busiestActor: string
  typicalActor: string
  busiestApp: string
  typicalApp: string
  busiestIp: string
  typicalIp: string
  rarestType: string
  rarestAction: string
}

export interface SeededStore {
  engine: EngineName
  label: string
  /** What a bin/run.js process needs to reach the store (DATABASE_URL or AUDIT_LOGGER_DATA_DIR). */
  env: Record<string, string>
  events: number
  firstDay: string
  lastDay: string
  seedSeconds: number
  bytes: number
  values: SearchValues
  /** Runs `work` on the store (the embedded one is opened for it, then released for other processes). */
  use<T>(work: (db: Kysely<Database>) => Promise<T>): Promise<T>
}

const seeded = new Map<EngineName, Promise<SeededStore>>()
const cleanups: Array<() => void> = []

/** How many events each engine's store gets: BENCH_STORE_EVENTS / BENCH_EMBEDDED_STORE_EVENTS. */
export function storeEvents(engine: EngineName): number {
  return engine === 'postgres' ? Number(process.env.BENCH_STORE_EVENTS ?? 2_000_000) : Number(process.env.BENCH_EMBEDDED_STORE_EVENTS ?? 200_000)
}

/** The engine's seeded store, made on first use (several minutes for 2,000,000 events). */
export function seededStore(engine: EngineName, out: (line?: string) => void): Promise<SeededStore> {
  let store = seeded.get(engine)
  if (!store) {
    store = seed(engine, out)
    seeded.set(engine, store)
  }

  return store
}

/** Removes the embedded stores' directories (the scratch databases are dropped by run.ts). */
export function removeSeededStores(): void {
  for (const cleanup of cleanups.splice(0)) cleanup()
}

async function seed(engine: EngineName, out: (line?: string) => void): Promise<SeededStore> {
  const events = storeEvents(engine)
  const lastDay = yesterdayUtc()
  let use: SeededStore['use']
  let env: Record<string, string>
  let label: string
  if (engine === 'postgres') {
    const url = await createScratchDatabase('bench')
    // The pool `serve` has (createDb's default size).
    const db = createDb({url, ssl: 'disable'})
    use = (work) => work(db)
    env = {DATABASE_URL: url}
    label = 'PostgreSQL 15 server'
  } else {
    const dir = mkdtempSync(join(tmpdir(), 'audit-logger-bench-store-'))
    cleanups.push(() => rmSync(dir, {recursive: true, force: true}))
    use = async (work) => {
      const embedded = await openEmbeddedDb(dir)
      try {
        return await work(embedded.db)
      } finally {
        await embedded.close()
      }
    }

    env = {AUDIT_LOGGER_DATA_DIR: dir}
    label = 'embedded engine (PGlite)'
  }

  out(`(seeding the ${label} with a year of a busy account, ${events.toLocaleString('en')} events, through the store's own loader…)`)
  const started = performance.now()
  const stored = await use(async (db) => {
    await migrateToLatest(db)
    const n = await seedBusyAccount(db, {lastDay, events})
    // A year of days is vacuumed and analyzed by autovacuum as it goes; here, at once.
    await sql`VACUUM (ANALYZE) audit_events`.execute(db)
    return n
  })
  const seedSeconds = (performance.now() - started) / 1000
  const {bytes, values} = await use(async (db) => ({bytes: (await storeStats(db)).bytes, values: await searchValues(db)}))
  out(`(seeded ${stored.toLocaleString('en')} events in ${seedSeconds.toFixed(0)} s, ${Math.round(stored / seedSeconds).toLocaleString('en')} events/s, VACUUM ANALYZE included; ` +
    `${(bytes / 1024 ** 3).toFixed(2)} GB on disk, ${Math.round(bytes / stored)} bytes an event, indexes included)`)
  return {engine, label, env, events: stored, firstDay: addDays(lastDay, -364), lastDay, seedSeconds, bytes, values, use}
}

/** The busiest and a middling value of each column, and the rarest type and action. */
async function searchValues(db: Kysely<Database>): Promise<SearchValues> {
  const ranked = async (column: 'actor_email' | 'app_name' | 'ip_address' | 'type' | 'action') => {
    const {rows} = await sql<{value: string}>`
      SELECT ${sql.ref(column)} AS value FROM audit_events WHERE ${sql.ref(column)} IS NOT NULL
      GROUP BY 1 ORDER BY count(*) DESC, 1`.execute(db)
    return rows.map((r) => r.value)
  }

  const [actors, apps, ips, types, actions] = [await ranked('actor_email'), await ranked('app_name'), await ranked('ip_address'), await ranked('type'), await ranked('action')]
  const middle = (values: string[]) => values[Math.floor(values.length / 2)]
  return {
    busiestActor: actors[0],
    typicalActor: middle(actors),
    busiestApp: apps[0],
    typicalApp: middle(apps),
    busiestIp: ips[0],
    typicalIp: middle(ips),
    rarestType: types.at(-1)!,
    rarestAction: actions.at(-1)!,
  }
}

/** What the benchmark searches for: each filter, busiest and middling values, and two combinations. */
function searches(values: SearchValues): Array<{name: string; filter: EventFilter}> {
  return [
    {name: 'no filter', filter: {}},
    {name: 'actor (busiest)', filter: {actor: values.busiestActor}},
    {name: 'actor (middling)', filter: {actor: values.typicalActor}},
    {name: 'app (busiest)', filter: {app: values.busiestApp}},
    {name: 'app (middling)', filter: {app: values.typicalApp}},
    {name: 'ip (busiest)', filter: {ip: values.busiestIp}},
    {name: 'ip (middling)', filter: {ip: values.typicalIp}},
    {name: `type (rarest: ${values.rarestType})`, filter: {type: values.rarestType}},
    {name: `action (rarest: ${values.rarestAction})`, filter: {action: values.rarestAction}},
    {name: 'action matching nothing (a typo)', filter: {action: 'destory'}},
    {name: 'actor (busiest) + type app + action destroy', filter: {actor: values.busiestActor, type: 'app', action: 'destroy'}},
    {name: 'app (middling) + action destroy', filter: {app: values.typicalApp, action: 'destroy'}},
  ]
}

const CREDENTIALS = {username: 'ops', password: 'bench'}
const AUTH = {authorization: `Basic ${Buffer.from(`${CREDENTIALS.username}:${CREDENTIALS.password}`).toString('base64')}`}
const VERSION: VersionInfo = {version: 'bench', commit: 'bench', commitShort: 'bench', release: 'bench', releaseCreatedAt: 'bench', builtAt: 'bench', stack: 'bench', appName: 'bench', dynoId: 'bench'}

function query(filter: EventFilter, extra: Record<string, string> = {}): string {
  const params = new URLSearchParams()
  for (const [key, value] of Object.entries({...filter, ...extra})) if (value) params.set(key, value)
  const text = params.toString()
  return text ? `?${text}` : ''
}

export async function searchBench(out: (line?: string) => void, engine: EngineName, seconds: number): Promise<void> {
  const store = await seededStore(engine, out)
  const window = {from: addDays(store.lastDay, -29), to: store.lastDay}
  out(`## 5${engine === 'embedded' ? 'e' : ''}. Searching ${store.events.toLocaleString('en')} events on the ${store.label}: /api/events (${DEFAULT_EVENTS_PAGE} a page), 10 connections, ${seconds} s a search`)
  out(`     the store: a year of days ${store.firstDay} … ${store.lastDay}; "30 days" is from=${window.from}&to=${window.to}; the status page runs in this process (buildApp, signed in), the clients on a thread of their own`)
  const rows: Array<Record<string, string | number>> = []
  const plans: Array<{name: string; filter: EventFilter; cursor: boolean}> = []
  let allOk = true
  await store.use(async (db) => {
    const app = await buildApp({db, config: {auth: CREDENTIALS, port: 0, staleAfterMinutes: 15, onDyno: false}, version: VERSION, logger: createLogger('warn'), store: {enabled: true}})
    const base = await app.listen({host: '127.0.0.1', port: 0})
    try {
      for (const {name, filter: only} of searches(store.values)) {
        for (const [span, filter] of [['year', only], ['30 days', {...only, ...window}]] as const) {
          const first = await fetch(`${base}/api/events${query(filter)}`, {headers: AUTH})
          const page = (await first.json()) as {events: unknown[]; next: string | null}
          const targets: Array<[string, string]> = [['first page', `${base}/api/events${query(filter)}`]]
          if (page.next && span === 'year') targets.push(['next page (cursor)', `${base}/api/events${query(filter, {cursor: page.next})}`])
          for (const [which, url] of targets) {
            await runLoadInWorker(url, {connections: 10, durationMs: 500, maxRequests: 5000, headers: AUTH}) // warm-up
            const result = await runLoadInWorker(url, {connections: 10, durationMs: seconds * 1000, maxRequests: 200_000, headers: AUTH})
            const p99 = percentile(result.latenciesMs, 99)
            const ok = result.errors === 0 && result.non2xx === 0 && p99 < 100
            allOk &&= ok
            rows.push({
              search: name,
              days: span,
              page: which,
              hits: which === 'first page' ? page.events.length : '',
              'req/s': Math.round(result.requests / result.seconds),
              'p50 (ms)': percentile(result.latenciesMs, 50).toFixed(1),
              'p99 (ms)': p99.toFixed(1),
              'errors/non-2xx': `${result.errors}/${result.non2xx}`,
              '': ok ? '' : 'OVER',
            })
            plans.push({name: `${name}, ${span}, ${which}`, filter, cursor: which !== 'first page'})
          }
        }
      }
    } finally {
      await app.close()
    }

    out(table(rows))
    out(verdict(allOk, `every search's p99 under 100 ms at 10 connections, no errors (${engine === 'postgres' ? 'PostgreSQL' : 'embedded engine'})`))
    out()
    out(`The query plans searchEvents relies on (${store.label}; EXPLAIN (ANALYZE, BUFFERS) of the SQL it sends, as compiled by Kysely; month partitions the scan never reached are counted, not shown):`)
    for (const plan of plans) {
      const cursor = plan.cursor ? (await searchEvents(db, plan.filter, {order: 'newest', limit: DEFAULT_EVENTS_PAGE})).next : undefined
      const lines = await explain(db, plan.filter, cursor)
      out()
      out(`-- ${plan.name}`)
      for (const line of lines) out(`   ${line}`)
    }
  })
}

/** The plan of the query searchEvents sends for this search, trimmed to the lines that matter. */
async function explain(db: Kysely<Database>, filter: EventFilter, cursor: Awaited<ReturnType<typeof searchEvents>>['next']): Promise<string[]> {
  const compiled: Array<CompiledQuery> = []
  const executor = db.getExecutor()
  const capture: KyselyPlugin = {
    transformQuery({node, queryId}) {
      compiled.push(executor.compileQuery(node, queryId))
      return node
    },
    async transformResult({result}) {
      return result
    },
  }
  await searchEvents(db.withPlugin(capture), filter, {order: 'newest', cursor, limit: DEFAULT_EVENTS_PAGE})
  const query = compiled.at(-1)!
  const plan = await db.executeQuery<{'QUERY PLAN': string}>(CompiledQuery.raw(`EXPLAIN (ANALYZE, BUFFERS) ${query.sql}`, [...query.parameters]))
  const where = query.sql.slice(query.sql.indexOf(' where ')).replace(/ order by .*/, '')
  return [`SQL: select … from "audit_events"${where} order by day desc, created_at desc, id desc limit $n`, ...trimPlan(plan.rows.map((r) => r['QUERY PLAN']))]
}

/** Drops each partition scan that never ran (with its detail lines), counting them instead. */
export function trimPlan(lines: string[]): string[] {
  const kept: string[] = []
  let skipDeeperThan = -1
  let skipped = 0
  const indent = (line: string) => line.length - line.trimStart().length
  for (const line of lines) {
    if (skipDeeperThan >= 0 && indent(line) > skipDeeperThan) continue
    skipDeeperThan = -1
    if (line.includes('(never executed)')) {
      skipped++
      skipDeeperThan = indent(line)
      continue
    }

    kept.push(line)
  }

  if (skipped) kept.push(`(${skipped} partition scans never executed: the limit was reached before them)`)
  return kept
}
