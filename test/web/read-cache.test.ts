/**
 * The status page's reads are served from memory until audit_events_log changes: the cache's
 * rules, the trigger and listener that say when the table changed (on a real PostgreSQL), and the
 * page staying exactly as fresh as the database through changes, deletes and a lost listener.
 */
import {expect} from 'chai'
import type {FastifyInstance} from 'fastify'
import {type Kysely, sql} from 'kysely'
import pg from 'pg'

import {type ChangeFeed, listenForChanges, ownChangesOnly} from '../../src/lib/db/change-feed.js'
import type {Database} from '../../src/lib/db/schema.js'
import {buildApp} from '../../src/lib/web/app.js'
import {createReadCache} from '../../src/lib/web/read-cache.js'
import {captureLogger} from '../support/capture.js'
import {clearLog, describeWithServer, insertRecord, openEmbeddedTestDb, openTestDb} from '../support/db.js'
import {waitUntil} from '../support/helpers.js'
import {startNotificationDroppingProxy} from '../support/notification-dropping-proxy.js'

const NOW = new Date('2025-10-01T12:00:00Z')
const LISTENER = 'audit-logger change listener'

/** A load that counts its calls and answers with that count. */
function countingLoad() {
  const load = async () => ++load.calls
  load.calls = 0
  return load
}

describe('read cache', () => {
  it('answers from memory until the feed reports a change, then reads again', async () => {
    const feed = ownChangesOnly()
    const cache = createReadCache(feed)
    const load = countingLoad()
    expect([await cache.get('k', load), await cache.get('k', load)]).to.deep.equal([1, 1])
    feed.changed()
    expect(await cache.get('k', load)).to.equal(2)
    expect(await cache.get('other', load), 'another key has its own entry').to.equal(3)
  })

  it('reads every time without a feed, or while the feed cannot see changes', async () => {
    const load = countingLoad()
    const uncached = createReadCache(undefined)
    await uncached.get('k', load)
    await uncached.get('k', load)
    expect(load.calls).to.equal(2)

    const blind: ChangeFeed = {version: () => undefined, changed() {}, close: async () => {}}
    const cache = createReadCache(blind)
    await cache.get('k', load)
    await cache.get('k', load)
    expect(load.calls).to.equal(4)
  })

  it('lets concurrent readers of a key share one query', async () => {
    const cache = createReadCache(ownChangesOnly())
    const load = countingLoad()
    const answers = await Promise.all(Array.from({length: 10}, () => cache.get('k', load)))
    expect(answers).to.deep.equal(Array.from({length: 10}, () => 1))
    expect(load.calls).to.equal(1)
  })

  it('does not keep a read during which the table changed', async () => {
    const feed = ownChangesOnly()
    const cache = createReadCache(feed)
    let calls = 0
    const slowLoad = async () => {
      calls++
      if (calls === 1) feed.changed() // a change commits while the first query runs
      return calls
    }

    expect(await cache.get('k', slowLoad)).to.equal(1)
    expect(await cache.get('k', slowLoad), 'the first answer may predate the change').to.equal(2)
    expect(await cache.get('k', slowLoad)).to.equal(2)
  })

  it('does not keep a failed read', async () => {
    const cache = createReadCache(ownChangesOnly())
    let calls = 0
    const flaky = async () => {
      calls++
      if (calls === 1) throw new Error('connection lost')
      return calls
    }

    await cache.get('k', flaky).then(
      () => expect.fail('the first read fails'),
      (error: Error) => expect(error.message).to.equal('connection lost'),
    )
    expect(await cache.get('k', flaky)).to.equal(2)
    expect(await cache.get('k', flaky)).to.equal(2)
  })

  it('holds at most its bound of entries, dropping the least recently used', async () => {
    const cache = createReadCache(ownChangesOnly(), 2)
    const load = countingLoad()
    await cache.get('a', load) // 1
    await cache.get('b', load) // 2
    await cache.get('a', load) // hit: a is now the most recently used
    await cache.get('c', load) // 3, drops b
    expect(await cache.get('a', load)).to.equal(1)
    expect(await cache.get('b', load), 'b was dropped and is read again').to.equal(4)
  })
})

describeWithServer('change feed (LISTEN on a real PostgreSQL)', function () {
  this.timeout(30_000)
  let db: Kysely<Database>
  let admin: pg.Client
  const feeds: ChangeFeed[] = []

  const listen = (options: Parameters<typeof listenForChanges>[1] = {}) => {
    const feed = listenForChanges({url: process.env.TEST_DATABASE_URL!, ssl: 'disable'}, {retryMs: 100, ...options})
    feeds.push(feed)
    return feed
  }

  const listenerBackends = async () => {
    const result = await admin.query(`SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()`, [LISTENER])
    return result.rows.map((r: {pid: number}) => r.pid)
  }

  before(async () => {
    db = openTestDb(process.env.TEST_DATABASE_URL!)
    admin = new pg.Client({connectionString: process.env.TEST_DATABASE_URL})
    await admin.connect()
  })

  after(async () => {
    await db.destroy()
    await admin.end()
  })

  beforeEach(async () => {
    await clearLog(db)
  })

  afterEach(async () => {
    await Promise.all(feeds.splice(0).map((feed) => feed.close()))
  })

  it('moves on every kind of change, from any connection', async () => {
    const feed = listen()
    await waitUntil('the listener connected', () => feed.version() !== undefined)
    const statements = [
      `INSERT INTO audit_events_log (process_date, status) VALUES ('2025-09-01', 'SUCCESS')`,
      `UPDATE audit_events_log SET events_count = 5`,
      `DELETE FROM audit_events_log`,
      `TRUNCATE audit_events_log`,
    ]
    for (const statement of statements) {
      const before = feed.version()
      await admin.query(statement)
      await waitUntil(`a notification after ${statement.split(' ')[0]}`, () => feed.version() !== before)
    }
  })

  it('stops answering while its connection is gone, reconnects, and counts coming back as a change', async () => {
    const down: string[] = []
    let up = 0
    const feed = listen({onDown: (message) => down.push(message), onUp: () => up++})
    await waitUntil('the listener connected', () => feed.version() !== undefined)
    const before = feed.version()!
    const [pid] = await listenerBackends()
    await admin.query('SELECT pg_terminate_backend($1)', [pid])
    await waitUntil('the loss noticed', () => feed.version() === undefined)
    expect(down.join('\n')).to.match(/terminat|ended|connection/i)
    await waitUntil('the listener back', () => feed.version() !== undefined)
    expect(feed.version()).to.be.greaterThan(before)
    expect(up).to.equal(2)
    const [newPid] = await listenerBackends()
    expect(newPid).to.be.a('number').and.not.equal(pid)
  })

  it('notices by its ping a listener whose server stopped answering', async () => {
    const feed = listen({pingEveryMs: 100, pingTimeoutMs: 300, retryMs: 60_000})
    await waitUntil('the listener connected', () => feed.version() !== undefined)
    const [pid] = await listenerBackends()
    // A frozen backend keeps its socket open, as a server behind a network partition does: only
    // the ping can tell. (The server must run on this machine for its process to be stopped.)
    try {
      process.kill(pid, 'SIGSTOP')
    } catch (error) {
      throw new Error(`this test freezes the listener's backend (pid ${pid}) and needs the PostgreSQL server on this machine: ${(error as Error).message}`)
    }

    try {
      await waitUntil('the loss noticed', () => feed.version() === undefined)
    } finally {
      process.kill(pid, 'SIGCONT')
    }

    await waitUntil('the backend gone', async () => (await listenerBackends()).length === 0)
  })

  it('never serves from memory through a connection that loses notifications, and notices when one starts to', async () => {
    const proxy = await startNotificationDroppingProxy(process.env.TEST_DATABASE_URL!, true)
    try {
      const down: string[] = []
      const lossy = listenForChanges({url: proxy.url, ssl: 'disable'}, {pingTimeoutMs: 300, retryMs: 100, onDown: (message) => down.push(message)})
      feeds.push(lossy)
      await waitUntil('the failed delivery check reported', () => down.length > 0)
      expect(down[0]).to.match(/notification sent on the listening connection did not come back within 300 ms \(is DATABASE_URL a pooler in transaction mode\?\)/)
      expect(lossy.version(), 'not live while notifications are lost').to.equal(undefined)

      proxy.dropNotifications = false
      await waitUntil('live once notifications get through', () => lossy.version() !== undefined)
      proxy.dropNotifications = true
      const before = down.length
      await lossy.close()

      // A live feed whose notifications start to go missing is caught by its next ping.
      const pinged = listenForChanges({url: proxy.url, ssl: 'disable'}, {pingEveryMs: 100, pingTimeoutMs: 300, retryMs: 60_000, onDown: (message) => down.push(message)})
      feeds.push(pinged)
      proxy.dropNotifications = false
      await waitUntil('live', () => pinged.version() !== undefined)
      proxy.dropNotifications = true
      await waitUntil('the loss noticed by a ping', () => pinged.version() === undefined)
      expect(down.length).to.be.greaterThan(before)
    } finally {
      await Promise.all(feeds.splice(0).map((feed) => feed.close()))
      await proxy.close()
    }
  })

  it('ignores its own and other listeners’ delivery checks: only changes move the version', async () => {
    const feed = listen({pingEveryMs: 50})
    const other = listen({pingEveryMs: 50})
    await waitUntil('both connected', () => feed.version() !== undefined && other.version() !== undefined)
    const before = feed.version()
    await new Promise((resolve) => setTimeout(resolve, 500)) // about ten pings each
    expect(feed.version()).to.equal(before)
  })

  it('does not hold up a shutdown when its server stopped answering', async () => {
    const feed = listen({pingEveryMs: 60_000})
    await waitUntil('the listener connected', () => feed.version() !== undefined)
    const [pid] = await listenerBackends()
    process.kill(pid, 'SIGSTOP') // see the ping test: the server must run on this machine
    try {
      const outcome = await Promise.race([feed.close().then(() => 'closed'), new Promise((resolve) => setTimeout(resolve, 10_000, 'still waiting'))])
      expect(outcome).to.equal('closed')
    } finally {
      process.kill(pid, 'SIGCONT')
    }

    await waitUntil('the thawed backend gone', async () => !(await listenerBackends()).includes(pid))
  })

  it('closes its connection on close()', async () => {
    const feed = listen()
    await waitUntil('the listener connected', () => feed.version() !== undefined)
    expect(await listenerBackends()).to.have.length(1)
    await feed.close()
    expect(feed.version()).to.equal(undefined)
    await waitUntil('the backend gone', async () => (await listenerBackends()).length === 0)
  })
}, 'LISTEN/NOTIFY, a proxy that drops notifications, and pg_terminate_backend of the listener')

/** The dates a page's table lists (the calendar links every day, so only the table's links count). */
function daysIn(html: string): string[] {
  return [...html.matchAll(/<a href="\/logs\/(\d{4}-\d\d-\d\d)">/g)].map((m) => m[1])
}

async function listedDays(app: FastifyInstance, url = '/', headers: Record<string, string> = {}): Promise<string[]> {
  const response = await app.inject({url, headers})
  expect(response.statusCode).to.equal(200)
  return daysIn(response.body)
}

/** Makes a change and waits for its notification, so that what the page reads next is settled. */
async function changeAndWait(feed: ChangeFeed, change: () => Promise<void>): Promise<void> {
  const before = feed.version()
  await change()
  await waitUntil('the change notified', () => feed.version() !== before)
}

/** Deletes a day as an operator does (the confirmation page, then its form); returns where it redirects. */
async function deleteThroughPage(app: FastifyInstance, day: string, authorization: string): Promise<string> {
  const confirm = await app.inject({url: `/delete?date=${day}`, headers: {authorization}})
  const csrf = /name="csrf" value="([^"]+)"/.exec(confirm.body)![1]
  const deleted = await app.inject({
    method: 'POST',
    url: '/delete',
    headers: {authorization, 'content-type': 'application/x-www-form-urlencoded'},
    payload: new URLSearchParams({date: day, csrf}).toString(),
  })
  expect(deleted.statusCode).to.equal(303)
  return deleted.headers.location as string
}

async function appWith(db: Kysely<Database>, changes: ChangeFeed, auth?: {username: string; password: string}): Promise<FastifyInstance> {
  return buildApp({db, changes, config: {auth, port: 0, staleAfterMinutes: 15}, version: {} as never, logger: captureLogger(), now: () => NOW})
}

describeWithServer('status page served from memory (real PostgreSQL)', function () {
  this.timeout(30_000)
  let db: Kysely<Database>
  let feed: ChangeFeed
  let app: FastifyInstance

  before(async () => {
    db = openTestDb(process.env.TEST_DATABASE_URL!)
  })

  after(async () => {
    await db.destroy()
  })

  beforeEach(async () => {
    await clearLog(db)
    feed = listenForChanges({url: process.env.TEST_DATABASE_URL!, ssl: 'disable'}, {retryMs: 60_000})
    await waitUntil('the listener connected', () => feed.version() !== undefined)
    app = await appWith(db, feed)
  })

  afterEach(async () => {
    await sql`ALTER TABLE audit_events_log ENABLE TRIGGER audit_events_log_changed`.execute(db)
    await app.close()
    await feed.close()
  })

  it('serves an unchanged table from memory, and shows any change once it is committed', async () => {
    await changeAndWait(feed, () => insertRecord(db, {day: '2025-09-28', status: 'SUCCESS'}))
    expect(await listedDays(app)).to.deep.equal(['2025-09-28'])
    expect((await app.inject({url: '/api/logs'})).json().total).to.equal(1)

    // With the trigger off, a change is invisible to the feed: the page must still show the old table.
    await sql`ALTER TABLE audit_events_log DISABLE TRIGGER audit_events_log_changed`.execute(db)
    await insertRecord(db, {day: '2025-09-29', status: 'SUCCESS'})
    expect(await listedDays(app), 'served from memory').to.deep.equal(['2025-09-28'])
    expect((await app.inject({url: '/api/logs'})).json().total, 'the API too').to.equal(1)

    await sql`ALTER TABLE audit_events_log ENABLE TRIGGER audit_events_log_changed`.execute(db)
    await insertRecord(db, {day: '2025-09-30', status: 'FAILED'})
    await waitUntil('the change seen', async () => (await listedDays(app)).length === 3)
    expect(await listedDays(app)).to.deep.equal(['2025-09-30', '2025-09-29', '2025-09-28'])
    expect((await app.inject({url: '/api/logs'})).json().total).to.equal(3)
  })

  it('reads the database on every request while the listener is down', async () => {
    await changeAndWait(feed, () => insertRecord(db, {day: '2025-09-28', status: 'SUCCESS'}))
    expect(await listedDays(app)).to.deep.equal(['2025-09-28'])
    await sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ${LISTENER} AND datname = current_database()`.execute(db)
    await waitUntil('the loss noticed', () => feed.version() === undefined)

    await sql`ALTER TABLE audit_events_log DISABLE TRIGGER audit_events_log_changed`.execute(db)
    await insertRecord(db, {day: '2025-09-29', status: 'SUCCESS'})
    expect(await listedDays(app)).to.deep.equal(['2025-09-29', '2025-09-28'])
  })

  it('shows a delete made through the page on the very next page', async () => {
    const auth = {username: 'ops', password: 'pw'}
    const authed = await appWith(db, feed, auth)
    after(() => authed.close())
    const authorization = `Basic ${Buffer.from('ops:pw').toString('base64')}`
    await changeAndWait(feed, async () => {
      await insertRecord(db, {day: '2025-09-28', status: 'SUCCESS'})
      await insertRecord(db, {day: '2025-09-29', status: 'FAILED'})
    })
    expect(await listedDays(authed, '/', {authorization})).to.deep.equal(['2025-09-29', '2025-09-28'])

    const next = await deleteThroughPage(authed, '2025-09-29', authorization)
    // No waiting for the notification: the page's own write is seen at once.
    expect(await listedDays(authed, next, {authorization})).to.deep.equal(['2025-09-28'])
  })
}, 'LISTEN/NOTIFY, and pg_terminate_backend of the listener')

describe('status page served from memory (embedded database)', () => {
  it('shows its own delete at once: with the directory locked, its writes are the only ones', async () => {
    const db = await openEmbeddedTestDb()
    await clearLog(db)
    await insertRecord(db, {day: '2025-09-28', status: 'SUCCESS'})
    await insertRecord(db, {day: '2025-09-29', status: 'FAILED'})
    const app = await appWith(db, ownChangesOnly(), {username: 'ops', password: 'pw'})
    try {
      const authorization = `Basic ${Buffer.from('ops:pw').toString('base64')}`
      expect(await listedDays(app, '/', {authorization})).to.deep.equal(['2025-09-29', '2025-09-28'])
      const next = await deleteThroughPage(app, '2025-09-29', authorization)
      expect(await listedDays(app, next, {authorization})).to.deep.equal(['2025-09-28'])
    } finally {
      await app.close()
      await clearLog(db)
    }
  })
})
