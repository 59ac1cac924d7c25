/**
 * `npm run bench`: the performance budget, measured on this machine against the loopback fake
 * Heroku API and a real PostgreSQL. Prints medians of several runs; not part of `npm test`.
 *
 *   npm run bench                 # everything
 *   npm run bench -- big-day      # one of: big-day, startup, page-load, catch-up
 */
import {fileURLToPath} from 'node:url'

import {sql} from 'kysely'

import {migrateToLatest} from '../src/lib/db/migrate.js'
import {generateEvents} from '../test/fake-heroku/events.js'
import {startFakeHeroku} from '../test/fake-heroku/server.js'
import {createScratchDatabase, dropScratchDatabases, openTestDb} from '../test/support/db.js'
import {measure, median, table, verdict} from './support.js'
import {pageLoad} from './page-load.js'

const BIN = fileURLToPath(new URL('../bin/run.js', import.meta.url))
const FLOOR = fileURLToPath(new URL('floor.mjs', import.meta.url))
const RUNS = Number(process.env.BENCH_RUNS ?? 5)
const only = process.argv[2]
const out = (line = '') => process.stdout.write(`${line}\n`)

async function bigDay() {
  out('## 1. A big day: process --date D --format json > /dev/null')
  const days = {'2025-03-01': 100_000, '2025-03-02': 10_000}
  const fake = await startFakeHeroku({
    events: Object.fromEntries(Object.entries(days).map(([day, n]) => [day, generateEvents(day, n)])),
    rateLimitRemaining: 1_000_000,
  })
  const url = await createScratchDatabase('bench')
  const db = openTestDb(url)
  await migrateToLatest(db)
  const env = {PATH: process.env.PATH, HOME: process.env.HOME, DATABASE_URL: url, HEROKU_API_URL: fake.url, HEROKU_API_TOKEN: fake.token, HEROKU_ACCOUNT_ID: 'acme', LOG_LEVEL: 'warn'}
  const rows = []
  const figures: Record<string, {wall: number; rss: number; floor: number}> = {}
  for (const [day, events] of Object.entries(days)) {
    const runs = []
    const floors = []
    for (let i = 0; i < RUNS; i++) {
      await sql`DELETE FROM audit_events_log`.execute(db)
      const run = await measure(process.execPath, [BIN, 'process', '--date', day, '--format', 'json'], env)
      if (run.code !== 0) throw new Error(`process --date ${day} exited ${run.code}`)
      runs.push(run)
      floors.push(await measure(process.execPath, [FLOOR, fake.url, fake.token, day], env))
    }

    const wall = median(runs.map((r) => r.seconds))
    const rss = median(runs.map((r) => r.maxRssMb))
    const floor = median(floors.map((r) => r.seconds))
    figures[day] = {wall, rss, floor}
    rows.push({
      events,
      'wall (s)': wall.toFixed(2),
      'events/s': Math.round(events / wall),
      'peak RSS (MB)': rss.toFixed(0),
      'floor (s)': floor.toFixed(2),
      'floor RSS (MB)': median(floors.map((r) => r.maxRssMb)).toFixed(0),
      'x floor': (wall / floor).toFixed(2),
    })
  }

  out(table(rows))
  const big = figures['2025-03-01']
  const small = figures['2025-03-02']
  out(verdict(big.wall <= 1.5 * big.floor, `100,000 events within 1.5x the floor (${(big.wall / big.floor).toFixed(2)}x)`))
  out(verdict(big.rss < 150, `peak RSS under 150 MB (${big.rss.toFixed(0)} MB)`))
  // Ten times the events must not cost anywhere near ten times the memory.
  const growth = (big.rss - small.rss) / (small.rss || 1)
  out(verdict(growth < 2, `memory does not grow in proportion to events: 10x events -> ${(big.rss / small.rss).toFixed(2)}x RSS`))
  await db.destroy()
  await fake.close()
}

async function startup() {
  out('## 2. Start-up')
  const env = {PATH: process.env.PATH, HOME: process.env.HOME}
  const runs = Math.max(RUNS, 10)
  const time = async (args: string[]) => {
    const results = []
    for (let i = 0; i < runs; i++) results.push(await measure(process.execPath, args, env))
    return {seconds: median(results.map((r) => r.seconds)), rss: median(results.map((r) => r.maxRssMb))}
  }

  const bare = await time(['-e', ''])
  const version = await time([BIN, '--version'])
  const help = await time([BIN, 'process', '--help'])
  out(
    table([
      {command: "node -e ''", 'median (s)': bare.seconds.toFixed(3), 'x bare': '1.00', 'RSS (MB)': bare.rss.toFixed(0)},
      {command: 'audit-logger --version', 'median (s)': version.seconds.toFixed(3), 'x bare': (version.seconds / bare.seconds).toFixed(2), 'RSS (MB)': version.rss.toFixed(0)},
      {command: 'audit-logger process --help', 'median (s)': help.seconds.toFixed(3), 'x bare': (help.seconds / bare.seconds).toFixed(2), 'RSS (MB)': help.rss.toFixed(0)},
    ]),
  )
  out(verdict(version.seconds < 4 * bare.seconds && help.seconds < 4 * bare.seconds, 'start-up under 4x bare node'))
}

const benchmarks: Record<string, () => Promise<void>> = {'big-day': bigDay, startup, 'page-load': () => pageLoad(out, BIN)}

try {
  for (const [name, run] of Object.entries(benchmarks)) {
    if (only && only !== name) continue
    await run()
    out()
  }
} finally {
  await dropScratchDatabases()
}
