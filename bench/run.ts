/**
 * `npm run bench`: the performance budget, measured on this machine against the loopback fake
 * Heroku API and a real PostgreSQL (and the embedded engine). Prints medians of several runs; not
 * part of `npm test`.
 *
 *   npm run bench                 # everything (about half an hour: it seeds a 2,000,000-event store)
 *   npm run bench -- NAME…        # some of the names below
 *
 *   big-day, big-day-embedded     a 100,000-event day, the event store on and off, against the floor; bytes per event
 *   store-profile                 where the store's time goes: client steps, COPY with and without each index
 *   startup, page-load, catch-up  start-up; the status page under load; a year of small days, statements counted
 *   engine-start                  db init / db status on a new, a used and no embedded directory, and on PostgreSQL
 *   search, search-embedded       /api/events over a seeded year (2,000,000 events; 200,000 embedded), query plans
 *   events-cli, events-cli-embedded  `events`: the first line, and streaming a big result in bounded memory
 *   delivery                      `deliver` sending a 100,000-event stored day to a loopback sink, against a bare POST loop
 *   drain-pace                    lines/s a Logplex-like HTTP(S) drain takes, by answer time (LOG_LINES_PER_SECOND's default)
 *   archives, archives-embedded   a 310,000-event month's archive: archives import into an empty store, then archives
 *                                 verify, against a download + SHA-256 + gunzip + per-event JSON.parse floor; peak RSS
 *
 * (store-big-day is another name for big-day.) audit-logger runs as a user runs it: bin/run.js
 * executed, its shebang (and V8 flags) included. BENCH_RUNS (default 5) sets the runs per figure;
 * BENCH_BIN=/other/checkout/bin/run.js measures another build (built there) with the same harness,
 * for a before/after comparison. BENCH_SEARCH_SECONDS (default 5) is the load on each search;
 * BENCH_STORE_EVENTS and BENCH_EMBEDDED_STORE_EVENTS size the seeded stores. The archives runs are
 * heavy: BENCH_ARCHIVE_RUNS (default 3, or BENCH_RUNS if smaller) sets theirs, BENCH_ARCHIVE_EVENTS
 * the month's size, BENCH_ARCHIVE_SHAPE=entries the archive's `{"entries": [...]}` shape.
 */
import {mkdtempSync, rmSync} from 'node:fs'
import {cpus, loadavg, tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'

import {sql} from 'kysely'

import {addDays, daysBetween, todayUtc} from '../src/lib/dates.js'
import {migrateToLatest} from '../src/lib/db/migrate.js'
import {generateEvents} from '../test/fake-heroku/events.js'
import {startFakeHeroku} from '../test/fake-heroku/server.js'
import {createScratchDatabase, dropScratchDatabases, openTestDb} from '../test/support/db.js'
import {bigDay} from './big-day.js'
import {deliveryBench} from './delivery.js'
import {drainPace} from './drain-pace.js'
import {eventsCliBench} from './events-cli.js'
import {archivesBench, removeArchiveFile} from './archives.js'
import {type Measurement, measure, median, spread, table, verdict} from './support.js'
import {pageLoad} from './page-load.js'
import {removeSeededStores, searchBench} from './search.js'
import {storeProfile} from './store-profile.js'
import {startPgCounter} from './pg-counter.js'

// BENCH_BIN points at another build's bin/run.js, to compare before and after a change.
const BIN = process.env.BENCH_BIN || fileURLToPath(new URL('../bin/run.js', import.meta.url))
const RUNS = Number(process.env.BENCH_RUNS ?? 5)
// A month's archive takes a while per run: fewer of them (BENCH_ARCHIVE_RUNS).
const ARCHIVE_RUNS = Number(process.env.BENCH_ARCHIVE_RUNS ?? Math.min(RUNS, 3))
// Seconds of load on each search (BENCH_SEARCH_SECONDS).
const SEARCH_SECONDS = Number(process.env.BENCH_SEARCH_SECONDS ?? 5)
const only = process.argv.slice(2)
const out = (line = '') => process.stdout.write(`${line}\n`)

async function startup() {
  out('## 2. Start-up')
  const env = {PATH: process.env.PATH, HOME: process.env.HOME}
  const runs = Math.max(RUNS, 10)
  const time = async (command: string, args: string[]) => {
    const results = []
    for (let i = 0; i < runs; i++) results.push(await measure(command, args, env))
    return {seconds: median(results.map((r) => r.seconds)), rss: median(results.map((r) => r.maxRssMb))}
  }

  const bare = await time(process.execPath, ['-e', ''])
  const version = await time(BIN, ['--version'])
  const help = await time(BIN, ['process', '--help'])
  out(
    table([
      {command: "node -e ''", 'median (s)': bare.seconds.toFixed(3), 'x bare': '1.00', 'RSS (MB)': bare.rss.toFixed(0)},
      {command: 'audit-logger --version', 'median (s)': version.seconds.toFixed(3), 'x bare': (version.seconds / bare.seconds).toFixed(2), 'RSS (MB)': version.rss.toFixed(0)},
      {command: 'audit-logger process --help', 'median (s)': help.seconds.toFixed(3), 'x bare': (help.seconds / bare.seconds).toFixed(2), 'RSS (MB)': help.rss.toFixed(0)},
    ]),
  )
  out(verdict(version.seconds < 4 * bare.seconds && help.seconds < 4 * bare.seconds, 'start-up under 4x bare node'))
}

/**
 * Benchmark 2e (`engine-start`): what a command costs on each engine before any work: the first
 * `db init` on a new embedded data directory (unpacked from the prebuilt cluster), a later
 * `db status` on it, `db status` where no directory exists (an in-memory stand-in), and the same
 * two commands on PostgreSQL.
 */
async function engineStart() {
  out('## 2e. The engines\' start: db init and db status, embedded and on PostgreSQL')
  const base = {PATH: process.env.PATH, HOME: process.env.HOME}
  const scratch = mkdtempSync(join(tmpdir(), 'audit-logger-bench-start-'))
  const url = await createScratchDatabase('bench_start')
  const rows: Array<Record<string, string>> = []
  const row = (what: string, list: Measurement[]) => rows.push({command: what, 'median (s)': spread(list.map((r) => r.seconds)), 'peak RSS (MB)': spread(list.map((r) => r.maxRssMb), 0)})
  const check = (run: Measurement, what: string) => {
    if (run.code !== 0) throw new Error(`${what} exited ${run.code}`)
    return run
  }

  try {
    const first: Measurement[] = []
    const later: Measurement[] = []
    const none: Measurement[] = []
    for (let i = 0; i < RUNS; i++) {
      const dir = join(scratch, `data-${i}`)
      first.push(check(await measure(BIN, ['db', 'init'], {...base, AUDIT_LOGGER_DATA_DIR: dir}), 'db init on a new directory'))
      later.push(check(await measure(BIN, ['db', 'status'], {...base, AUDIT_LOGGER_DATA_DIR: dir}), 'db status'))
      none.push(check(await measure(BIN, ['db', 'status'], {...base, AUDIT_LOGGER_DATA_DIR: join(scratch, 'never-made')}), 'db status, no directory'))
    }

    const serverInit: Measurement[] = []
    const serverStatus: Measurement[] = []
    for (let i = 0; i < RUNS; i++) {
      serverInit.push(check(await measure(BIN, ['db', 'init'], {...base, DATABASE_URL: url}), 'db init on PostgreSQL'))
      serverStatus.push(check(await measure(BIN, ['db', 'status'], {...base, DATABASE_URL: url}), 'db status on PostgreSQL'))
    }

    row('embedded: db init, a new data directory', first)
    row('embedded: db status, later', later)
    row('embedded: db status, no directory (nothing made)', none)
    row('PostgreSQL: db init (nothing pending)', serverInit)
    row('PostgreSQL: db status', serverStatus)
    out(table(rows))
    out(`     median (min–max) of ${RUNS} runs each, from spawning bin/run.js to its exit`)
  } finally {
    rmSync(scratch, {recursive: true, force: true})
  }
}

/** What a statement is, by its SQL: the day job's own, or the run's one-time set-up. */
function statementKind(sql: string): string {
  if (sql.startsWith('WITH previous AS')) return 'claim'
  if (sql.startsWith('UPDATE audit_events_log SET heartbeat_at = now()')) return 'heartbeat / fence check'
  if (sql.startsWith('UPDATE audit_events_log SET status =')) return 'finish'
  if (sql.startsWith('COPY audit_events ')) return 'store: COPY of the day\'s events'
  if (/^(begin|commit|rollback)$/i.test(sql)) return 'store: BEGIN and COMMIT of the day\'s transaction'
  if (sql.includes('FROM audit_events_log WHERE status =') && sql.startsWith('select "audit_events_log".* from')) return 'skipped day: read its record'
  return 'once per run (connect, migrations, plan)'
}

async function catchUp() {
  const DAYS = 365
  out(`## 4. A year of catch-up: process --from A --to B over ${DAYS} days of 20 events each, the store on and off`)
  // The year ending yesterday: days before EVENT_RETENTION_DAYS (365) would not be stored.
  const last = addDays(todayUtc(), -1)
  const days = daysBetween(addDays(last, -(DAYS - 1)), last)
  const fake = await startFakeHeroku({events: Object.fromEntries(days.map((day) => [day, generateEvents(day, 20)])), rateLimitRemaining: 1_000_000_000})
  const url = await createScratchDatabase('bench')
  const db = openTestDb(url)
  await migrateToLatest(db)
  const counter = await startPgCounter(url)
  const env = {PATH: process.env.PATH, HOME: process.env.HOME, DATABASE_URL: counter.url, HEROKU_API_URL: fake.url, HEROKU_API_TOKEN: fake.token, HEROKU_ACCOUNT_ID: 'acme', LOG_LEVEL: 'warn'}
  const runs = Math.max(1, Math.min(RUNS, 3))
  type Result = {seconds: number; rss: number; requests: number; statements: number; roundTrips: number; kinds: Map<string, number>}
  const results: Record<'on' | 'off', Result[]> = {on: [], off: []}
  for (let i = 0; i < runs; i++) {
    for (const store of ['on', 'off'] as const) {
      await sql`TRUNCATE audit_events_log, audit_events`.execute(db)
      fake.reset()
      counter.reset()
      const run = await measure(BIN, ['process', '--from', days[0], '--to', days.at(-1)!], {...env, EVENT_STORE: store})
      if (run.code !== 0) throw new Error(`the catch-up exited ${run.code}`)
      const done = await sql<{n: number}>`SELECT count(*)::int AS n FROM audit_events_log WHERE status = 'SUCCESS'`.execute(db)
      if (done.rows[0].n !== DAYS) throw new Error(`only ${done.rows[0].n} of ${DAYS} days are SUCCESS`)
      const kinds = new Map<string, number>()
      for (const {sql: text, count} of counter.statements()) kinds.set(statementKind(text), (kinds.get(statementKind(text)) ?? 0) + count)
      const totals = counter.totals()
      results[store].push({seconds: run.seconds, rss: run.maxRssMb, requests: fake.requests.length, statements: totals.statements, roundTrips: totals.roundTrips, kinds})
    }
  }

  const middle = (list: Result[]) => [...list].sort((a, b) => a.seconds - b.seconds)[Math.floor(list.length / 2)]
  const on = middle(results.on)
  const off = middle(results.off)
  out(
    table(
      [['store on', on], ['EVENT_STORE=off', off]].map(([what, mid]) => {
        const r = mid as Result
        return {
          run: what as string,
          days: DAYS,
          'wall (s)': r.seconds.toFixed(2),
          'per day (ms)': ((r.seconds / DAYS) * 1000).toFixed(1),
          'peak RSS (MB)': r.rss.toFixed(0),
          'API requests/day': (r.requests / DAYS).toFixed(2),
          'DB statements/day': (r.statements / DAYS).toFixed(2),
          'DB round trips/day': (r.roundTrips / DAYS).toFixed(2),
        }
      }),
    ),
  )
  out()
  out(table([...on.kinds].map(([kind, n]) => ({'statement (store on)': kind, total: n, 'per day': (n / DAYS).toFixed(2), 'per day, store off': ((off.kinds.get(kind) ?? 0) / DAYS).toFixed(2)}))))
  const besides = (r: Result) => (r.statements - (r.kinds.get('heartbeat / fence check') ?? 0)) / DAYS
  out(verdict(besides(off) <= 4, `at most 4 DB statements per day besides the heartbeat, store off (${besides(off).toFixed(2)}; ${(off.statements / DAYS).toFixed(2)} with the fence check, one-time set-up included)`))
  out(`     store on: ${besides(on).toFixed(2)} besides the heartbeat: the day's transaction adds its BEGIN, COPY and COMMIT`)
  out('     (counted by a proxy on the wire: every Execute or simple Query the run sent, whatever its SQL; one-time statements are spread over the days)')
  await counter.close()
  await db.destroy()
  await fake.close()
}

const benchmarks: Record<string, () => Promise<void>> = {
  'big-day': () => bigDay(out, BIN, RUNS, 'postgres'),
  'big-day-embedded': () => bigDay(out, BIN, RUNS, 'embedded'),
  'store-profile': () => storeProfile(out, RUNS),
  startup,
  'engine-start': engineStart,
  'page-load': () => pageLoad(out, BIN),
  'catch-up': catchUp,
  // The two after each seed a store, once per run of the bench: name them together to share it.
  search: () => searchBench(out, 'postgres', SEARCH_SECONDS),
  'events-cli': () => eventsCliBench(out, BIN, RUNS, 'postgres'),
  'search-embedded': () => searchBench(out, 'embedded', SEARCH_SECONDS),
  'events-cli-embedded': () => eventsCliBench(out, BIN, RUNS, 'embedded'),
  'drain-pace': () => drainPace(out),
  delivery: () => deliveryBench(out, BIN, RUNS),
  // The two share the month's archive file, written once.
  archives: () => archivesBench(out, BIN, ARCHIVE_RUNS, 'postgres'),
  'archives-embedded': () => archivesBench(out, BIN, ARCHIVE_RUNS, 'embedded'),
}

const ALIASES: Record<string, string> = {'store-big-day': 'big-day'}
const chosen = only.map((name) => ALIASES[name] ?? name)
const unknown = chosen.filter((name) => !benchmarks[name])
if (unknown.length > 0) {
  process.stderr.write(`no benchmark ${unknown.join(', ')}: use ${[...Object.keys(benchmarks), ...Object.keys(ALIASES)].join(', ')}\n`)
  process.exit(2)
}

try {
  for (const [name, run] of Object.entries(benchmarks)) {
    if (chosen.length > 0 && !chosen.includes(name)) continue
    // Other work on the machine moves every figure: say how busy it was.
    out(`(${new Date().toISOString().slice(0, 19)}Z, load average ${loadavg().map((n) => n.toFixed(2)).join(' ')} on ${cpus().length} cores)`)
    await run()
    out()
  }
} finally {
  await dropScratchDatabases()
  removeSeededStores()
  removeArchiveFile()
}
