/**
 * The day job with the event store on: a day's events are stored exactly when its record says
 * SUCCESS, each exactly as the API sent it, once, on both engines.
 */
import {expect} from 'chai'
import {type Kysely, sql} from 'kysely'

import {claimDay, findDay} from '../../src/lib/db/audit-log-repository.js'
import {findEvent, storeStats, streamEvents} from '../../src/lib/db/event-queries.js'
import {type EventStore, eventStoreFor} from '../../src/lib/db/event-store.js'
import type {Database} from '../../src/lib/db/schema.js'
import {type AuditClientOptions, createAuditClient} from '../../src/lib/heroku/client.js'
import {type ProcessDayOptions, processDay} from '../../src/lib/processing/process-day.js'
import {eventsDigest} from '../../src/lib/processing/events-digest.js'
import {type AuditEvent, generateEvents, oddEvents} from '../fake-heroku/events.js'
import type {FakeHeroku} from '../fake-heroku/server.js'
import {CaptureStream, captureLogger} from '../support/capture.js'
import {describeOnEngines} from '../support/db.js'
import {useJobSuite} from '../support/job-suite.js'

const DAY = '2025-09-28'

describeOnEngines('processDay with the event store', (engine) => {
  let fake: FakeHeroku
  let db: Kysely<Database>

  useJobSuite((suite) => ({fake, db} = suite), {fake: {maxPageSize: 1000}, open: engine.open, rateLimitRemaining: 4500})

  /** `store: null` runs with the store off. */
  function run(options: Partial<ProcessDayOptions> = {}, clientOptions: Partial<AuditClientOptions> = {}, store: EventStore | null = eventStoreFor(db)) {
    const client = createAuditClient({apiUrl: fake.url, token: fake.token, accountId: 'acme', baseDelayMs: 5, maxDelayMs: 20, attemptTimeoutMs: 1000, maxAttempts: 2, ...clientOptions})
    const output = new CaptureStream()
    const logger = captureLogger()
    const done = processDay({db, client, output, logger, store: store ?? undefined}, {day: DAY, format: 'json', force: false, staleAfterMinutes: 15, heartbeatIntervalMs: 50, ...options})
    return {output, logger, done}
  }

  async function storedIds(day = DAY): Promise<string[]> {
    const ids: string[] = []
    for await (const hit of streamEvents(db, {from: day, to: day}, {order: 'oldest'})) ids.push(hit.id)
    return ids
  }

  it('stores every event of a SUCCESS day, each as the API sent it, and the digest can be recomputed from the store', async () => {
    const events = [...generateEvents(DAY, 2400), ...oddEvents(DAY)].sort((a, b) => a.created_at.localeCompare(b.created_at))
    fake.setEvents(DAY, events)
    const result = await run().done
    expect(result).to.include({outcome: 'success', events: events.length, pages: 3, stored: true})
    const ids = await storedIds()
    expect(ids).to.have.length(events.length)
    expect(eventsDigest(ids)).to.equal((await findDay(db, DAY))?.events_digest)
    for (const odd of oddEvents(DAY)) {
      const stored = await findEvent(db, odd.id)
      expect(stored?.event_json, odd.id).to.equal(JSON.stringify(odd))
      expect(stored?.day).to.equal(DAY)
    }
  })

  it('stores nothing of a day that fails part-way', async () => {
    fake.setEvents(DAY, generateEvents(DAY, 2500))
    fake.script([{kind: 'delay', ms: 0}, {kind: 'status', status: 503}, {kind: 'status', status: 503}], {day: DAY})
    const failed = await run().done
    expect(failed.outcome).to.equal('failed')
    expect((await storeStats(db)).events, 'a failed day stores none of its events').to.equal(0)
  })

  // On the embedded engine no other process can take the claim: it holds the directory.
  const onServer = engine.name === 'postgres' ? it : () => {}
  onServer('stores nothing when the claim is lost meanwhile', async () => {
    fake.setEvents(DAY, generateEvents(DAY, 2500))

    // Another run takes the day while this one fetches: its fence fails, its transaction rolls back.
    fake.reset()
    fake.script([{kind: 'delay', ms: 400}], {day: DAY})
    const lost = run({force: true})
    await new Promise((resolve) => setTimeout(resolve, 150))
    await sql`UPDATE audit_events_log SET status = 'FAILED' WHERE process_date = ${DAY}`.execute(db)
    expect((await claimDay(db, {day: DAY, token: '00000000-0000-4000-8000-00000000abcd', staleAfterMinutes: 15, force: false})).claimed).to.equal(true)
    expect((await lost.done).outcome).to.equal('lost')
    expect((await storeStats(db)).events).to.equal(0)
  })

  it('keeps one copy of each event through a forced rerun and ids the API repeats', async () => {
    const events = generateEvents(DAY, 1500)
    // The API repeats five ids on the second page.
    const repeated: AuditEvent[] = [...events.slice(0, 1000), ...events.slice(0, 5), ...events.slice(1000)]
    fake.setEvents(DAY, repeated)
    expect((await run().done).events).to.equal(1500)
    expect(await storedIds()).to.have.length(1500)
    const forced = await run({force: true}).done
    expect(forced).to.include({outcome: 'success', events: 1500})
    const ids = await storedIds()
    expect(ids).to.have.length(1500)
    expect(new Set(ids).size).to.equal(1500)
  })

  it('fails the day naming an event whose created_at is not a time, storing nothing', async () => {
    const events = generateEvents(DAY, 3)
    fake.setEvents(DAY, [events[0], {...events[1], created_at: 'not a time'}, events[2]])
    const result = await run().done
    expect(result.outcome).to.equal('error')
    expect(result.message).to.equal(`event 2 of ${DAY} (id ${events[1].id}) has no created_at that is a real time: nothing of the day is stored`)
    expect((await findDay(db, DAY))?.status).to.equal('ERROR')
    expect((await storeStats(db)).events).to.equal(0)
  })

  it('does not keep a day before the retention window (retention would remove it at once), and says so', async () => {
    fake.setEvents(DAY, generateEvents(DAY, 10))
    const {done, logger} = run({storeFrom: '2025-09-29'})
    const result = await done
    expect(result).to.include({outcome: 'success', events: 10})
    expect(result.stored).to.equal(undefined)
    expect(logger.lines).to.include(`info ${DAY}: not kept in the event store: it is before 2025-09-29, the first day EVENT_RETENTION_DAYS keeps`)
    expect((await storeStats(db)).events).to.equal(0)
    expect((await run({storeFrom: DAY, force: true}).done).stored).to.equal(true)
  })

  it('stores nothing with the store off', async () => {
    fake.setEvents(DAY, generateEvents(DAY, 10))
    const result = await run({}, {}, null).done
    expect(result.outcome).to.equal('success')
    expect(result.stored).to.equal(undefined)
    expect((await storeStats(db)).events).to.equal(0)
  })
})
