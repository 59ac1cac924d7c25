/**
 * Benchmark 1: a big day, `process --date D --format json > /dev/null`, with the event store on
 * (the default) and off (EVENT_STORE=off), against the bare paged-fetch floor; then what the
 * stored day takes on disk. On PostgreSQL (`big-day`) or the embedded engine (`big-day-embedded`).
 */
import {mkdtempSync, rmSync} from 'node:fs'
import {cpus, tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'

import {type Kysely, sql} from 'kysely'

import {addDays, todayUtc} from '../src/lib/dates.js'
import {partitionOf} from '../src/lib/db/event-store.js'
import {openEmbeddedDb} from '../src/lib/db/embedded.js'
import {migrateToLatest} from '../src/lib/db/migrate.js'
import type {Database} from '../src/lib/db/schema.js'
import {generateEvents} from '../test/fake-heroku/events.js'
import {startFakeHeroku} from '../test/fake-heroku/server.js'
import {createScratchDatabase, openTestDb} from '../test/support/db.js'
import {watchServerCpu} from './server-cpu.js'
import {type Measurement, measure, median, spread, table, verdict} from './support.js'

const FLOOR = fileURLToPath(new URL('floor.mjs', import.meta.url))

/** Where a run's records and events go, and how the bench reaches them between runs. */
export interface Engine {
  label: string
  /** The PostgreSQL database's name, to watch its backends' CPU; none for the embedded engine (in the process). */
  database?: string
  env: Record<string, string>
  /** Runs `work` on the database (the embedded one is opened for it, then released for the next run). */
  use<T>(work: (db: Kysely<Database>) => Promise<T>): Promise<T>
  close(): Promise<void>
}

export async function postgresEngine(): Promise<Engine> {
  const url = await createScratchDatabase('bench')
  const db = openTestDb(url)
  await migrateToLatest(db)
  return {label: 'PostgreSQL 15 server', database: new URL(url).pathname.slice(1), env: {DATABASE_URL: url}, use: (work) => work(db), close: () => db.destroy()}
}

export async function embeddedEngine(): Promise<Engine> {
  const dir = mkdtempSync(join(tmpdir(), 'audit-logger-bench-embedded-'))
  // Created and migrated here, so no measured run pays for initdb.
  const first = await openEmbeddedDb(dir)
  await migrateToLatest(first.db)
  await first.close()
  return {
    label: 'embedded engine (PGlite)',
    env: {AUDIT_LOGGER_DATA_DIR: dir},
    async use(work) {
      const embedded = await openEmbeddedDb(dir)
      try {
        return await work(embedded.db)
      } finally {
        await embedded.close()
      }
    },
    async close() {
      rmSync(dir, {recursive: true, force: true})
    },
  }
}

export interface StoreSize {
  events: number
  /** Table, TOAST and indexes. */
  total: number
  /** Table and TOAST, no indexes. */
  table: number
  indexes: Array<{name: string; bytes: number}>
  /** The API's JSON text of an event, on average. */
  jsonBytes: number
}

/** What one month partition of the store takes on disk. */
export async function partitionSize(db: Kysely<Database>, partition: string): Promise<StoreSize> {
  const sizes = await sql<{events: number; total: number; table: number; json: number}>`
    SELECT (SELECT count(*) FROM ${sql.table(partition)})::int AS events,
           pg_total_relation_size(${partition}::regclass)::bigint AS total,
           pg_table_size(${partition}::regclass)::bigint AS table,
           (SELECT coalesce(avg(octet_length(event_json)), 0) FROM ${sql.table(partition)})::float8 AS json`.execute(db)
  const indexes = await sql<{name: string; bytes: number}>`
    SELECT c.relname AS name, pg_relation_size(i.indexrelid)::bigint AS bytes
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
    WHERE i.indrelid = ${partition}::regclass ORDER BY c.relname`.execute(db)
  const row = sizes.rows[0]
  return {events: row.events, total: Number(row.total), table: Number(row.table), jsonBytes: row.json, indexes: indexes.rows.map((r) => ({name: r.name, bytes: Number(r.bytes)}))}
}

/** Bytes per event: the whole partition, the table alone, each index; beside the JSON text's own size. */
export function sizeTable(size: StoreSize): string {
  const per = (bytes: number) => (size.events ? (bytes / size.events).toFixed(0) : '-')
  const mb = (bytes: number) => (bytes / 1024 / 1024).toFixed(1)
  return table([
    {part: 'table + indexes (pg_total_relation_size)', MB: mb(size.total), 'bytes/event': per(size.total)},
    {part: 'table alone, TOAST included (pg_table_size)', MB: mb(size.table), 'bytes/event': per(size.table)},
    ...size.indexes.map((index) => ({part: `  index ${index.name}`, MB: mb(index.bytes), 'bytes/event': per(index.bytes)})),
    {part: "the API's JSON text of an event (average)", MB: mb(size.jsonBytes * size.events), 'bytes/event': size.jsonBytes.toFixed(0)},
  ])
}

/** A measured run, with the CPU the database server and the fake API (this process) spent meanwhile. */
interface Run extends Measurement {
  serverCpu: number
  apiCpu: number
}

async function measureWithServers(engine: Engine, command: string, args: string[], env: NodeJS.ProcessEnv): Promise<Run> {
  const server = engine.database ? await watchServerCpu(engine.database) : undefined
  const before = process.cpuUsage()
  const run = await measure(command, args, env)
  const api = process.cpuUsage(before)
  return {...run, serverCpu: (await server?.stop()) ?? Number.NaN, apiCpu: (api.user + api.system) / 1e6}
}

export async function bigDay(out: (line?: string) => void, bin: string, runs: number, engineName: 'postgres' | 'embedded'): Promise<void> {
  const engine = engineName === 'postgres' ? await postgresEngine() : await embeddedEngine()
  out(`## 1${engineName === 'embedded' ? 'e' : ''}. A big day on the ${engine.label}: process --date D --format json > /dev/null, store on and off`)
  // The empty day is the fixed cost of a run (start-up, database, one request), for both sides.
  // Recent days: a day older than EVENT_RETENTION_DAYS (365) would be pruned at the end of the run.
  const [bigDate, smallDate, emptyDate] = [3, 2, 1].map((back) => addDays(todayUtc(), -back))
  const days = {[bigDate]: 100_000, [smallDate]: 10_000, [emptyDate]: 0}
  const fake = await startFakeHeroku({
    events: Object.fromEntries(Object.entries(days).map(([day, n]) => [day, generateEvents(day, n)])),
    rateLimitRemaining: 1_000_000_000,
  })
  const env = {PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...engine.env, HEROKU_API_URL: fake.url, HEROKU_API_TOKEN: fake.token, HEROKU_ACCOUNT_ID: 'acme', LOG_LEVEL: 'warn'}
  // Both tables emptied before every run: each stores its day into an empty store.
  const empty = () => engine.use((db) => sql`TRUNCATE audit_events_log, audit_events`.execute(db))
  const rows: Array<Record<string, string | number>> = []
  const figures: Record<string, {on: number; off: number; onRss: number; offRss: number; floor: number}> = {}
  let bigSize: StoreSize | undefined
  try {
    for (const [day, events] of Object.entries(days)) {
      const on: Run[] = []
      const off: Run[] = []
      const floors: Run[] = []
      const fetchFloors: Run[] = []
      for (let i = 0; i < runs; i++) {
        // On and off alternate, so a change in the machine's load falls on both alike.
        for (const [store, list] of [['on', on], ['off', off]] as const) {
          await empty()
          const run = await measureWithServers(engine, bin, ['process', '--date', day, '--format', 'json'], {...env, EVENT_STORE: store})
          if (run.code !== 0) throw new Error(`process --date ${day} with the store ${store} exited ${run.code}`)
          const stored = await engine.use((db) => sql<{n: number}>`SELECT count(*)::int AS n FROM audit_events`.execute(db))
          if (stored.rows[0].n !== (store === 'on' ? events : 0)) throw new Error(`the store holds ${stored.rows[0].n} events after a run with the store ${store}`)
          if (store === 'on' && events === 100_000) bigSize = await engine.use((db) => partitionSize(db, partitionOf(day).name))
          list.push(run)
        }

        for (const [transport, list] of [['http', floors], ['fetch', fetchFloors]] as const) {
          const floor = await measureWithServers(engine, process.execPath, [FLOOR, fake.url, fake.token, day, transport, String(events)], env)
          if (floor.code !== 0) throw new Error(`the ${transport} floor for ${day} exited ${floor.code}`)
          list.push(floor)
        }
      }

      const floor = median(floors.map((r) => r.seconds))
      figures[day] = {on: median(on.map((r) => r.seconds)), off: median(off.map((r) => r.seconds)), onRss: median(on.map((r) => r.maxRssMb)), offRss: median(off.map((r) => r.maxRssMb)), floor}
      const row = (what: string, list: Run[], judged = true) => ({
        events,
        run: what,
        'wall (s)': spread(list.map((r) => r.seconds)),
        'events/s': events ? Math.round(events / median(list.map((r) => r.seconds))) : '-',
        'peak RSS (MB)': spread(list.map((r) => r.maxRssMb), 0),
        'CPU (s)': spread(list.map((r) => r.cpuSeconds)),
        ...(engine.database ? {'DB server CPU (s)': spread(list.map((r) => r.serverCpu))} : {}),
        'fake API CPU (s)': spread(list.map((r) => r.apiCpu)),
        'x floor': judged ? (median(list.map((r) => r.seconds)) / floor).toFixed(2) : '-',
      })
      rows.push(row('store on', on), row('EVENT_STORE=off', off), row('floor (node:http)', floors), row('floor (fetch)', fetchFloors, false))
    }
  } finally {
    await fake.close()
  }

  out(table(rows))
  out(`     median (min–max) of ${runs} runs each; CPU is the process's own (user + system)${engine.database ? ", DB server CPU its database's backends'" : ' (the engine runs inside it)'}, fake API CPU this bench process's (it serves the pages) — all on ${cpus().length} cores`)
  const big = figures[bigDate]
  const small = figures[smallDate]
  const none = figures[emptyDate]
  out(verdict(big.on <= 1.5 * big.floor, `100,000 events, store on, within 1.5x the floor (${(big.on / big.floor).toFixed(2)}x; store off ${(big.off / big.floor).toFixed(2)}x)`))
  out(verdict(big.onRss < 150, `100,000 events, store on, peak RSS under 150 MB (${big.onRss.toFixed(0)} MB; store off ${big.offRss.toFixed(0)} MB)`))
  out(`     the store's cost: ${(big.on - big.off).toFixed(2)} s (${(((big.on - big.off) / big.off) * 100).toFixed(0)}%) on 100,000 events, ${(none.on - none.off).toFixed(2)} s on the empty day`)
  out(`     fixed cost of a run (the empty day): ${none.on.toFixed(2)} s against the floor's ${none.floor.toFixed(2)} s; above it, 100,000 events take ` +
    `${(big.on - none.on).toFixed(2)} s with the store on, ${(big.off - none.off).toFixed(2)} s off, against the floor's ${(big.floor - none.floor).toFixed(2)} s`)
  out(verdict(big.onRss / small.onRss < 2, `memory does not grow in proportion to events: 10x events -> ${(big.onRss / small.onRss).toFixed(2)}x RSS (store on)`))
  if (bigSize) {
    out()
    out(`The stored 100,000-event day on disk (its month partition, right after the run; the fake's events average ${bigSize.jsonBytes.toFixed(0)} bytes of JSON):`)
    out(sizeTable(bigSize))
  }

  await engine.close()
}
