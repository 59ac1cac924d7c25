import {openSync} from 'node:fs'

import {sql} from 'kysely'
import {addDays, todayUtc} from '../src/lib/dates.js'
import {migrateToLatest} from '../src/lib/db/migrate.js'
import {generateEvents} from '../test/fake-heroku/events.js'
import {startFakeHeroku} from '../test/fake-heroku/server.js'
import {createScratchDatabase, dropScratchDatabases, openTestDb} from '../test/support/db.js'
import {spawn} from 'node:child_process'
const day = addDays(todayUtc(), -3)
const fake = await startFakeHeroku({events: {[day]: generateEvents(day, 100_000)}, rateLimitRemaining: 1e9})
const url = await createScratchDatabase('bench')
const db = openTestDb(url)
await migrateToLatest(db)
const env = {PATH: process.env.PATH, HOME: process.env.HOME, DATABASE_URL: url, HEROKU_API_URL: fake.url, HEROKU_API_TOKEN: fake.token, HEROKU_ACCOUNT_ID: 'acme', LOG_LEVEL: 'warn'}
for (const store of ['on', 'off']) {
  await sql`TRUNCATE audit_events_log, audit_events`.execute(db)
  await new Promise((resolve) => spawn(process.execPath, ['--max-semi-space-size=4', '--cpu-prof', `--cpu-prof-dir=/tmp/sb/prof-${store}`, ...(process.env.TRACE ? ['--trace-gc'] : []), 'bin/run.js', 'process', '--date', day, '--format', 'json'], {env: {...env, EVENT_STORE: store}, stdio: ['ignore', process.env.TRACE ? openSync(`/tmp/sb/gc-${store}.txt`, 'w') : 'ignore', 'inherit']}).on('close', resolve))
}
await db.destroy(); await fake.close(); await dropScratchDatabases()
