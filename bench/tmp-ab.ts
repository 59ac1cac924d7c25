import {sql} from 'kysely'
import {addDays, todayUtc} from '../src/lib/dates.js'
import {migrateToLatest} from '../src/lib/db/migrate.js'
import {generateEvents} from '../test/fake-heroku/events.js'
import {startFakeHeroku} from '../test/fake-heroku/server.js'
import {createScratchDatabase, dropScratchDatabases, openTestDb} from '../test/support/db.js'
import {measure, spread} from './support.js'
const day = addDays(todayUtc(), -3)
const fake = await startFakeHeroku({events: {[day]: generateEvents(day, 100_000)}, rateLimitRemaining: 1e9})
const url = await createScratchDatabase('bench')
const db = openTestDb(url)
await migrateToLatest(db)
const env = {PATH: process.env.PATH, HOME: process.env.HOME, DATABASE_URL: url, HEROKU_API_URL: fake.url, HEROKU_API_TOKEN: fake.token, HEROKU_ACCOUNT_ID: 'acme', LOG_LEVEL: 'warn'}
const bins: Record<string, string> = {base: '/tmp/sb/base/bin/run.js', new: '/work/wt-store-bench/bin/run.js'}
const res: Record<string, {s: number[]; r: number[]; c: number[]}> = {}
const n = Number(process.env.N ?? 3)
for (let i = 0; i < n; i++) for (const [name, bin] of Object.entries(bins)) for (const store of (process.env.MODES ?? 'on,off').split(',')) {
  await sql`TRUNCATE audit_events_log, audit_events`.execute(db)
  const m = await measure(bin, ['process', '--date', day, '--format', 'json'], {...env, EVENT_STORE: store, ...(process.env.EXTRA ? Object.fromEntries([process.env.EXTRA.split('=')]) : {})})
  const k = `${name} ${store}`
  res[k] ??= {s: [], r: [], c: []}
  res[k].s.push(m.seconds); res[k].r.push(m.maxRssMb); res[k].c.push(m.cpuSeconds)
}
for (const [k, v] of Object.entries(res)) console.log(k.padEnd(10), 'wall', spread(v.s), 'rss', spread(v.r, 0), 'cpu', spread(v.c))
await db.destroy(); await fake.close(); await dropScratchDatabases()
