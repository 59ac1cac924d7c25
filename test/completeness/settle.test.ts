/**
 * Settle: a SUCCESS day read once more, compared by id with the store. Late events are stored,
 * written and counted; vanished ones are counted and kept; the record keeps both digests. On
 * both engines, against the fake API.
 */
import {expect} from 'chai'
import {type Kysely, sql} from 'kysely'

import {findDay} from '../../src/lib/db/audit-log-repository.js'
import {eventStoreFor} from '../../src/lib/db/event-store.js'
import {findEvent, storeStats} from '../../src/lib/db/event-queries.js'
import type {Database} from '../../src/lib/db/schema.js'
import {daysToSettle} from '../../src/lib/completeness/catch-up.js'
import {type SettleOptions, settleDay, settleLine} from '../../src/lib/completeness/settle-day.js'
import {createAuditClient} from '../../src/lib/heroku/client.js'
import {processDay} from '../../src/lib/processing/process-day.js'
import {eventsDigest} from '../../src/lib/processing/events-digest.js'
import {type AuditEvent, generateEvents, oddEvents} from '../fake-heroku/events.js'
import type {FakeHeroku} from '../fake-heroku/server.js'
import {CaptureStream, captureLogger} from '../support/capture.js'
import {describeOnEngines} from '../support/db.js'
import {useJobSuite} from '../support/job-suite.js'

const DAY = '2025-09-28'

describeOnEngines('settle re-reads', (engine) => {
  let fake: FakeHeroku
  let db: Kysely<Database>

  useJobSuite((suite) => ({fake, db} = suite), {fake: {maxPageSize: 1000}, open: engine.open, rateLimitRemaining: 4500})

  function client() {
    return createAuditClient({apiUrl: fake.url, token: fake.token, accountId: 'acme', baseDelayMs: 5, maxDelayMs: 20, attemptTimeoutMs: 2000, maxAttempts: 2})
  }

  /** Collects DAY as process does, with the store on. */
  async function collect(events: AuditEvent[]): Promise<void> {
    fake.setEvents(DAY, events)
    const result = await processDay(
      {db, client: client(), output: new CaptureStream(), logger: captureLogger(), store: eventStoreFor(db)},
      {day: DAY, format: 'json', force: false, staleAfterMinutes: 15, heartbeatIntervalMs: 50},
    )
    expect(result.outcome).to.equal('success')
  }

  function settle(options: Partial<SettleOptions> = {}) {
    const output = new CaptureStream()
    const done = settleDay({db, client: client(), store: eventStoreFor(db), output, logger: captureLogger()}, {day: DAY, format: 'json', ...options})
    return {output, done}
  }

  async function storedIds(): Promise<string[]> {
    const rows = await sql<{id: string}>`SELECT id FROM audit_events WHERE day = ${DAY}::date`.execute(db)
    return rows.rows.map((row) => row.id)
  }

  it('stores and writes late events, counts and keeps vanished ones, and records both digests', async () => {
    const first = generateEvents(DAY, 1500)
    await collect(first)
    const before = await findDay(db, DAY)
    const late = [...generateEvents(DAY, 3, {seed: 99}), ...oddEvents(DAY)]
    const vanished = first.slice(10, 12)
    fake.setEvents(DAY, [...first.filter((event) => !vanished.includes(event)), ...late].sort((a, b) => a.created_at.localeCompare(b.created_at)))

    const {output, done} = await settle()
    const result = await done
    expect(result).to.include({outcome: 'settled', late: late.length, vanished: 2, matched: 1498})
    expect(result.vanishedSample).to.have.members(vanished.map((event) => event.id))
    // Written like any event (a line too long for Logplex cut, as process cuts it).
    const written = output.lines().map((line) => JSON.parse(line) as AuditEvent)
    expect(written.map((event) => event.id)).to.have.members(late.map((event) => event.id))
    expect(output.lines()).to.include(JSON.stringify(late.at(-1)))
    for (const event of late) expect((await findEvent(db, event.id))?.event_json).to.equal(JSON.stringify(event))

    const ids = await storedIds()
    expect(ids, 'vanished events are kept').to.have.length(first.length + late.length)
    const after = await findDay(db, DAY)
    expect(after).to.include({status: 'SUCCESS', events_count: first.length + late.length, late_events: late.length, vanished_events: 2})
    expect(after?.events_digest, 'the first digest is kept').to.equal(before?.events_digest)
    expect(after?.settled_digest).to.equal(eventsDigest(ids))
    expect(after?.settled_at).to.be.instanceOf(Date)
    expect(settleLine(result).message).to.match(/late event\(s\) stored and written.*no longer served/)
  })

  it('settles an unchanged day with nothing written and the same digest', async () => {
    await collect(generateEvents(DAY, 40))
    const {output, done} = await settle()
    expect(await done).to.include({outcome: 'settled', late: 0, vanished: 0, matched: 40})
    expect(output.text).to.equal('')
    const row = await findDay(db, DAY)
    expect(row?.settled_digest).to.equal(row?.events_digest)
    expect(row).to.include({late_events: 0, vanished_events: 0, events_count: 40})
  })

  it('counts an id the re-read serves twice once', async () => {
    const events = generateEvents(DAY, 20)
    await collect(events)
    const extra = generateEvents(DAY, 1, {seed: 7})[0]
    fake.setEvents(DAY, [...events, extra, extra, events[0]])
    expect(await settle().done).to.include({outcome: 'settled', late: 1, vanished: 0})
    expect(await storedIds()).to.have.length(21)
  })

  it('changes nothing when the re-read fails, and the next one settles the day', async () => {
    await collect(generateEvents(DAY, 30))
    fake.setEvents(DAY, generateEvents(DAY, 31))
    fake.script([{kind: 'status', status: 503}, {kind: 'status', status: 503}], {day: DAY})
    const failed = await settle().done
    expect(failed.outcome).to.equal('failed')
    expect(failed.message).to.match(/settling 2025-09-28 failed: .*503.*nothing changed/)
    expect((await findDay(db, DAY))?.settled_at).to.equal(null)
    expect((await storeStats(db)).events).to.equal(30)
    expect((await settle().done).outcome).to.equal('settled')
  })

  it('stores nothing when the re-read serves an event it cannot keep', async () => {
    await collect(generateEvents(DAY, 5))
    const broken = {...generateEvents(DAY, 1, {seed: 3})[0], created_at: 'yesterday'}
    fake.setEvents(DAY, [...generateEvents(DAY, 5), broken])
    const result = await settle().done
    expect(result.outcome).to.equal('failed')
    expect(result.message).to.match(/created_at/)
    expect((await storeStats(db)).events).to.equal(5)
    expect((await findDay(db, DAY))?.settled_at).to.equal(null)
  })

  it('leaves alone a day that is not SUCCESS, or settled already, unless asked again', async () => {
    expect((await settle().done).outcome, 'no record').to.equal('skipped')
    await collect(generateEvents(DAY, 5))
    expect((await settle().done).outcome).to.equal('settled')
    expect((await settle().done).outcome, 'settled already').to.equal('skipped')
    fake.setEvents(DAY, generateEvents(DAY, 6))
    expect(await settle({again: true}).done).to.include({outcome: 'settled', late: 1})
    await sql`UPDATE audit_events_log SET status = 'FAILED', settled_at = NULL WHERE process_date = ${DAY}`.execute(db)
    expect((await settle().done).outcome, 'FAILED').to.equal('skipped')
  })

  // On the embedded engine nothing else can write while the re-read's transaction is open.
  const onServer = engine.name === 'postgres' ? it : () => {}
  onServer('stores nothing when the day is collected again while it is being re-read', async () => {
    await collect(generateEvents(DAY, 10))
    fake.setEvents(DAY, generateEvents(DAY, 12))
    fake.script([{kind: 'delay', ms: 400}], {day: DAY})
    const {done} = settle()
    await new Promise((resolve) => setTimeout(resolve, 150))
    await sql`UPDATE audit_events_log SET claim_token = '00000000-0000-4000-8000-00000000beef' WHERE process_date = ${DAY}`.execute(db)
    expect((await done).outcome).to.equal('skipped')
    expect((await storeStats(db)).events).to.equal(10)
  })

  it('picks the days to settle: SUCCESS, collected long enough ago, not settled, not from an archive, in the window and the store', async () => {
    const insert = (day: string, status: string, hoursAgo: number, extra: {settled?: boolean; source?: string} = {}) =>
      sql`INSERT INTO audit_events_log (process_date, status, events_count, finished_at, settled_at, source)
          VALUES (${day}, ${status}, 1, now() - make_interval(hours => ${hoursAgo}), ${extra.settled ? sql`now()` : null}, ${extra.source ?? null})`.execute(db)
    await insert('2025-09-20', 'SUCCESS', 30)
    await insert('2025-09-21', 'SUCCESS', 30, {settled: true})
    await insert('2025-09-22', 'SUCCESS', 30, {source: 'archive'})
    await insert('2025-09-23', 'FAILED', 30)
    await insert('2025-09-24', 'SUCCESS', 10)
    await insert('2025-09-25', 'SUCCESS', 25)
    await insert('2025-09-10', 'SUCCESS', 300)
    expect(await daysToSettle(db, {from: '2025-09-15', to: '2025-09-30', settleHours: 24})).to.deep.equal(['2025-09-20', '2025-09-25'])
    expect(await daysToSettle(db, {from: '2025-09-15', to: '2025-09-30', settleHours: 0})).to.deep.equal(['2025-09-20', '2025-09-24', '2025-09-25'])
    expect(await daysToSettle(db, {from: '2025-09-01', to: '2025-09-30', settleHours: 24, storeFrom: '2025-09-21'})).to.deep.equal(['2025-09-25'])
  })
})
