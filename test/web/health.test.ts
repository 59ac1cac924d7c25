/**
 * /healthz needs no sign-in, so it must not be a way to slow the site or hammer the database:
 * the statements it costs are counted on the wire (bench/pg-counter.ts), whatever the load, with
 * the change feed live, blind or absent; and an unreachable database still answers 503, then 200
 * once it is back. The clock is the app's own (`now`), moved by hand: nothing here depends on
 * how fast the machine is.
 */
import {expect} from 'chai'
import type {FastifyInstance} from 'fastify'
import {Kysely, PostgresDialect} from 'kysely'
import pg from 'pg'

import {type PgCounter, startPgCounter} from '../../bench/pg-counter.js'
import {type ChangeFeed, listenForChanges, ownChangesOnly} from '../../src/lib/db/change-feed.js'
import {typeParsers} from '../../src/lib/db/connection.js'
import {migrateToLatest} from '../../src/lib/db/migrate.js'
import type {Database} from '../../src/lib/db/schema.js'
import {type AppDeps, buildApp} from '../../src/lib/web/app.js'
import {HEALTH_REUSE_MS, checkHealth} from '../../src/lib/web/health.js'
import {captureLogger} from '../support/capture.js'
import {ADMIN_URL, clearLog, createScratchDatabase, describeWithServer, insertRecord, openTestDb} from '../support/db.js'
import {waitUntil} from '../support/helpers.js'

const START = new Date('2025-10-01T12:00:00Z').getTime()

/** A clock that moves only when told. */
function handClock() {
  let ms = START
  return {now: () => new Date(ms), advance: (by: number) => (ms += by)}
}

async function healthzTimes(app: FastifyInstance, concurrent: number): Promise<Array<{statusCode: number; body: string}>> {
  const responses = await Promise.all(Array.from({length: concurrent}, () => app.inject({url: '/healthz'})))
  return responses.map((r) => ({statusCode: r.statusCode, body: r.body}))
}

describeWithServer('/healthz under load: statements on the wire', function () {
  this.timeout(30_000)
  let counter: PgCounter
  let db: Kysely<Database>
  let perCheck: number
  const apps: FastifyInstance[] = []

  const app = async (deps: Partial<AppDeps>) => {
    const instance = await buildApp({db, config: {port: 0, staleAfterMinutes: 15}, version: {} as never, logger: captureLogger(), ...deps})
    apps.push(instance)
    return instance
  }

  before(async () => {
    counter = await startPgCounter(process.env.TEST_DATABASE_URL!)
    db = openTestDb(counter.url)
    await clearLog(db)
    await insertRecord(db, {day: '2025-09-29', status: 'SUCCESS', events: 5})
    await insertRecord(db, {day: '2025-09-30', status: 'FAILED'})
    counter.reset()
    await checkHealth(db, new Date(START))
    perCheck = counter.totals().statements
    expect(perCheck, 'one check reads the database').to.be.greaterThan(0)
  })

  after(async () => {
    await clearLog(db)
    await db.destroy()
    await counter.close()
  })

  beforeEach(() => counter.reset())

  afterEach(async () => {
    await Promise.all(apps.splice(0).map((instance) => instance.close()))
  })

  it('costs one check for 200 concurrent requests and 100 more after them', async () => {
    const clock = handClock()
    const instance = await app({now: clock.now})
    const answers = await healthzTimes(instance, 200)
    for (let i = 0; i < 100; i++) answers.push(...(await healthzTimes(instance, 1)))
    expect(answers.every((a) => a.statusCode === 200 && a.body === answers[0].body)).to.equal(true)
    expect(JSON.parse(answers[0].body)).to.deep.include({ok: true, database: 'reachable', latestSuccess: '2025-09-29'})
    expect(counter.totals().statements, `${counter.totals().statements} statements, one check being ${perCheck}`).to.equal(perCheck)
  })

  it('checks at most once a period while the change feed cannot see changes, or without one', async () => {
    const blind: ChangeFeed = {version: () => undefined, changed() {}, close: async () => {}}
    for (const changes of [blind, undefined]) {
      counter.reset()
      const clock = handClock()
      const instance = await app({now: clock.now, changes})
      for (let period = 0; period < 5; period++) {
        await healthzTimes(instance, 50)
        clock.advance(HEALTH_REUSE_MS / 2)
        await healthzTimes(instance, 50)
        clock.advance(HEALTH_REUSE_MS / 2)
      }

      expect(counter.totals().statements, changes ? 'a blind feed' : 'no feed').to.equal(5 * perCheck)
    }
  })

  it('keeps a reachable answer while the table is unchanged, and then checks at most once a period however often it changes', async () => {
    const feed = ownChangesOnly()
    const clock = handClock()
    const instance = await app({now: clock.now, changes: feed})
    await healthzTimes(instance, 50)
    for (let i = 0; i < 10; i++) {
      clock.advance(HEALTH_REUSE_MS)
      await healthzTimes(instance, 10)
    }

    expect(counter.totals().statements, 'unchanged: from memory').to.equal(perCheck)
    for (let i = 0; i < 100; i++) {
      feed.changed() // a table changing far faster than the period
      await healthzTimes(instance, 2)
    }

    expect(counter.totals().statements, 'changes within the period: from memory').to.equal(perCheck)
    clock.advance(HEALTH_REUSE_MS)
    await healthzTimes(instance, 50)
    expect(counter.totals().statements, 'the next period: one check').to.equal(2 * perCheck)
  })
}, 'counts the statements on the wire, through a proxy in front of the PostgreSQL server')

describeWithServer('/healthz when the database goes away and comes back', function () {
  this.timeout(60_000)
  let url: string
  let name: string

  const admin = async (text: string) => {
    const client = new pg.Client({connectionString: ADMIN_URL, application_name: 'audit-logger-test'})
    await client.connect()
    try {
      await client.query(text)
    } finally {
      await client.end()
    }
  }

  before(async () => {
    url = await createScratchDatabase('health')
    name = new URL(url).pathname.slice(1)
    const setup = openTestDb(url)
    try {
      await migrateToLatest(setup)
    } finally {
      await setup.destroy()
    }
  })

  after(async () => {
    await admin(`ALTER DATABASE ${name} ALLOW_CONNECTIONS true`)
  })

  it('answers 503 unreachable while it is gone (reused for no longer than a period), and 200 once it is back', async () => {
    // A pool of our own, so the test can wait until it has dropped the killed connections: one
    // in use when its server goes is not this test's subject (see database-drop.test.ts).
    const pool = new pg.Pool({connectionString: url, max: 4, types: typeParsers, connectionTimeoutMillis: 5000})
    pool.on('error', () => {})
    const db = new Kysely<Database>({dialect: new PostgresDialect({pool})})
    const feed = listenForChanges({url, ssl: 'disable'}, {retryMs: 100})
    const logger = captureLogger()
    const clock = handClock()
    const app = await buildApp({db, changes: feed, config: {port: 0, staleAfterMinutes: 15}, version: {} as never, logger, now: clock.now})
    try {
      await waitUntil('the change feed live', () => feed.version() !== undefined)
      const [up] = await healthzTimes(app, 1)
      expect(up.statusCode).to.equal(200)
      expect(JSON.parse(up.body)).to.include({ok: true, database: 'reachable'})

      await admin(`ALTER DATABASE ${name} ALLOW_CONNECTIONS false`)
      await admin(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${name}'`)
      await waitUntil('the change feed down', () => feed.version() === undefined)
      await waitUntil('the pool rid of its killed connections', () => pool.totalCount === 0)

      clock.advance(HEALTH_REUSE_MS)
      const down = await healthzTimes(app, 50)
      for (const answer of down) {
        expect(answer.statusCode).to.equal(503)
        expect(JSON.parse(answer.body)).to.deep.equal({ok: false, database: 'unreachable'})
      }

      const warnings = () => logger.lines.filter((line) => line.startsWith('warn healthz: database unreachable')).length
      expect(warnings(), 'one failed check for the 50 requests').to.equal(1)
      clock.advance(HEALTH_REUSE_MS)
      expect((await healthzTimes(app, 10)).every((a) => a.statusCode === 503)).to.equal(true)
      expect(warnings(), 'the next period tries the database again').to.equal(2)

      await admin(`ALTER DATABASE ${name} ALLOW_CONNECTIONS true`)
      clock.advance(HEALTH_REUSE_MS)
      const [back] = await healthzTimes(app, 1)
      expect(back.statusCode, back.body).to.equal(200)
      expect(JSON.parse(back.body)).to.include({ok: true, database: 'reachable'})
    } finally {
      await app.close()
      await feed.close()
      await db.destroy()
    }
  })
}, 'takes the database away (ALLOW_CONNECTIONS false, pg_terminate_backend) and brings it back')
