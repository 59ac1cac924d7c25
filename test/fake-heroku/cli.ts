/**
 * `npm run fake-api [-- --port 5050 --days 30 --events-per-day 100 --page-size 200 --seed 1]`
 *
 * Runs the fake Heroku audit-trail API with generated events for the last N UTC days, ending
 * yesterday (today is not over: a catch-up would record it partial), for trying audit-logger by
 * hand without a real Enterprise account. The months of those days have monthly archives, served
 * from a second port standing in for S3 (pre-signed URLs, no token).
 */
import {parseArgs} from 'node:util'

import {generateEvents, pastDays} from './events.js'
import type {AuditEvent} from './events.js'
import {startFakeHeroku} from './server.js'

const USAGE = `Usage: npm run fake-api -- [options]

  --port N             port to listen on (default $FAKE_API_PORT or 5050)
  --days N             days of events, ending yesterday UTC (default 30)
  --events-per-day N   events per day (default 25-120, varying by day)
  --page-size N        page size when a request names no max (default 200)
  --seed N             changes every generated event (default 1)
  --storage-port N     port of the archive storage server (default a free one)
  --no-archives        serve no monthly archives
  --help               show this text`

/** A non-negative integer flag, or a one-line error and exit code 2. */
function integerFlag(name: string, value: string | undefined, fallback: number, min = 0): number {
  if (value === undefined) return fallback
  if (!/^\d+$/.test(value) || Number(value) < min) {
    console.error(`fake-api: --${name} must be an integer >= ${min}, got ${JSON.stringify(value)}`)
    process.exit(2)
  }
  return Number(value)
}

function parse() {
  try {
    return parseArgs({
      options: {
        port: {type: 'string'},
        days: {type: 'string'},
        'events-per-day': {type: 'string'},
        'page-size': {type: 'string'},
        seed: {type: 'string'},
        'storage-port': {type: 'string'},
        'no-archives': {type: 'boolean'},
        help: {type: 'boolean', short: 'h'},
      },
      strict: true,
    }).values
  } catch (error) {
    console.error(`fake-api: ${(error as Error).message}\n\n${USAGE}`)
    process.exit(2)
  }
}

const flags = parse()
if (flags.help) {
  console.log(USAGE)
  process.exit(0)
}

const port = integerFlag('port', flags.port ?? process.env.FAKE_API_PORT, 5050)
const dayCount = integerFlag('days', flags.days, 30, 1)
const perDay = flags['events-per-day'] === undefined ? undefined : integerFlag('events-per-day', flags['events-per-day'], 0)
const pageSize = integerFlag('page-size', flags['page-size'], 200, 1)
const seed = integerFlag('seed', flags.seed, 1)
const storagePort = integerFlag('storage-port', flags['storage-port'], 0)

/** FNV-1a of the day, salted with the seed. */
function hashDay(day: string, salt: number): number {
  let hash = 2_166_136_261 ^ salt
  for (const char of day) hash = Math.imul(hash ^ char.charCodeAt(0), 16_777_619)
  return hash >>> 0
}

const events: Record<string, AuditEvent[]> = {}
const days = pastDays(dayCount, Date.now())
for (const day of days) {
  // Without --events-per-day, each day gets its own count in 25..120, stable for a given seed.
  const count = perDay ?? 25 + (hashDay(day, seed) % 96)
  events[day] = generateEvents(day, count, {seed})
}

const archives = flags['no-archives'] ? 'manual' : 'auto'
const fake = await startFakeHeroku({port, storagePort, events, pageSize, archives}).catch((error: NodeJS.ErrnoException) => {
  console.error(`fake-api: cannot listen on 127.0.0.1:${port} and ${storagePort}: ${error.code ?? error.message}`)
  process.exit(2)
})

const total = Object.values(events).reduce((sum, list) => sum + list.length, 0)
console.log(`Fake Heroku API listening on ${fake.url}`)
console.log(`  ${total} events over ${days[0]}..${days[days.length - 1]} (UTC; today is never served: it is not over)`)
console.log(`  pages of the size a request asks for (Range max=N; audit-logger asks for 1000), at most 1000; ${pageSize} when it names none`)
console.log('  accounts: acme, 00000000-0000-4000-8000-000000000001')
const months = fake.archiveMonths()
console.log(`Archive storage (pre-signed URLs, no token) on ${fake.storageUrl}`)
console.log(`  monthly archives: ${months.length > 0 ? months.join(', ') : 'none'} (GET /enterprise-accounts/acme/archives)`)
console.log('Point audit-logger at it with:')
console.log(`  HEROKU_API_URL=${fake.url} HEROKU_API_TOKEN=${fake.token} HEROKU_ACCOUNT_ID=acme`)
console.log('Ctrl-C to stop.')

let stopping = false
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping) return
    stopping = true
    console.log(`\n${signal}: ${fake.requests.length} requests served; closing.`)
    void fake.close().then(() => process.exit(0))
  })
}
