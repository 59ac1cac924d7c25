/**
 * Benchmark 6 (`archives`, `archives-embedded`): a month of Heroku's audit archive, 310,000 events
 * over the 30 days of 2025-09, served by the loopback fake from a gzip file on disk.
 *
 * - `archives import --month 2025-09` into an empty store (a new scratch database, or a new
 *   embedded data directory, created and migrated before the measured run);
 * - `archives verify --month 2025-09` on that store, now full: every event matches;
 * - unjudged, `archives import` into a store whose 2025-09 partition exists already (filled in
 *   place, every index maintained as rows arrive, as for a month with a collected day);
 * - the floor (bench/archive-floor.mjs): the same file fetched, hashed with SHA-256, inflated and
 *   parsed, nothing else: each event cut out and parsed on its own, in bounded memory, as the
 *   archive reader does. Beside it, unjudged, one JSON.parse of the whole document: simpler, but
 *   slower (its ~870 MB heap costs more in GC than the per-event parses), so not the floor.
 *
 * The budget: peak RSS under 200 MB, and at most 2x the floor's wall time, for both commands.
 * BENCH_ARCHIVE_RUNS (default 3, or BENCH_RUNS if smaller) sets the runs; BENCH_ARCHIVE_EVENTS
 * (default 310,000) the month's size; BENCH_ARCHIVE_SHAPE=entries writes `{"entries": [...]}`
 * instead of the bare array.
 */
import {createWriteStream, mkdtempSync, rmSync, statSync} from 'node:fs'
import {cpus, tmpdir} from 'node:os'
import {join} from 'node:path'
import {pipeline} from 'node:stream/promises'
import {fileURLToPath} from 'node:url'
import {createGzip} from 'node:zlib'

import {type Kysely, sql} from 'kysely'

import {ensurePartitions} from '../src/lib/db/event-store.js'
import type {Database} from '../src/lib/db/schema.js'
import {generateEvents, mulberry32} from '../test/fake-heroku/events.js'
import {startFakeHeroku} from '../test/fake-heroku/server.js'
import {embeddedEngine, postgresEngine} from './big-day.js'
import {watchServerCpu} from './server-cpu.js'
import {type Measurement, measure, median, spread, table, verdict} from './support.js'

const FLOOR = fileURLToPath(new URL('archive-floor.mjs', import.meta.url))
const MONTH = '2025-09'
const DAYS = 30
const EVENTS = Number(process.env.BENCH_ARCHIVE_EVENTS ?? 310_000)
const SHAPE: 'array' | 'entries' = process.env.BENCH_ARCHIVE_SHAPE === 'entries' ? 'entries' : 'array'
const RSS_BUDGET_MB = 200
const TIME_BUDGET_X_FLOOR = 2

interface ArchiveFile {
  path: string
  gzipBytes: number
  jsonBytes: number
  seconds: number
}

// Written once per bench process, shared by `archives` and `archives-embedded`.
let written: Promise<ArchiveFile> | undefined
let scratch: string | undefined

/** Removes the archive file (and the embedded data directories), if written: at the end of the bench. */
export function removeArchiveFile(): void {
  if (scratch) rmSync(scratch, {recursive: true, force: true})
  scratch = undefined
  written = undefined
}

function scratchDir(): string {
  scratch ??= mkdtempSync(join(tmpdir(), 'audit-logger-bench-archive-'))
  return scratch
}

/**
 * The month's gzip file, written as its events are generated: one day at a time (the days in a
 * shuffled order, each day's events shuffled), never the whole month in memory.
 */
function archiveFile(): Promise<ArchiveFile> {
  written ??= (async () => {
    const started = process.hrtime.bigint()
    const path = join(scratchDir(), `${MONTH}.json.gz`)
    const random = mulberry32(20_250_901)
    const shuffle = <T>(items: T[]): T[] => {
      for (let i = items.length - 1; i > 0; i--) {
        const j = Math.floor(random() * (i + 1))
        ;[items[i], items[j]] = [items[j], items[i]]
      }
      return items
    }

    let jsonBytes = 0
    async function* text(): AsyncGenerator<string> {
      const counted = (part: string) => {
        jsonBytes += Buffer.byteLength(part)
        return part
      }

      yield counted(SHAPE === 'entries' ? '{"entries":[' : '[')
      let first = true
      for (const k of shuffle(Array.from({length: DAYS}, (_, day) => day))) {
        // EVENTS spread over the days, ~10,333 each, adding up exactly.
        const count = Math.floor(((k + 1) * EVENTS) / DAYS) - Math.floor((k * EVENTS) / DAYS)
        const day = `${MONTH}-${String(k + 1).padStart(2, '0')}`
        const part = shuffle(generateEvents(day, count)).map((event) => JSON.stringify(event)).join(',')
        if (part.length === 0) continue
        yield counted(first ? part : `,${part}`)
        first = false
      }

      yield counted(SHAPE === 'entries' ? ']}' : ']')
    }

    await pipeline(text, createGzip(), createWriteStream(path))
    return {path, gzipBytes: statSync(path).size, jsonBytes, seconds: Number(process.hrtime.bigint() - started) / 1e9}
  })()
  return written
}

interface MonthState {
  events: number
  successDays: number
  archiveDays: number
  status: string | null
  archiveEvents: number
  matched: number
  recovered: number
  onlyInStore: number
  importedDays: number
  importedEvents: number
}

async function monthState(db: Kysely<Database>): Promise<MonthState> {
  const {rows} = await sql<MonthState>`
    SELECT (SELECT count(*) FROM audit_events WHERE day >= ${`${MONTH}-01`}::date AND day < ${`${MONTH}-01`}::date + interval '1 month')::int AS "events",
           (SELECT count(*) FROM audit_events_log WHERE status = 'SUCCESS' AND to_char(process_date, 'YYYY-MM') = ${MONTH})::int AS "successDays",
           (SELECT count(*) FROM audit_events_log WHERE source = 'archive' AND to_char(process_date, 'YYYY-MM') = ${MONTH})::int AS "archiveDays",
           a.status, a.archive_events AS "archiveEvents", a.matched, a.recovered, a.only_in_store AS "onlyInStore",
           a.imported_days AS "importedDays", a.imported_events AS "importedEvents"
    FROM (SELECT 1) AS one LEFT JOIN audit_archives a ON a.month = ${MONTH}`.execute(db)
  return rows[0]
}

/** Throws unless the store is as `expected` says (a run that did the wrong thing measures nothing). */
function expectState(what: string, state: MonthState, expected: Partial<MonthState>): void {
  // String(): a bigint column comes back as text.
  const wrong = Object.entries(expected).filter(([key, value]) => String(state[key as keyof MonthState]) !== String(value))
  if (wrong.length > 0) throw new Error(`after ${what}: ${wrong.map(([key, value]) => `${key} is ${String(state[key as keyof MonthState])}, not ${String(value)}`).join('; ')}`)
}

/** A measured run, with the CPU the database server and the fake (this process: it serves the file) spent meanwhile. */
interface Run extends Measurement {
  serverCpu: number
  apiCpu: number
}

async function measureWithServers(database: string | undefined, command: string, args: string[], env: NodeJS.ProcessEnv): Promise<Run> {
  const server = database ? await watchServerCpu(database) : undefined
  const before = process.cpuUsage()
  const run = await measure(command, args, env)
  const api = process.cpuUsage(before)
  return {...run, serverCpu: (await server?.stop()) ?? Number.NaN, apiCpu: (api.user + api.system) / 1e6}
}

export async function archivesBench(out: (line?: string) => void, bin: string, runs: number, engineName: 'postgres' | 'embedded'): Promise<void> {
  const label = engineName === 'postgres' ? 'PostgreSQL 15 server' : 'embedded engine (PGlite)'
  out(`## 6${engineName === 'embedded' ? 'e' : ''}. A month's archive on the ${label}: archives import into an empty store, then archives verify, against the floor`)
  const file = await archiveFile()
  const mb = (bytes: number) => (bytes / 1024 / 1024).toFixed(1)
  out(`     ${MONTH}: ${EVENTS.toLocaleString('en')} events over ${DAYS} days (${SHAPE === 'entries' ? '{"entries": [...]}' : 'a bare array'}), ` +
    `${mb(file.jsonBytes)} MB of JSON, ${mb(file.gzipBytes)} MB gzip (written in ${file.seconds.toFixed(1)} s, once per bench)`)

  const fake = await startFakeHeroku({archives: 'manual', rateLimitRemaining: 1_000_000_000})
  fake.setArchive(MONTH, {body: {path: file.path}})
  // The fake hashes the file on the first request for it: done here, not in a measured run.
  const listed = await fetch(`${fake.url}/enterprise-accounts/acme/archives`, {headers: {Authorization: `Bearer ${fake.token}`, Accept: 'application/vnd.heroku+json; version=3.audit-trail'}})
  if (!listed.ok) throw new Error(`the fake lists no archives: HTTP ${listed.status}`)
  await listed.arrayBuffer()

  const env = {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? '',
    HEROKU_API_URL: fake.url,
    HEROKU_API_TOKEN: fake.token,
    HEROKU_ACCOUNT_ID: 'acme',
    // 2025-09 inside the store's retention, whenever the bench runs.
    EVENT_RETENTION_DAYS: '3650',
    LOG_LEVEL: 'warn',
  }
  const imports: Run[] = []
  const verifies: Run[] = []
  const inPlace: Run[] = []
  const floors: Run[] = []
  const elementFloors: Run[] = []
  try {
    for (let i = 0; i < runs; i++) {
      // An empty, migrated store per run.
      const store = engineName === 'postgres' ? await postgresEngine() : await embeddedEngine()
      try {
        const run = await measureWithServers(store.database, bin, ['archives', 'import', '--month', MONTH], {...env, ...store.env})
        if (run.code !== 0) throw new Error(`archives import --month ${MONTH} exited ${run.code}`)
        expectState('archives import', await store.use(monthState), {
          events: EVENTS, successDays: DAYS, archiveDays: DAYS, status: 'consistent', archiveEvents: EVENTS, importedDays: DAYS, importedEvents: EVENTS,
        })
        imports.push(run)

        const again = await measureWithServers(store.database, bin, ['archives', 'verify', '--month', MONTH], {...env, ...store.env})
        if (again.code !== 0) throw new Error(`archives verify --month ${MONTH} exited ${again.code}`)
        expectState('archives verify', await store.use(monthState), {
          events: EVENTS, status: 'consistent', archiveEvents: EVENTS, matched: EVENTS, recovered: 0, onlyInStore: 0, importedDays: 0,
        })
        verifies.push(again)
      } finally {
        await store.close()
      }

      // The same import into a month whose partition exists already (its six indexes maintained row by row): shown, not judged.
      const existing = engineName === 'postgres' ? await postgresEngine() : await embeddedEngine()
      try {
        await existing.use((db) => ensurePartitions(db, [`${MONTH}-01`]))
        const run = await measureWithServers(existing.database, bin, ['archives', 'import', '--month', MONTH], {...env, ...existing.env})
        if (run.code !== 0) throw new Error(`archives import --month ${MONTH} (partition made first) exited ${run.code}`)
        expectState('archives import (partition made first)', await existing.use(monthState), {events: EVENTS, importedDays: DAYS, importedEvents: EVENTS})
        inPlace.push(run)
      } finally {
        await existing.close()
      }

      for (const [mode, list] of [['whole', floors], ['elements', elementFloors]] as const) {
        const floor = await measureWithServers(undefined, process.execPath, [FLOOR, fake.url, fake.token, MONTH, mode, String(EVENTS)], env)
        if (floor.code !== 0) throw new Error(`the ${mode} floor exited ${floor.code}`)
        list.push(floor)
      }
    }
  } finally {
    await fake.close()
  }

  const floor = median(elementFloors.map((r) => r.seconds))
  const wholeFloor = median(floors.map((r) => r.seconds))
  const row = (what: string, list: Run[], judged = true) => ({
    run: what,
    'wall (s)': spread(list.map((r) => r.seconds)),
    'events/s': Math.round(EVENTS / median(list.map((r) => r.seconds))),
    'peak RSS (MB)': spread(list.map((r) => r.maxRssMb), 0),
    'CPU (s)': spread(list.map((r) => r.cpuSeconds)),
    // The floors use no database.
    ...(engineName === 'postgres' ? {'DB server CPU (s)': list.some((r) => Number.isNaN(r.serverCpu)) ? '-' : spread(list.map((r) => r.serverCpu))} : {}),
    'fake CPU (s)': spread(list.map((r) => r.apiCpu)),
    'x floor': judged ? (median(list.map((r) => r.seconds)) / floor).toFixed(2) : '-',
  })
  out(
    table([
      row('floor: fetch + SHA-256 + gunzip + JSON.parse of each event', elementFloors),
      row('the same with one JSON.parse of the whole document', floors),
      row(`archives import --month ${MONTH} (empty store)`, imports),
      row(`archives verify --month ${MONTH} (all match)`, verifies),
      row(`archives import --month ${MONTH} (its partition made first)`, inPlace, false),
    ]),
  )
  out(`     median (min–max) of ${runs} run(s) each; CPU is the process's own (user + system)${engineName === 'postgres' ? ", DB server CPU its database's backends'" : ' (the engine runs inside it)'}, ` +
    `fake CPU this bench process's (it serves the file) — all on ${cpus().length} cores`)
  for (const [what, list] of [['archives import', imports], ['archives verify', verifies]] as const) {
    const seconds = median(list.map((r) => r.seconds))
    const rss = median(list.map((r) => r.maxRssMb))
    out(verdict(seconds <= TIME_BUDGET_X_FLOOR * floor, `${what}, ${EVENTS.toLocaleString('en')} events, within ${TIME_BUDGET_X_FLOOR}x the floor (${(seconds / floor).toFixed(2)}x: ${seconds.toFixed(2)} s against ${floor.toFixed(2)} s; ${(seconds / wholeFloor).toFixed(2)}x the whole-document parse)`))
    out(verdict(rss < RSS_BUDGET_MB, `${what}, peak RSS under ${RSS_BUDGET_MB} MB (${rss.toFixed(0)} MB; the floor's ${median(elementFloors.map((r) => r.maxRssMb)).toFixed(0)} MB, the whole-document parse's ${median(floors.map((r) => r.maxRssMb)).toFixed(0)} MB)`))
  }
}
