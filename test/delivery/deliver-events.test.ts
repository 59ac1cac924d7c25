/**
 * Delivery from the store to a sink: every stored event reaches the intake at least once, in
 * bounded batches, from a durable position per sink that survives outages and restarts, on both
 * engines, against a real loopback intake (test/support/sink.ts).
 */
import {expect} from 'chai'
import {type Kysely, sql} from 'kysely'

import type {SinkConfig} from '../../src/lib/config.js'
import type {Database} from '../../src/lib/db/schema.js'
import {queueDayForSinks, sinkBacklogs} from '../../src/lib/db/sink-queries.js'
import {type DeliveryOptions, deliverToSink, deliveryLine, sinkName} from '../../src/lib/delivery/deliver-events.js'
import {retryAfterMs} from '../../src/lib/delivery/sink-post.js'
import {clearSecrets, registerSecret} from '../../src/lib/secrets.js'
import {captureLogger} from '../support/capture.js'
import {rejectionOf} from '../support/helpers.js'
import {describeOnEngines, insertRecord, useEngineDb} from '../support/db.js'
import {sampleEvent, seedEvents} from '../support/event-seed.js'
import {type SinkServer, startSink} from '../support/sink.js'

const DAYS = ['2025-09-26', '2025-09-27', '2025-09-28']
const TOKEN = 'sink tok%/&?=+en-0001'

describe('Retry-After', () => {
  it('reads delta seconds and HTTP dates, and ignores anything else', () => {
    expect(retryAfterMs('7')).to.equal(7000)
    expect(retryAfterMs('Wed, 02 Dec 2026 10:00:30 GMT', Date.parse('2026-12-02T10:00:00Z'))).to.equal(30_000)
    expect(retryAfterMs('soon')).to.equal(undefined)
    expect(retryAfterMs(null)).to.equal(undefined)
  })
})

describeOnEngines('delivering stored events to a sink', (engine) => {
  let db: Kysely<Database>
  let intake: SinkServer
  let waits: number[]

  useEngineDb(engine, (opened) => (db = opened))

  beforeEach(async () => {
    intake = await startSink()
    waits = []
  })

  afterEach(async () => {
    await intake.close()
    clearSecrets()
  })

  function sinkConfig(extra: Partial<SinkConfig> = {}): SinkConfig {
    return {url: intake.url, format: 'ndjson', token: TOKEN, target: `ndjson ${new URL(intake.url).origin}`, batchEvents: 50, batchBytes: 1_000_000, timeoutMs: 2000, maxAttempts: 3, ...extra}
  }

  /** A SUCCESS day with `count` events stored, as the day job leaves it. */
  async function storeSuccessDay(day: string, count: number): Promise<string[]> {
    const events = Array.from({length: count}, (_, n) => sampleEvent(day, n))
    await insertRecord(db, {day, status: 'SUCCESS', events: count})
    await seedEvents(db, day, events)
    await queueDayForSinks(db, day)
    return events.map((e) => e.id)
  }

  function deliver(options: Partial<DeliveryOptions> = {}, onStopped: Array<{reason: string}> = []) {
    const logger = captureLogger()
    const done = deliverToSink(
      {
        db,
        logger,
        userAgent: 'audit-logger/test',
        sleep: async (ms) => {
          waits.push(ms)
        },
        random: () => 0.5,
        onStopped: async (event) => {
          onStopped.push(event)
        },
      },
      {sink: sinkConfig(), retryStopped: false, retry: {attempts: 3, baseWaitMs: 100, maxWaitMs: 10_000}, ...options},
    )
    return {logger, done}
  }

  it('sends every stored event once, oldest day first, each as stored, in batches bounded by count and bytes', async () => {
    const ids = [...(await storeSuccessDay(DAYS[0], 120)), ...(await storeSuccessDay(DAYS[1], 7))]
    const report = await deliver({sink: sinkConfig({batchEvents: 50, batchBytes: 20_000})}).done
    expect(report).to.include({outcome: 'done', delivered: 127, pending: 0})
    expect(intake.acceptedIds()).to.deep.equal(ids)
    for (const request of intake.accepted) {
      expect(request.records.length).to.be.at.most(50)
      expect(Buffer.byteLength(request.body)).to.be.at.most(20_000)
      expect(request.headers.authorization).to.equal(`Bearer ${TOKEN}`)
      expect(request.headers['content-type']).to.equal('application/x-ndjson')
    }

    const stored = await sql<{event_json: string}>`SELECT event_json FROM audit_events WHERE id = ${ids[0]}`.execute(db)
    expect(intake.accepted[0].body.split('\n')[0]).to.equal(stored.rows[0].event_json)
    const again = await deliver().done
    expect(again).to.include({outcome: 'done', delivered: 0, requests: 0})
    expect(intake.acceptedIds()).to.have.length(127)
  })

  it('a new sink gets everything already in the store; a day without events is not queued', async () => {
    await storeSuccessDay(DAYS[0], 3)
    await insertRecord(db, {day: DAYS[1], status: 'SUCCESS', events: 0})
    await sql`TRUNCATE audit_sink_days, audit_sinks`.execute(db)
    const report = await deliver().done
    expect(report).to.include({outcome: 'done', delivered: 3})
    const queued = await sql<{day: string}>`SELECT day FROM audit_sink_days`.execute(db)
    expect(queued.rows.map((r) => r.day)).to.deep.equal([DAYS[0]])
  })

  it('posts Splunk HTTP Event Collector records: time, the event, sourcetype and source, with the Splunk token', async () => {
    const ids = await storeSuccessDay(DAYS[0], 3)
    const report = await deliver({sink: sinkConfig({format: 'splunk-hec', target: 'splunk-hec x'})}).done
    expect(report.outcome).to.equal('done')
    const request = intake.accepted[0]
    expect(request.headers.authorization).to.equal(`Splunk ${TOKEN}`)
    const record = request.records[0] as {time: number; event: {id: string; created_at: string}; sourcetype: string; source: string}
    expect(record).to.include({sourcetype: 'heroku:audit', source: 'audit-logger'})
    expect(record.event.id).to.equal(ids[0])
    expect(record.time * 1000).to.equal(Date.parse(record.event.created_at))
  })

  it('loses nothing across an outage: the sink down for a run, then back, gets every event once', async () => {
    const ids = await storeSuccessDay(DAYS[0], 30)
    await intake.down()
    const first = await deliver().done
    expect(first.outcome).to.equal('unavailable')
    expect(first.pending).to.equal(30)
    expect(deliveryLine(first).message).to.match(/30 event\(s\) waiting/)
    const backlog = (await sinkBacklogs(db))[0]
    expect(backlog.last_error).to.match(/could not connect/)
    await intake.up()
    const ids2 = await storeSuccessDay(DAYS[1], 5)
    const second = await deliver().done
    expect(second).to.include({outcome: 'done', delivered: 35, pending: 0})
    expect(intake.acceptedIds()).to.deep.equal([...ids, ...ids2])
  })

  it('resumes from its durable position: what a run delivered before the intake failed is not sent again', async () => {
    const ids = await storeSuccessDay(DAYS[0], 100)
    intake.script({status: 200}, {status: 503}, {status: 503}, {status: 503})
    const first = await deliver().done
    expect(first).to.include({outcome: 'unavailable', delivered: 50, pending: 50})
    expect(waits, 'two waits between three tries, doubling (with jitter: random 0.5 waits three quarters)').to.deep.equal([75, 150])
    const second = await deliver().done
    expect(second).to.include({outcome: 'done', delivered: 50})
    expect(intake.acceptedIds()).to.deep.equal(ids)
  })

  it('tries 429 and 5xx again, waiting what Retry-After says', async () => {
    const ids = await storeSuccessDay(DAYS[0], 10)
    intake.script({status: 429, headers: {'Retry-After': '7'}}, {status: 502})
    const report = await deliver().done
    expect(report.outcome).to.equal('done')
    expect(waits).to.deep.equal([7000, 150])
    expect(intake.acceptedIds()).to.deep.equal(ids)
  })

  it('does not wait a Retry-After longer than a run waits: the next run resumes', async () => {
    await storeSuccessDay(DAYS[0], 10)
    intake.script({status: 503, headers: {'Retry-After': '3600'}})
    const report = await deliver().done
    expect(report.outcome).to.equal('unavailable')
    expect(report.message).to.match(/asked to wait 3600 s/)
    expect(waits).to.deep.equal([])
  })

  it('a 4xx stops the sink with one clear reason, once; process-like runs leave it stopped, deliver resumes it', async () => {
    const ids = await storeSuccessDay(DAYS[0], 10)
    // The intake echoes the token and a control character: neither reaches the reason.
    intake.script({status: 401, body: `{"text":"Invalid token ${TOKEN}\u001B[31m","code":4}`})
    registerSecret(TOKEN)
    const stops: Array<{reason: string}> = []
    const first = deliver({}, stops)
    const report = await first.done
    expect(report.outcome).to.equal('stopped')
    expect(stops).to.have.length(1)
    expect(stops[0].reason).to.match(/^HTTP 401: /)
    expect(stops[0].reason).not.to.include(TOKEN)
    expect(stops[0].reason).not.to.include('\u001B')
    const row = (await sinkBacklogs(db))[0]
    expect(row.stopped_at).to.be.instanceOf(Date)
    expect(row.stop_reason).to.equal(stops[0].reason)

    const skipped = await deliver({}, stops).done
    expect(skipped.outcome).to.equal('stopped')
    expect(skipped.requests).to.equal(0)
    expect(stops, 'alerted once, not again while stopped').to.have.length(1)

    const resumed = await deliver({retryStopped: true}, stops).done
    expect(resumed).to.include({outcome: 'done', delivered: 10})
    expect(intake.acceptedIds()).to.deep.equal(ids)
    expect((await sinkBacklogs(db))[0].stopped_at).to.equal(null)
  })

  it('records a stop and its alert together: when the alert cannot be recorded, the sink is not stopped and the next run stops it', async () => {
    await storeSuccessDay(DAYS[0], 3)
    intake.script({status: 400, body: 'bad'}, {status: 400, body: 'bad'})
    const failing = deliverToSink(
      {db, logger: captureLogger(), userAgent: 'audit-logger/test', onStopped: async () => Promise.reject(new Error('alert table unavailable'))},
      {sink: sinkConfig(), retryStopped: false},
    )
    expect((await rejectionOf(failing)).message).to.equal('alert table unavailable')
    expect((await sinkBacklogs(db))[0].stopped_at, 'not stopped without its alert').to.equal(null)
    const stops: Array<{reason: string}> = []
    expect((await deliver({}, stops).done).outcome).to.equal('stopped')
    expect(stops).to.have.length(1)
  })

  it('clears a stop once nothing is left to send (the refused day was reset or pruned meanwhile)', async () => {
    await storeSuccessDay(DAYS[0], 3)
    intake.script({status: 400, body: 'bad'})
    expect((await deliver().done).outcome).to.equal('stopped')
    await sql`DELETE FROM audit_sink_days`.execute(db)
    await sql`DELETE FROM audit_events_log`.execute(db)
    expect((await deliver().done).outcome, 'process leaves a stopped sink alone').to.equal('stopped')
    const resumed = await deliver({retryStopped: true}).done
    expect(resumed).to.include({outcome: 'done', requests: 0})
    expect((await sinkBacklogs(db))[0].stopped_at).to.equal(null)
  })

  it('halves the batch on 413 instead of giving up', async () => {
    const ids = await storeSuccessDay(DAYS[0], 40)
    intake.script({status: 413, body: 'too big'})
    const {done, logger} = deliver()
    const report = await done
    expect(report.outcome).to.equal('done')
    expect(intake.accepted[0].records).to.have.length(20)
    expect(intake.acceptedIds()).to.deep.equal(ids)
    expect(logger.text()).to.match(/at most 20 events per request/)
  })

  it('never follows a redirect (the credential would go with it): the sink stops', async () => {
    await storeSuccessDay(DAYS[0], 2)
    intake.script({status: 307, headers: {Location: 'http://127.0.0.2:9/elsewhere'}})
    const report = await deliver().done
    expect(report.outcome).to.equal('stopped')
    expect(report.message).to.match(/HTTP 307.*redirect/)
    expect(intake.requests).to.have.length(1)
  })

  it('gives up on an intake that never answers, within the request timeout', async () => {
    await storeSuccessDay(DAYS[0], 2)
    intake.fallback = 'hang'
    const report = await deliver({sink: sinkConfig({timeoutMs: 200}), retry: {attempts: 2, baseWaitMs: 1, maxWaitMs: 10}}).done
    expect(report.outcome).to.equal('unavailable')
    expect(report.message).to.match(/no answer within 0.2 s/)
  })

  it('sends a day stored again (a forced rerun) once more from its start', async () => {
    const ids = await storeSuccessDay(DAYS[0], 5)
    await deliver().done
    await queueDayForSinks(db, DAYS[0])
    const report = await deliver().done
    expect(report).to.include({outcome: 'done', delivered: 5})
    expect(intake.acceptedIds()).to.deep.equal([...ids, ...ids])
  })

  it('lets one run deliver to a sink at a time', async () => {
    await storeSuccessDay(DAYS[0], 60)
    intake.script({status: 200, delayMs: 300})
    const first = deliver()
    await new Promise((resolve) => setTimeout(resolve, 100))
    const second = await deliver().done
    expect(second.outcome).to.equal('busy')
    expect((await first.done).outcome).to.equal('done')
    expect(intake.acceptedIds()).to.have.length(60)
  })

  it('names a sink by format and host, never by the secret parts of its URL', () => {
    const name = sinkName({url: 'https://collectors.example.com/receiver/v1/http/SECRETSECRET?token=abc', format: 'ndjson', target: 'ndjson https://collectors.example.com'})
    expect(name).to.match(/^ndjson https:\/\/collectors\.example\.com #[0-9a-f]{12}$/)
    expect(name).not.to.include('SECRET')
  })
})
