/**
 * A month held against Heroku's archive of it (archives verify / import), on both engines,
 * against the fake API's archives: matched, recovered, only in the store, imported, and a corrupt
 * or failed download that changes nothing.
 */
import {expect} from 'chai'
import {type Kysely, sql} from 'kysely'

import {type ArchiveMonthDeps, type ArchiveMonthOptions, checkArchiveMonth, coveredTo, monthBounds} from '../../src/lib/completeness/archive-month.js'
import {monthsToVerify, runArchiveMonths} from '../../src/lib/completeness/archive-months.js'
import {findDay} from '../../src/lib/db/audit-log-repository.js'
import {ensurePartitions, eventStoreFor} from '../../src/lib/db/event-store.js'
import {findEvent, storeStats} from '../../src/lib/db/event-queries.js'
import type {Database} from '../../src/lib/db/schema.js'
import {type ArchiveClient, createArchiveClient} from '../../src/lib/heroku/archives.js'
import {createAuditClient} from '../../src/lib/heroku/client.js'
import {processDay} from '../../src/lib/processing/process-day.js'
import {eventsDigest} from '../../src/lib/processing/events-digest.js'
import {type AuditEvent, generateEvents, oddEvents} from '../fake-heroku/events.js'
import type {FakeHeroku} from '../fake-heroku/server.js'
import {CaptureStream, captureLogger} from '../support/capture.js'
import {describeOnEngines, snapshot} from '../support/db.js'
import {seedEvents} from '../support/event-seed.js'
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

  function check(options: Partial<ArchiveMonthOptions> = {}, deps: Partial<ArchiveMonthDeps> = {}) {
    const output = new CaptureStream()
    const logger = captureLogger()
    const done = checkArchiveMonth({db, store: eventStoreFor(db), archives: archives(), output, logger, ...deps}, {month: MONTH, fill: false, format: 'json', ...options})
    return {output, logger, done}
  }

  /** How many rows the store holds for this id (on any day). */
  async function storedCopies(id: string): Promise<number> {
    const {rows} = await sql<{n: number}>`SELECT count(*)::int AS n FROM audit_events WHERE id = ${id}`.execute(db)
    return rows[0].n
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

  it('says on stderr how far a long month got', async () => {
    await collect('2025-09-01')
    const {logger, done} = check({}, {progressEveryMs: 0})
    const result = await done
    expect(result.outcome).to.equal('consistent')
    expect(logger.text()).to.match(/2025-09: \d[\d,]* archive event\(s\) read so far/)
    expect(logger.text()).to.match(new RegExp(`2025-09: all ${result.archiveEvents.toLocaleString('en')} archive event\\(s\\) read; comparing`))
    // A quick month says nothing of the kind.
    const quick = check()
    await quick.done
    expect(quick.logger.text()).to.not.match(/read so far/)
  })

  it('says so when Heroku has no archive for the month', async () => {
    fake.removeArchive(MONTH)
    const result = await check().done
    expect(result.outcome).to.equal('no-archive')
    expect(await db.selectFrom('audit_archives').selectAll().execute()).to.deep.equal([])
  })

  it('fails, rather than finding nothing to check, when the account is wrong (Heroku answers 404 to both)', async () => {
    const wrong = createArchiveClient({apiUrl: fake.url, token: fake.token, accountId: 'not-our-account', baseDelayMs: 5, maxDelayMs: 20})
    const result = await check({}, {archives: wrong}).done
    expect(result.outcome).to.equal('failed')
    expect(result.message).to.match(/could not be listed/)
    expect(result.message).to.match(/enterprise account/)
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

  describe('a month the store has no partition for', () => {
    // Months no other test here collects: each test drops its month's partition first, so the
    // store has never held it, and forgets its archive after.
    const used = new Set<string>()

    afterEach(() => {
      for (const month of used) fake.removeArchive(month)
      used.clear()
    })

    /** The month's table name, after making sure the store has no such table. */
    async function withoutPartition(month: string): Promise<string> {
      used.add(month)
      const table = `audit_events_y${month.replace('-', 'm')}`
      await sql`DROP TABLE IF EXISTS ${sql.table(table)}`.execute(db)
      expect(await tableExists(table), 'no partition yet').to.equal(false)
      return table
    }

    async function tableExists(table: string): Promise<boolean> {
      const {rows} = await sql<{exists: boolean}>`SELECT to_regclass(${table}) IS NOT NULL AS exists`.execute(db)
      return rows[0].exists
    }

    /** The month's archive, from events only it holds (the events API serves none of them). */
    function archiveEventsOf(month: string, perDay: Record<string, number>, seed: number): Map<string, AuditEvent[]> {
      const events = new Map<string, AuditEvent[]>()
      for (const [day, count] of Object.entries(perDay)) {
        expect(day.startsWith(`${month}-`), day).to.equal(true)
        events.set(day, generateEvents(day, count, {seed}))
      }

      return events
    }

    async function monthLog(month: string) {
      const {first, next} = monthBounds(month)
      return db.selectFrom('audit_events_log').selectAll().where('process_date', '>=', first).where('process_date', '<', next).orderBy('process_date').execute()
    }

    /** The table's indexes, and how many of them are partitions of audit_events' own. */
    async function indexesOf(table: string): Promise<{all: number; attached: number}> {
      const {rows} = await sql<{all: number; attached: number}>`
        SELECT count(*)::int AS all,
          count(*) FILTER (WHERE EXISTS (
            SELECT 1 FROM pg_inherits h JOIN pg_index parent ON parent.indexrelid = h.inhparent
            WHERE h.inhrelid = x.indexrelid AND parent.indrelid = 'audit_events'::regclass))::int AS attached
        FROM pg_index x WHERE x.indrelid = to_regclass(${table})`.execute(db)
      return rows[0]
    }

    it('imports a month the store has no partition for into a new partition, indexed and searchable', async () => {
      const month = '2019-03'
      const table = await withoutPartition(month)
      const events = archiveEventsOf(month, {'2019-03-01': 25, '2019-03-14': 40, '2019-03-31': 15}, 81)
      const all = [...events.values()].flat()
      fake.setArchive(month, {addEvents: all})
      const {output, logger, done} = check({month, fill: true})
      const result = await done
      expect(result, result.message).to.include({outcome: 'consistent', importedDays: 31, importedEvents: all.length, archiveEvents: all.length, daysCompared: 0, recovered: 0})
      expect(output.text, 'imported days are not written on stdout').to.equal('')
      expect(logger.text()).to.not.match(/listed twice/)

      // A partition of audit_events, for the month's bounds.
      const {rows: partitions} = await sql<{partition: boolean; parent: string; bounds: string}>`
        SELECT c.relispartition AS partition, p.relname AS parent, pg_get_expr(c.relpartbound, c.oid) AS bounds
        FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid JOIN pg_class p ON p.oid = i.inhparent
        WHERE c.oid = to_regclass(${table})`.execute(db)
      expect(partitions).to.have.length(1)
      expect(partitions[0]).to.include({partition: true, parent: 'audit_events'})
      expect(partitions[0].bounds).to.equal("FOR VALUES FROM ('2019-03-01') TO ('2019-04-01')")

      // Every index of audit_events built on it, as on a partition made the usual way.
      const {rows: parent} = await sql<{n: number}>`SELECT count(*)::int AS n FROM pg_index WHERE indrelid = 'audit_events'::regclass`.execute(db)
      expect(parent[0].n, "audit_events' indexes").to.be.at.least(6)
      expect(await indexesOf(table)).to.deep.equal({all: parent[0].n, attached: parent[0].n})
      await ensurePartitions(db, ['2025-09-01'])
      expect((await indexesOf('audit_events_y2025m09')).all, 'as many as a partition made by ensurePartitions').to.equal(parent[0].n)

      // Searchable, as the archive has them.
      for (const event of [all[0], all[30], all.at(-1)!]) {
        const stored = await findEvent(db, event.id)
        expect(stored?.event_json, event.id).to.equal(JSON.stringify(event))
        expect(stored?.day, event.id).to.equal(event.created_at.slice(0, 10))
      }

      expect((await storeStats(db)).events).to.equal(all.length)
      const log = await monthLog(month)
      expect(log.map((row) => row.process_date)).to.have.length(31)
      for (const row of log) {
        const ids = (events.get(row.process_date) ?? []).map((event) => event.id)
        expect(row, row.process_date).to.include({status: 'SUCCESS', source: 'archive', events_count: ids.length, events_digest: eventsDigest(ids)})
      }

      // Checked again: the partition exists now, and every day is recorded.
      expect(await check({month, fill: true}).done).to.include({outcome: 'consistent', importedDays: 0, daysCompared: 31, matched: all.length, recovered: 0})
    })

    it('stores an event the archive lists on two different days once, on a new partition', async () => {
      const month = '2019-06'
      await withoutPartition(month)
      const events = archiveEventsOf(month, {'2019-06-03': 6, '2019-06-04': 6}, 84)
      const all = [...events.values()].flat()
      const moved = events.get('2019-06-03')![2]
      // The same id again, a day later.
      fake.setArchive(month, {addEvents: [...all, {...moved, created_at: '2019-06-04T08:00:00Z'}]})
      const result = await check({month, fill: true}).done
      expect(result, result.message).to.include({outcome: 'consistent', archiveEvents: all.length + 1, importedEvents: all.length})
      expect(await storedCopies(moved.id)).to.equal(1)
      expect((await storeStats(db)).events).to.equal(all.length)
    })

    it('recovers into a new partition when every day of the month is recorded but none of its events stored', async () => {
      // Days collected while EVENT_STORE was off: recorded SUCCESS, no partition ever made.
      const month = '2019-09'
      const table = await withoutPartition(month)
      const {first, last} = monthBounds(month)
      await sql`
        INSERT INTO audit_events_log (process_date, status, events_count, created_at, updated_at, attempts)
        SELECT d, 'SUCCESS', 0, now(), now(), 1 FROM generate_series(${first}::date, ${last}::date, interval '1 day') AS d`.execute(db)
      const [added] = generateEvents('2019-09-10', 1, {seed: 85})
      fake.setArchive(month, {addEvents: [added]})
      const {output, done} = check({month, fill: true})
      const result = await done
      expect(result, result.message).to.include({outcome: 'consistent', importedDays: 0, daysCompared: 30, recovered: 1})
      expect(await tableExists(table)).to.equal(true)
      expect((await findEvent(db, added.id))?.day).to.equal('2019-09-10')
      expect(output.text).to.include(added.id)
    })

    it('stores an event the archive lists twice once, on a new partition', async () => {
      const month = '2019-05'
      const table = await withoutPartition(month)
      const events = archiveEventsOf(month, {'2019-05-10': 12, '2019-05-20': 8}, 82)
      const all = [...events.values()].flat()
      const twice = events.get('2019-05-10')![4]
      fake.setArchive(month, {addEvents: [...all, {...twice}]})
      const {logger, done} = check({month, fill: true})
      const result = await done
      expect(result, result.message).to.include({outcome: 'consistent', archiveEvents: all.length + 1, importedDays: 31, importedEvents: all.length})
      expect(logger.text()).to.match(/1 event\(s\) listed twice in the archive, stored once/)
      expect(await tableExists(table)).to.equal(true)
      expect(await storedCopies(twice.id)).to.equal(1)
      expect((await storeStats(db)).events).to.equal(all.length)
      const ids = events.get('2019-05-10')!.map((event) => event.id)
      expect(await findDay(db, '2019-05-10')).to.include({events_count: ids.length, events_digest: eventsDigest(ids)})
      const other = events.get('2019-05-20')!.map((event) => event.id)
      expect(await findDay(db, '2019-05-20')).to.include({events_count: other.length, events_digest: eventsDigest(other)})
      // The primary key was built once the repeat was gone.
      const {rows} = await sql<{n: number}>`SELECT count(*)::int AS n FROM pg_index WHERE indrelid = to_regclass(${table}) AND indisprimary AND indisvalid`.execute(db)
      expect(rows[0].n).to.equal(1)
    })

    it("changes nothing, and leaves no table behind, when a new month's download fails its checksum", async () => {
      const month = '2019-07'
      const table = await withoutPartition(month)
      const all = [...archiveEventsOf(month, {'2019-07-04': 20}, 83).values()].flat()
      fake.setArchive(month, {addEvents: all, corruptChecksum: true})
      const {output, done} = check({month, fill: true})
      const result = await done
      expect(result.outcome, result.message).to.equal('checksum-failed')
      expect(result.message).to.match(/nothing was changed/)
      expect(output.text).to.equal('')
      expect(await tableExists(table), 'no month table left behind').to.equal(false)
      expect(await monthLog(month), 'no day recorded').to.deep.equal([])
      expect(await findEvent(db, all[0].id)).to.equal(undefined)
      expect((await storeStats(db)).events).to.equal(0)
      expect((await db.selectFrom('audit_archives').select('status').where('month', '=', month).executeTakeFirst())?.status).to.equal('checksum-failed')
    })
  })

  it('fails the month, changing nothing, when a fingerprint collides', async () => {
    await collect('2025-09-01', '2025-09-02')
    const extra = {...generateEvents('2025-09-02', 1, {seed: 84})[0], id: 'collides-0001'}
    fake.setArchive(MONTH, {addEvents: [extra]})
    const log = await snapshot(db)
    const events = (await storeStats(db)).events
    // Every id fingerprints alike: the archive-only event passes for one the store holds.
    const {output, done} = check({fill: true}, {fingerprint: () => [7, 7]})
    const result = await done
    expect(result.outcome, result.message).to.equal('failed')
    expect(result.message).to.match(/1 archive event\(s\) were taken for stored ones.*fingerprint collided/)
    expect(result.message).to.match(/nothing was changed/)
    expect(output.text).to.equal('')
    expect(await findEvent(db, extra.id), 'not recovered').to.equal(undefined)
    expect((await storeStats(db)).events, 'nothing imported').to.equal(events)
    expect(await snapshot(db), 'no day recorded or changed').to.deep.equal(log)
    expect(await db.selectFrom('audit_archives').selectAll().execute(), 'the month not recorded').to.deep.equal([])

    // Checked again with the real fingerprints: the event is recovered.
    const again = await check().done
    expect(again, again.message).to.include({outcome: 'consistent', recovered: 1})
    expect((await findEvent(db, extra.id))?.event_json).to.equal(JSON.stringify(extra))
  })

  /** The archive client, running `meanwhile` once the download is asked for (after the store's ids were read). */
  function archivesThatWait(meanwhile: () => Promise<void>): ArchiveClient {
    const client = archives()
    return {
      ...client,
      async openDownload(...args: Parameters<ArchiveClient['openDownload']>) {
        await meanwhile()
        return client.openDownload(...args)
      },
    }
  }

  // Another run storing meanwhile needs a second session: the embedded engine is one, in one process.
  const onServer = engine.name === 'postgres' ? it : () => {}

  onServer('does not recover the events of a day another run finished while the archive was read', async () => {
    await collect('2025-09-01')
    const day = '2025-09-02'
    const events = byDay.get(day)!
    // Another run holds the day (PROCESSING) as the check begins, and finishes it under the same claim meanwhile.
    await sql`
      INSERT INTO audit_events_log (process_date, status, created_at, updated_at, attempts, claim_token, heartbeat_at, started_at)
      VALUES (${day}, 'PROCESSING', now(), now(), 1, gen_random_uuid(), now(), now())`.execute(db)
    const finishing = archivesThatWait(async () => {
      await seedEvents(db, day, JSON.stringify(events))
      await sql`UPDATE audit_events_log SET status = 'SUCCESS', events_count = ${events.length}, finished_at = now() WHERE process_date = ${day}`.execute(db)
    })
    const {output, done} = check({}, {archives: finishing})
    const result = await done
    expect(result, result.message).to.include({outcome: 'consistent', daysCompared: 1, recovered: 0, onlyInStore: 0})
    expect(output.text, 'nothing written twice').to.equal('')
    expect(await findDay(db, day)).to.include({events_count: events.length, recovered_events: null})
  })

  onServer('does not recover an event stored while the archive was read (a settle re-read), nor write it again', async () => {
    await collect('2025-09-01')
    const [late] = generateEvents('2025-09-01', 1, {seed: 91})
    fake.setArchive(MONTH, {addEvents: [late]})
    const settling = archivesThatWait(() => seedEvents(db, '2025-09-01', JSON.stringify([late])))
    const {output, done} = check({}, {archives: settling})
    const result = await done
    expect(result, result.message).to.include({outcome: 'consistent', daysCompared: 1, recovered: 0, onlyInStore: 0, matched: byDay.get('2025-09-01')!.length + 1})
    expect(output.text).to.equal('')
    expect(await storedCopies(late.id)).to.equal(1)
    expect((await findDay(db, '2025-09-01'))?.recovered_events ?? 0).to.equal(0)
  })

  it('recovers an event the archive lists twice once', async () => {
    await collect('2025-09-01', '2025-09-02')
    const extra = {...generateEvents('2025-09-02', 1, {seed: 85})[0], id: 'listed-twice-0001'}
    fake.setArchive(MONTH, {addEvents: [extra, {...extra}]})
    const before = await findDay(db, '2025-09-02')
    const {output, done} = check()
    const result = await done
    const collected = byDay.get('2025-09-01')!.length + byDay.get('2025-09-02')!.length
    const archived = [...byDay.values()].reduce((sum, events) => sum + events.length, 0)
    expect(result, result.message).to.include({outcome: 'consistent', archiveEvents: archived + 2, matched: collected, recovered: 1, onlyInStore: 0})
    expect(output.lines().map((line) => (JSON.parse(line) as AuditEvent).id), 'written once').to.deep.equal([extra.id])
    expect(await storedCopies(extra.id), 'stored once').to.equal(1)
    expect(await findDay(db, '2025-09-02')).to.include({recovered_events: 1, events_count: (before?.events_count ?? 0) + 1})
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
