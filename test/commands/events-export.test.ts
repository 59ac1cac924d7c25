/**
 * What `events` writes, in-process on both engines: every filter, the three formats, --limit at
 * its edge, back-pressure and a reader that leaves; and the pure parts (CSV cells, the flags'
 * window, show, prune's and db status's lines).
 */
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {Writable} from 'node:stream'

import {expect} from 'chai'
import {type Kysely, sql} from 'kysely'

import {foldJsonText} from '../../src/lib/events/event-json.js'
import {createDb} from '../../src/lib/db/connection.js'
import {openEmbeddedDb} from '../../src/lib/db/embedded.js'
import type {EventFilter} from '../../src/lib/db/event-queries.js'
import {migrateToLatest, migrationState, pendingMigrations} from '../../src/lib/db/migrate.js'
import type {Database} from '../../src/lib/db/schema.js'
import {UsageError} from '../../src/lib/errors.js'
import {
  CSV_HEADER,
  type ExportOptions,
  csvCell,
  describeFilter,
  eventFlagsFilter,
  exportEvents,
  showText,
} from '../../src/lib/events/export.js'
import {FilterError, checkEventId} from '../../src/lib/events/filter.js'
import {describePrune, formatBytes, renderStoreLines, storeReadiness} from '../../src/lib/events/store-access.js'
import {formatEvent} from '../../src/lib/output/format-event.js'
import {CaptureStream} from '../support/capture.js'
import {clearLog, createScratchDatabase, describeOnEngines} from '../support/db.js'
import {
  ALL,
  ALL_FIVE,
  D1,
  D2,
  D3,
  FILTER_CASES,
  FIXTURE,
  HOSTILE,
  HOSTILE_CSV,
  ODD_TEXT,
  PRETTY_STORED,
  idsWhere,
  keepAllFive,
  storeDay,
  storeMany,
} from '../support/event-fixture.js'
import {rejectionOf, usageErrorOf} from '../support/helpers.js'

async function exported(db: Kysely<Database>, filter: EventFilter, options: ExportOptions) {
  const output = new CaptureStream()
  const result = await exportEvents(db, filter, output, options)
  return {...result, text: output.text}
}

function ids(text: string): string[] {
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => (JSON.parse(line) as {id: string}).id)
}

/** A reader slower than the writer: each chunk is taken on a later turn of the event loop. */
class SlowReader extends Writable {
  bytes = 0
  /** The most bytes the stream ever held waiting for this reader. */
  mostWaiting = 0
  constructor() {
    super({highWaterMark: 16 * 1024})
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: () => void): void {
    this.mostWaiting = Math.max(this.mostWaiting, this.writableLength)
    this.bytes += chunk.length
    setImmediate(done)
  }
}

/** A reader that goes away after its first chunk, as `| head -1` does: EPIPE on the next write. */
class LeavingReader extends Writable {
  chunks = 0
  override _write(_chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error) => void): void {
    this.chunks++
    if (this.chunks === 1) done()
    else done(Object.assign(new Error('write EPIPE'), {code: 'EPIPE'}))
  }
}

describeOnEngines('exporting stored events', (engine) => {
  let db: Kysely<Database>

  before(async () => {
    db = await engine.open()
    await clearLog(db)
    for (const day of FIXTURE) await storeDay(db, day)
  })

  after(async () => {
    await clearLog(db)
    await db.destroy()
  })

  it('each filter alone, and all five together, match exactly', async () => {
    for (const {filter, keep} of FILTER_CASES) {
      const expected = idsWhere(D1, D3, keep)
      expect(expected, JSON.stringify(filter)).not.to.be.empty
      const {text} = await exported(db, {from: D1, to: D3, ...filter}, {format: 'json'})
      expect(ids(text), JSON.stringify(filter)).to.deep.equal(expected)
    }

    const {text} = await exported(db, {from: D1, to: D3, ...ALL_FIVE}, {format: 'json'})
    expect(ids(text)).to.deep.equal(idsWhere(D1, D3, (e) => keepAllFive(e)))
  })

  it('text is process’s line, json the stored text (folded when pretty-printed), csv a header and rows; oldest first', async () => {
    const window = {from: D1, to: D3}
    const text = await exported(db, window, {format: 'text'})
    expect(text.text).to.equal(ALL.filter(({day}) => day >= D1 && day <= D3).map(({event}) => formatEvent(event, 'text')).join(''))

    const json = await exported(db, window, {format: 'json'})
    const lines = json.text.split('\n').filter(Boolean)
    expect(lines).to.include(ODD_TEXT)
    expect(lines).to.include(foldJsonText(PRETTY_STORED))
    expect(json.events).to.equal(idsWhere(D1, D3).length)

    const csv = await exported(db, {from: D2, to: D2}, {format: 'csv'})
    expect(csv.text.startsWith(CSV_HEADER)).to.equal(true)
    expect(csv.text.endsWith(HOSTILE_CSV)).to.equal(true)
    expect(csv.text.split('\r\n')).to.have.length(1 + 13 + 1)
  })

  it('--limit: exactly the number that match is not "more"; one fewer is', async () => {
    const all = idsWhere(D1, D3).length
    expect(await exported(db, {from: D1, to: D3}, {format: 'json', limit: all})).to.include({events: all, more: false})
    const fewer = await exported(db, {from: D1, to: D3}, {format: 'json', limit: all - 1, batch: 4})
    expect(fewer).to.include({events: all - 1, more: true})
    expect(ids(fewer.text)).to.deep.equal(idsWhere(D1, D3).slice(0, all - 1))
  })

  it('nothing matching writes nothing at all, not even the CSV header', async () => {
    expect(await exported(db, {from: D2, to: D2, actor: 'nobody@example.com'}, {format: 'csv'})).to.deep.include({events: 0, more: false, outputClosed: false, text: ''})
  })

  it('json to a terminal: the same JSON, with the characters a terminal acts on escaped', async () => {
    const {text} = await exported(db, {from: D2, to: D2, app: HOSTILE.app!.name!}, {format: 'json', terminal: true})
    expect(text).to.include('\\u2028\\u202e\\u009b')
    expect(JSON.parse(text)).to.deep.equal(HOSTILE)
  })

  describe('with many events', () => {
    const days = ['2024-07-01', '2024-07-02']

    before(async () => {
      await storeMany(db, days, 3000)
    })

    it('waits for a slow reader: never more than about one chunk waiting', async () => {
      const reader = new SlowReader()
      const result = await exportEvents(db, {from: days[0], to: days[1]}, reader, {format: 'json', batch: 500})
      expect(result).to.include({events: 6000, outputClosed: false})
      expect(reader.bytes).to.be.above(6000 * 1000)
      expect(reader.mostWaiting).to.be.below(3 * 64 * 1024)
    })

    it('a reader that leaves: stops at once, reports it, and nothing is thrown or left unhandled', async () => {
      const reader = new LeavingReader()
      const result = await exportEvents(db, {from: days[0], to: days[1]}, reader, {format: 'text', batch: 500})
      expect(result.outputClosed).to.equal(true)
      expect(result.events).to.be.below(6000)
      expect(reader.chunks).to.equal(2)
    })
  })
})

describe('events: the pure parts', () => {
  it('csv cells: formula starts guarded, controls escaped, quotes and commas quoted', () => {
    expect(csvCell(null)).to.equal('')
    expect(csvCell('plain')).to.equal('plain')
    for (const start of ['=', '+', '-', '@', '\t', '\r']) expect(csvCell(`${start}1`).startsWith("'"), JSON.stringify(start)).to.equal(true)
    expect(csvCell('=SUM(A1,A2)')).to.equal('"\'=SUM(A1,A2)"')
    expect(csvCell('say "hi"')).to.equal('"say ""hi"""')
    expect(csvCell('a\nb\u001Bc')).to.equal('a\\x0Ab\\x1Bc')
  })

  it('the flags’ window: --date, --from/--to, or the last 7 days ending yesterday; bad values are usage errors', () => {
    const now = new Date('2025-10-06T12:00:00Z')
    expect(eventFlagsFilter({}, now)).to.deep.equal({from: '2025-09-29', to: '2025-10-05'})
    expect(eventFlagsFilter({date: '2025-09-28', actor: 'a@example.com'}, now)).to.deep.equal({from: '2025-09-28', to: '2025-09-28', actor: 'a@example.com'})
    expect(eventFlagsFilter({from: '2025-01-01', to: '2025-02-01'}, now)).to.deep.equal({from: '2025-01-01', to: '2025-02-01'})
    expect(usageErrorOf(() => eventFlagsFilter({date: '2025-02-29'}, now)).message).to.equal('date "2025-02-29" is not a calendar day written YYYY-MM-DD')
    expect(usageErrorOf(() => eventFlagsFilter({type: 'no way'}, now))).to.be.instanceOf(UsageError)
    expect(describeFilter({from: 'a', to: 'b', actor: 'x\u001By', ip: '1.2.3.4'})).to.equal('a..b, actor x\\x1By, ip 1.2.3.4')
  })

  it('event ids: exact, at most 256 characters, no control characters', () => {
    expect(checkEventId(' 6b0b ')).to.equal(' 6b0b ')
    for (const bad of ['', 'x'.repeat(257), 'a\u0000b', 'a\u009Bb']) expect(() => checkEventId(bad), JSON.stringify(bad)).to.throw(FilterError)
  })

  it('show: as stored, or indented; for a terminal, the same JSON with active characters escaped', () => {
    expect(showText(PRETTY_STORED)).to.equal(`${PRETTY_STORED}\n`)
    expect(showText(ODD_TEXT, {pretty: true})).to.equal(`${JSON.stringify(JSON.parse(ODD_TEXT), null, 2)}\n`)
    const hostile = JSON.stringify(HOSTILE)
    expect(showText(hostile)).to.equal(`${hostile}\n`)
    expect(showText(hostile, {terminal: true})).to.include('\\u2028\\u202e\\u009b')
    expect(JSON.parse(showText(hostile, {terminal: true}))).to.deep.equal(HOSTILE)
  })

  it('prune and db status say what they found in words', () => {
    expect(describePrune({firstKeptDay: '2024-10-06', retentionDays: 365, droppedMonths: [], busyMonths: [], deletedEvents: 0})).to.equal(
      'Nothing to prune: no stored event is of days before 2024-10-06 (EVENT_RETENTION_DAYS=365).',
    )
    expect(describePrune({firstKeptDay: '2024-10-06', retentionDays: 365, droppedMonths: [], busyMonths: ['2024-08'], deletedEvents: 7})).to.equal(
      "Pruned the events of days before 2024-10-06 (EVENT_RETENTION_DAYS=365): deleted 7 event(s) of the month that straddles the boundary " +
        "and left 2024-08 for the next prune (in use by a day being stored). The days' processing records stay.",
    )
    expect(formatBytes(900)).to.equal('900 bytes')
    expect(formatBytes(1536)).to.equal('1.5 kB')
    expect(formatBytes(3 * 1024 ** 3)).to.equal('3.0 GB')
    const report = {enabled: true, events: 2000, oldestDay: '2025-01-01', newestDay: '2025-02-01', bytes: 2_000_000, partitions: 2, retentionDays: 30}
    expect(renderStoreLines(report, true)).to.deep.equal([
      'Event store: on, keeping 30 days (EVENT_RETENTION_DAYS)',
      '  2000 events of 2025-01-01..2025-02-01 in 2 month partition(s): 1.9 MB on disk, 1000 bytes per event',
    ])
    expect(renderStoreLines({...report, events: 0, partitions: 0, bytes: 0}, false)).to.deep.equal([
      'Event store: on, keeping 30 days (EVENT_RETENTION_DAYS)',
      '  not created yet: its migration is pending',
    ])
  })
})

describeOnEngines('events: a database whose migrations are not all applied', (engine) => {
  /** A new, empty database (no tables) on the engine, and how to close it. */
  async function emptyDatabase(): Promise<{db: Kysely<Database>; close: () => Promise<void>}> {
    if (engine.name === 'postgres') {
      const db = createDb({url: await createScratchDatabase('readiness'), ssl: 'disable'})
      return {db, close: () => db.destroy()}
    }

    const dir = mkdtempSync(join(tmpdir(), 'audit-logger-readiness-'))
    const embedded = await openEmbeddedDb(dir)
    return {
      db: embedded.db,
      async close() {
        await embedded.close()
        rmSync(dir, {recursive: true, force: true})
      },
    }
  }

  it('the store’s own migration pending: nothing is stored; another one pending: a usage error naming it', async () => {
    const {db, close} = await emptyDatabase()
    try {
      expect(await storeReadiness(db)).to.equal('missing')
      // The folder's listing names the same migrations Kysely's migrator loads.
      const all = (await migrationState(db)).map((m) => m.name)
      expect(all).to.include('2025-10-05T00-00-00_create_audit_events')
      expect(await pendingMigrations(db)).to.deep.equal(all)
      await migrateToLatest(db)
      expect(await pendingMigrations(db)).to.deep.equal([])
      expect(await storeReadiness(db)).to.equal('ready')
      // As if the store were made by a newer version, and an older migration had not run.
      const earlier = '2025-10-04T00-00-00_notify_changes'
      await sql`DELETE FROM kysely_migration WHERE name = ${earlier}`.execute(db)
      const error = await rejectionOf(storeReadiness(db))
      expect(error).to.be.instanceOf(UsageError)
      expect(error.message).to.equal(`the database has 1 pending migration(s) (${earlier})`)
    } finally {
      await close()
    }
  })
})
