/**
 * What the status page shows of delivery to sinks: the log page's "Delivery" table and
 * GET /api/delivery, through app.inject on both engines, with positions a real delivery to a
 * loopback intake (test/support/sink.ts) left behind.
 */
import {expect} from 'chai'
import type {FastifyInstance} from 'fastify'
import type {Kysely} from 'kysely'

import {type SinkConfig, loadConfig} from '../../src/lib/config.js'
import type {Database} from '../../src/lib/db/schema.js'
import {queueDayForSinks, registerSink, stopSink} from '../../src/lib/db/sink-queries.js'
import {deliverToSink, sinkName} from '../../src/lib/delivery/deliver-events.js'
import type {SinkStatus} from '../../src/lib/delivery/delivery-status.js'
import {clearSecrets} from '../../src/lib/secrets.js'
import {buildApp} from '../../src/lib/web/app.js'
import type {VersionInfo} from '../../src/lib/web/version.js'
import {captureLogger} from '../support/capture.js'
import {describeOnEngines, insertRecord, useEngineDb} from '../support/db.js'
import {sampleEvent, seedEvents} from '../support/event-seed.js'
import {type SinkServer, startSink} from '../support/sink.js'

const AUTH = {username: 'ops', password: 'delivery-test-password'}
const AUTHORIZED = {authorization: `Basic ${Buffer.from(`${AUTH.username}:${AUTH.password}`).toString('base64')}`}
const VERSION = {version: 'test', commit: 'unknown', commitShort: 'unknown'} as VersionInfo
const DAY1 = '2025-09-27'
const DAY2 = '2025-09-28'
// The URL's path and the token are credentials: neither may be shown.
const PATH_SECRET = 'receiver/v1/http/ZaVnC4dhaV3xPathSecret'
const TOKEN = 'sink tok%/&?=+en-7777'
const HOSTILE = '<script>alert(1)</script>'

describeOnEngines('delivery on the status page', (engine) => {
  let db: Kysely<Database>
  let intake: SinkServer
  let sink: SinkConfig
  const opened: FastifyInstance[] = []

  useEngineDb(engine, (handle) => (db = handle))

  beforeEach(async () => {
    intake = await startSink()
    sink = loadConfig({DATABASE_URL: 'postgres://u@127.0.0.1/db', SINK_URL: `${new URL(intake.url).origin}/${PATH_SECRET}`, SINK_TOKEN: TOKEN}).sink!
  })

  afterEach(async () => {
    for (const instance of opened.splice(0)) await instance.close()
    await intake.close()
    clearSecrets()
  })

  /** GET on a new app: each app keeps the sinks' backlog for a few seconds. */
  async function get(url: string) {
    const instance = await buildApp({db, config: {auth: AUTH, port: 0, staleAfterMinutes: 15, onDyno: false}, version: VERSION, logger: captureLogger()})
    opened.push(instance)
    return instance.inject({url, headers: AUTHORIZED})
  }

  /** The log page's Delivery section, or undefined when it has none. */
  async function deliverySection(): Promise<string | undefined> {
    const response = await get('/')
    expect(response.statusCode).to.equal(200)
    const start = response.body.indexOf('<section class="delivery"')
    return start < 0 ? undefined : response.body.slice(start, response.body.indexOf('</section>', start))
  }

  /** A SUCCESS day with `count` events stored and queued for the sinks, as the day job leaves it. */
  async function storeDay(day: string, count: number): Promise<void> {
    await insertRecord(db, {day, status: 'SUCCESS', events: count})
    await seedEvents(db, day, Array.from({length: count}, (_, n) => sampleEvent(day, n)))
    await queueDayForSinks(db, day)
  }

  const register = () => registerSink(db, {name: sinkName(sink), format: sink.format, target: sink.target})
  const deliver = () => deliverToSink({db, logger: captureLogger(), userAgent: 'audit-logger/test'}, {sink, retryStopped: true, retry: {attempts: 1, baseWaitMs: 1, maxWaitMs: 1}})

  it('shows each sink by format and host, with the events waiting and the oldest day waiting', async () => {
    await register()
    await storeDay(DAY1, 7)
    const section = await deliverySection()
    expect(section).to.include('<h2>Delivery</h2>')
    expect(section).to.include(`<td>${sink.target}</td>`)
    expect(section).to.include('<td class="num">7</td>')
    expect(section).to.include(`<a href="/logs/${DAY1}">${DAY1}</a>`)
    expect(section).to.include('status-success">OK<')
    expect(section).not.to.include(PATH_SECRET)
  })

  it('shows a stopped sink as STOPPED with its reason, escaped', async () => {
    await register()
    await storeDay(DAY1, 2)
    await stopSink(db, sinkName(sink), `HTTP 400: ${HOSTILE}`)
    const response = await get('/')
    const section = (await deliverySection())!
    expect(section).to.include('status-failed">STOPPED<')
    expect(section).to.include('HTTP 400: &lt;script&gt;alert(1)&lt;/script&gt;')
    expect(response.body).not.to.include(HOSTILE)
  })

  it('has no Delivery section without a sink, events stored or not', async () => {
    await storeDay(DAY1, 3)
    expect(await deliverySection()).to.equal(undefined)
    const page = await get('/')
    expect(page.body).not.to.include('Delivery')
  })

  it('GET /api/delivery: each sink’s backlog, last success and stop, never the URL’s path or the token', async () => {
    await storeDay(DAY1, 3)
    expect((await deliver()).outcome).to.equal('done')
    await storeDay(DAY2, 4)
    const waiting = await get('/api/delivery')
    expect(waiting.statusCode).to.equal(200)
    const {sinks} = waiting.json<{sinks: SinkStatus[]}>()
    expect(sinks).to.have.length(1)
    expect(sinks[0]).to.deep.include({sink: sinkName(sink), target: sink.target, pendingEvents: 4, pendingDays: 1, oldestPendingDay: DAY2, deliveredEvents: 3, stoppedAt: null, stopReason: null})
    expect(Date.parse(sinks[0].lastSuccessAt!)).to.be.a('number').and.not.NaN

    // The intake refuses the next batch, quoting the token back.
    intake.script({status: 400, body: `{"text":"bad token ${TOKEN}"}`})
    expect((await deliver()).outcome).to.equal('stopped')
    const stopped = await get('/api/delivery')
    const after = stopped.json<{sinks: SinkStatus[]}>().sinks[0]
    expect(after).to.include({pendingEvents: 4, lastSuccessAt: sinks[0].lastSuccessAt})
    expect(Date.parse(after.stoppedAt!)).to.be.a('number').and.not.NaN
    expect(after.stopReason).to.match(/^HTTP 400/)
    for (const secret of [PATH_SECRET, 'ZaVnC4dhaV3x', TOKEN, encodeURIComponent(TOKEN)]) {
      expect(waiting.body).not.to.include(secret)
      expect(stopped.body).not.to.include(secret)
    }
  })
})
