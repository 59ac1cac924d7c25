/**
 * A month held against Heroku's archive of it (archives verify / import), on both engines,
 * against the fake API's archives: matched, recovered, only in the store, imported, and a corrupt
 * or failed download that changes nothing.
 */
import {expect} from 'chai'
import type {Kysely} from 'kysely'

import {type ArchiveMonthOptions, checkArchiveMonth, coveredTo, monthBounds} from '../../src/lib/completeness/archive-month.js'
import {monthsToVerify, runArchiveMonths} from '../../src/lib/completeness/archive-months.js'
import {findDay} from '../../src/lib/db/audit-log-repository.js'
import {eventStoreFor} from '../../src/lib/db/event-store.js'
import {findEvent, storeStats} from '../../src/lib/db/event-queries.js'
import type {Database} from '../../src/lib/db/schema.js'
import {createArchiveClient} from '../../src/lib/heroku/archives.js'
import {createAuditClient} from '../../src/lib/heroku/client.js'
import {processDay} from '../../src/lib/processing/process-day.js'
import {eventsDigest} from '../../src/lib/processing/events-digest.js'
import {type AuditEvent, generateEvents, oddEvents} from '../fake-heroku/events.js'
import type {FakeHeroku} from '../fake-heroku/server.js'
import {CaptureStream, captureLogger} from '../support/capture.js'
import {describeOnEngines} from '../support/db.js'
import {useJobSuite} from '../support/job-suite.js'

const MONTH = '2025-09'
const DAYS = ['2025-09-01', '2025-09-02', '2025-09-03', '2025-09-04']

describeOnEngines('archives: a month checked against its archive', (engine) => {
  let fake: FakeHeroku
  let db: Kysely<Database>
  const byDay = new Map<string, AuditEvent[]>()

  useJobSuite((suite) => ({fake, db} = suite), {fake: {maxPageSize: 1000}, open: engine.open, rateLimitRemaining: 4500})

  beforeEach(() => {
    byDay.clear()
    for (const [k, day] of DAYS.entries()) {
      const events = generateEvents(day, 30 + k * 10, {seed: k + 1})
      byDay.set(day, events)
      fake.setEvents(day, events)
    }

    fake.setArchive(MONTH)
  })

  async function collect(...days: string[]): Promise<void> {
    const client = createAuditClient({apiUrl: fake.url, token: fake.token, accountId: 'acme', baseDelayMs: 5, maxDelayMs: 20})
    for (const day of days) {
      const result = await processDay(
        {db, client, output: new CaptureStream(), logger: captureLogger(), store: eventStoreFor(db)},
        {day, format: 'json', force: false, staleAfterMinutes: 15, heartbeatIntervalMs: 50},
      )
      expect(result.outcome).to.equal('success')
    }
  }

  function archives() {
    return createArchiveClient({apiUrl: fake.url, token: fake.token, accountId: 'acme', baseDelayMs: 5, maxDelayMs: 20})
  }

  function check(options: Partial<ArchiveMonthOptions> = {}) {
    const output = new CaptureStream()
    const logger = captureLogger()
    const done = checkArchiveMonth({db, store: eventStoreFor(db), archives: archives(), output, logger}, {month: MONTH, fill: false, format: 'json', ...options})
    return {output, logger, done}
  }

  it('finds a collected month consistent, records it, and writes nothing', async () => {
    await collect('2025-09-01', '2025-09-02')
    const {output, done} = check()
    const result = await done
    const collected = byDay.get('2025-09-01')!.length + byDay.get('2025-09-02')!.length
    expect(result).to.include({outcome: 'consistent', daysCompared: 2, matched: collected, recovered: 0, onlyInStore: 0, importedDays: 0})
    expect(result.notCollected).to.equal(byDay.get('2025-09-03')!.length + byDay.get('2025-09-04')!.length)
    expect(result.message).to.match(/archives import --month 2025-09/)
    expect(output.text).to.equal('')
    const row = await db.selectFrom('audit_archives').selectAll().where('month', '=', MONTH).executeTakeFirstOrThrow()
    expect(row).to.include({status: 'consistent', matched: collected, covered_to: '2025-09-30', days_compared: 2})
    expect(row.checksum).to.match(/^[0-9a-f]{64}$/)
    // The download never carried the token.
    expect(fake.storageRequests).to.not.be.empty
    for (const request of fake.storageRequests) expect(JSON.stringify(request.headers)).to.not.include(fake.token)
  })

  for (const shape of ['array', 'entries'] as const) {
    it(`recovers an event only in the archive and names one only in the store (${shape})`, async () => {
      await collect('2025-09-01', '2025-09-02')
      const extra = {...oddEvents('2025-09-02')[0], id: 'archive-only-0001'}
      const dropped = byDay.get('2025-09-01')![3]
      fake.setArchive(MONTH, {shape, omitIds: [dropped.id], addEvents: [extra]})
      const before = await findDay(db, '2025-09-02')
      const {output, done} = check()
      const result = await done
      expect(result).to.include({outcome: 'mismatch', recovered: 1, onlyInStore: 1})
      expect(result.onlyInStoreSample).to.deep.equal([{day: '2025-09-01', id: dropped.id}])
      expect(result.message).to.include(dropped.id)
      expect(output.lines().map((line) => (JSON.parse(line) as AuditEvent).id)).to.deep.equal([extra.id])
      expect((await findEvent(db, extra.id))?.event_json, 'stored exactly as the archive has it').to.equal(JSON.stringify(extra))
      expect((await findEvent(db, dropped.id))?.id, 'never deleted').to.equal(dropped.id)
      const after = await findDay(db, '2025-09-02')
      expect(after).to.include({recovered_events: 1, events_count: (before?.events_count ?? 0) + 1, events_digest: before?.events_digest})
      expect((await db.selectFrom('audit_archives').select('status').where('month', '=', MONTH).executeTakeFirst())?.status).to.equal('mismatch')
    })
  }

  it('changes nothing when the checksum does not match, and records that', async () => {
    await collect('2025-09-01')
    fake.setArchive(MONTH, {corruptChecksum: true, addEvents: [{...generateEvents('2025-09-01', 1, {seed: 50})[0], id: 'never-stored'}]})
    const before = await storeStats(db)
    const {output, done} = check({fill: true})
    const result = await done
    expect(result.outcome).to.equal('checksum-failed')
    expect(result.message).to.match(/checksum.*nothing was changed/)
    expect(output.text).to.equal('')
    expect((await storeStats(db)).events).to.equal(before.events)
    expect(await findEvent(db, 'never-stored')).to.equal(undefined)
    expect(await findDay(db, '2025-09-03'), 'nothing imported').to.equal(undefined)
    expect((await db.selectFrom('audit_archives').select('status').where('month', '=', MONTH).executeTakeFirst())?.status).to.equal('checksum-failed')
  })

  it('changes nothing when the download fails', async () => {
    await collect('2025-09-01')
    fake.script([{kind: 'status', status: 500}], {route: 'storage'})
    const result = await check({fill: true}).done
    expect(result.outcome).to.equal('failed')
    expect(result.message).to.match(/nothing was changed/)
    expect(result.message).to.not.include('X-Amz-Signature')
    expect(await findDay(db, '2025-09-03')).to.equal(undefined)
    expect(await db.selectFrom('audit_archives').selectAll().execute()).to.deep.equal([])
  })

  it('changes nothing when the archive holds an event it cannot keep, and says which', async () => {
    await collect('2025-09-01')
    const {id: _, ...withoutId} = generateEvents('2025-09-02', 1, {seed: 60})[0]
    fake.setArchive(MONTH, {addEvents: [withoutId as AuditEvent, {...generateEvents('2025-09-01', 1, {seed: 61})[0], id: 'would-be-recovered'}]})
    const result = await check({fill: true}).done
    expect(result.outcome).to.equal('failed')
    expect(result.message).to.match(/no usable id.*nothing was changed/)
    expect(await findEvent(db, 'would-be-recovered')).to.equal(undefined)
    expect(await findDay(db, '2025-09-03')).to.equal(undefined)
  })

  it('writes a hostile archive-only event on stdout with its control characters escaped', async () => {
    await collect('2025-09-01')
    const hostile = {...generateEvents('2025-09-01', 1, {seed: 62})[0], id: 'hostile-0001', app: {id: 'x', name: '\u001b]0;pwned\u0007<script>\r\nFORGED'}}
    fake.setArchive(MONTH, {addEvents: [hostile]})
    const {output, done} = check({format: 'text'})
    expect((await done).recovered).to.equal(1)
    expect(output.lines()).to.have.length(1)
    // eslint-disable-next-line no-control-regex
    expect(output.text).to.not.match(/[\u0000-\u0009\u000B-\u001F\u007F]/)
    expect((await findEvent(db, 'hostile-0001'))?.event_json, 'stored as the archive has it').to.equal(JSON.stringify(hostile))
  })

  it('imports the days without a record from the archive alone, without one events-API call', async () => {
    await collect('2025-09-02')
    fake.reset()
    const result = await check({fill: true}).done
    // Every covered day without a record: those without events in the archive had none.
    expect(result).to.include({outcome: 'consistent', importedDays: 29, daysCompared: 1, notCollected: 0})
    expect(result.importedEvents).to.equal(['2025-09-01', '2025-09-03', '2025-09-04'].reduce((sum, day) => sum + byDay.get(day)!.length, 0))
    expect(await findDay(db, '2025-09-30')).to.include({status: 'SUCCESS', source: 'archive', events_count: 0, events_digest: eventsDigest([])})
    expect(fake.requests.filter((request) => request.path.endsWith('/events')), 'no events-API request').to.deep.equal([])
    for (const day of ['2025-09-01', '2025-09-03', '2025-09-04']) {
      const row = await findDay(db, day)
      const ids = byDay.get(day)!.map((event) => event.id)
      expect(row, day).to.include({status: 'SUCCESS', source: 'archive', events_count: ids.length, events_digest: eventsDigest(ids)})
    }

    expect((await findDay(db, '2025-09-02'))?.source, 'a collected day is left alone').to.equal(null)
    expect((await storeStats(db)).events).to.equal([...byDay.values()].reduce((sum, events) => sum + events.length, 0))
    // Imported again: nothing left to import.
    expect(await check({fill: true}).done).to.include({outcome: 'consistent', importedDays: 0, daysCompared: 30})
  })

  it('neither compares nor imports days before the store keeps', async () => {
    await collect('2025-09-01', '2025-09-02')
    fake.setArchive(MONTH, {omitIds: [byDay.get('2025-09-01')![0].id]})
    const result = await check({fill: true, storeFrom: '2025-09-02'}).done
    expect(result).to.include({outcome: 'consistent', daysCompared: 1, importedDays: 28})
    expect(await findDay(db, '2025-09-01')).to.include({source: null})
  })

  it('says so when Heroku has no archive for the month', async () => {
    fake.removeArchive(MONTH)
    const result = await check().done
    expect(result.outcome).to.equal('no-archive')
    expect(await db.selectFrom('audit_archives').selectAll().execute()).to.deep.equal([])
  })

  it('picks the months due: holding a stored day, not checked against the current checksum', async () => {
    await collect('2025-09-01')
    const listed = await archives().listArchives()
    expect((await monthsToVerify(db, listed)).map((info) => info.month)).to.deep.equal([MONTH])
    const run = await runArchiveMonths({db, store: eventStoreFor(db), archives: archives(), output: new CaptureStream(), logger: captureLogger()}, [{month: MONTH}], {fill: false, format: 'json'})
    expect(run.exitCode).to.equal(0)
    expect(await monthsToVerify(db, listed), 'checked against this checksum').to.deep.equal([])
    fake.setArchive(MONTH, {addEvents: [{...generateEvents('2025-09-04', 1, {seed: 77})[0], id: 'new-in-file'}]})
    expect((await monthsToVerify(db, await archives().listArchives())).map((info) => info.month), 'the file changed').to.deep.equal([MONTH])
  })
})

describe('archives: coverage', () => {
  it('a past month is covered whole; the current month up to the day before its archive was made', () => {
    expect(monthBounds('2025-12')).to.deep.equal({first: '2025-12-01', next: '2026-01-01', last: '2025-12-31'})
    expect(coveredTo('2025-09', new Date('2025-10-01T00:02:19Z'))).to.equal('2025-09-30')
    expect(coveredTo('2025-09', new Date('2025-09-15T00:02:19Z'))).to.equal('2025-09-14')
    expect(coveredTo('2024-02', new Date('2024-03-01T00:00:00Z'))).to.equal('2024-02-29')
  })
})
