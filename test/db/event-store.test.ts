/** The event store's table, bulk loader, partitions, searches and retention, on both engines. */
import {expect} from 'chai'
import {type Kysely, sql} from 'kysely'

import {MAX_NAMED_TYPES, findEvent, pruneEvents, searchEvents, storeStats, storedTypes, streamEvents} from '../../src/lib/db/event-queries.js'
import {
  type EventRecord,
  MAX_COLUMN_CHARS,
  UnstorableEvent,
  ensurePartitions,
  eventIdentity,
  eventRecord,
  eventStoreFor,
  eventTexts,
  partitionOf,
} from '../../src/lib/db/event-store.js'
import type {Database} from '../../src/lib/db/schema.js'
import {FilterError, checkEventFilter} from '../../src/lib/events/filter.js'
import type {AuditEvent} from '../../src/lib/heroku/types.js'
import {clearLog, describeOnEngines} from '../support/db.js'
import {sampleEvent, seedEvents} from '../support/event-seed.js'

const event = sampleEvent

/** A page as the API sends it: its bytes, and the events parsed from them. */
function page(events: AuditEvent[], text = JSON.stringify(events)): {events: AuditEvent[]; body: Buffer} {
  return {events: JSON.parse(text) as AuditEvent[], body: Buffer.from(text)}
}

function records(day: string, events: AuditEvent[], body?: Uint8Array): EventRecord[] {
  const texts = eventTexts(events, body)
  return events.map((e, k) => eventRecord(day, e, texts[k], k + 1))
}

/** Stores a day's events, from the page's bytes when given (as the day job does). */
function store(db: Kysely<Database>, day: string, events: AuditEvent[], body?: Uint8Array): Promise<void> {
  return seedEvents(db, day, body ? Buffer.from(body).toString('utf8') : events)
}

describeOnEngines('the event store', (engine) => {
  let db: Kysely<Database>

  before(async () => {
    db = await engine.open()
  })

  after(() => db.destroy())

  beforeEach(() => clearLog(db))

  it('keeps each event’s JSON text byte for byte: \\u0000 and lone-surrogate escapes, emoji, tabs, backslashes, 50 KB of data, a pretty-printed element', async () => {
    const day = '2025-09-28'
    const big = 'x'.repeat(50_000)
    const text = `[
      {"id":"e1","type":"app","action":"create","created_at":"2025-09-28T01:00:00Z","data":{"nul":"a\\u0000b","lone":"\\ud800","emoji":"🦆","tab":"a\\tb","slash":"c:\\\\d"}},
      {"id":"e2","type":"app","action":"update","created_at":"2025-09-28T02:00:00Z","data":{"big":"${big}"}},
      {
        "id": "e3",
        "type": "addon", "action": "attach",
        "created_at": "2025-09-28T03:00:00.123Z"
      }
    ]`
    const {events, body} = page([], text)
    await store(db, day, events, body)
    const elements = text.slice(text.indexOf('{')).split(/,\n\s*(?=\{)/).map((part) => part.trim().replace(/\s*\]$/, ''))
    for (const [k, id] of ['e1', 'e2', 'e3'].entries()) {
      const stored = await findEvent(db, id)
      expect(stored?.event_json, id).to.equal(elements[k])
    }

    expect((await findEvent(db, 'e3'))?.created_at.toISOString()).to.equal('2025-09-28T03:00:00.123Z')
  })

  it('stores nothing of a transaction that fails', async () => {
    const day = '2025-09-28'
    await ensurePartitions(db, [day])
    const failure = await eventStoreFor(db)
      .transaction(async (_trx, append) => {
        await append(records(day, [event(day, 1), event(day, 2)]))
        throw new Error('the day failed')
      })
      .then(
        () => undefined,
        (error: Error) => error,
      )
    expect(failure?.message).to.equal('the day failed')
    expect((await storeStats(db)).events).to.equal(0)
  })

  // On PostgreSQL a page's COPY runs while the day job goes on: its failure must still fail the
  // transaction, reported as itself by the next step or by the commit, and leave the store usable.
  it('reports a load that fails (a row no partition takes) as itself, at the next statement or at the commit, storing nothing', async () => {
    const day = '2025-09-28'
    await ensurePartitions(db, [day])
    const unpartitioned = '2031-01-01'
    const outcomes = []
    for (const next of ['a statement', 'the commit'] as const) {
      outcomes.push(
        await eventStoreFor(db)
          .transaction(async (trx, append) => {
            await append(records(day, [event(day, 1), event(day, 2)]))
            await append(records(unpartitioned, [event(unpartitioned, 1)]))
            if (next === 'a statement') await sql`SELECT 1`.execute(trx)
          })
          .then(
            () => undefined,
            (error: Error) => error,
          ),
      )
    }

    for (const failure of outcomes) expect(failure?.message).to.match(/no partition of relation "audit_events" found for row/)
    expect((await storeStats(db)).events).to.equal(0)
    await store(db, day, [event(day, 3)])
    expect((await storeStats(db)).events).to.equal(1)
  })

  it('refuses an event without an id or a real created_at, naming it', () => {
    const day = '2025-09-28'
    expect(() => eventRecord(day, {...event(day, 1), id: ''}, '{}', 3)).to.throw(UnstorableEvent, /event 3 of 2025-09-28 has no usable id/)
    expect(() => eventRecord(day, {...event(day, 1), created_at: 'yesterday'}, '{}', 4)).to.throw(UnstorableEvent, /event 4 of 2025-09-28 \(id 2025-09-28-0001\) has no created_at/)
    expect(() => eventRecord(day, {...event(day, 1), created_at: undefined as unknown as string}, '{}', 5)).to.throw(UnstorableEvent)
  })

  it('keeps a created_at already in UTC as it is, and normalises any other real time to one', () => {
    const identity = (created_at: string) => eventIdentity({...event('2025-09-28', 1), created_at}, () => 'event 1').createdAt
    expect(identity('2025-09-28T01:02:03Z')).to.equal('2025-09-28T01:02:03Z')
    expect(identity('2024-02-29T23:59:59.123Z')).to.equal('2024-02-29T23:59:59.123Z')
    // Not canonical: the long way, as before (V8 rolls an impossible date over; microseconds are cut to milliseconds).
    expect(identity('2025-02-29T00:00:00Z')).to.equal('2025-03-01T00:00:00.000Z')
    expect(identity('2025-09-28T01:02:03.123456Z')).to.equal('2025-09-28T01:02:03.123Z')
    expect(identity('2025-09-28T03:02:03+02:00')).to.equal('2025-09-28T01:02:03.000Z')
    expect(identity('0500-01-01T00:00:00Z')).to.equal('0500-01-01T00:00:00Z')
    expect(identity('0500-01-01T00:00:00+00:00')).to.equal('0500-01-01T00:00:00.000Z')
    expect(identity('2025-09-28T24:00:00Z')).to.equal('2025-09-29T00:00:00.000Z')
    expect(() => identity('2025-09-28T25:00:00Z')).to.throw(UnstorableEvent, /has no created_at that is a real time/)
  })

  it('bounds the search columns (NUL removed, cut) while the JSON keeps everything', async () => {
    const day = '2025-09-28'
    const long = `${'a'.repeat(5000)}@example.com`
    const hostile = event(day, 1, {actor: {email: long, id: 'x\u0000y'}, app: {name: '<script>alert(1)</script>'}})
    await store(db, day, [hostile])
    const stored = await findEvent(db, hostile.id)
    expect(stored?.actor_email).to.have.length(MAX_COLUMN_CHARS)
    expect(stored?.actor_id).to.equal('xy')
    expect(stored?.app_name).to.equal('<script>alert(1)</script>')
    expect(JSON.parse(stored!.event_json)).to.deep.equal(JSON.parse(JSON.stringify(hostile)))
  })

  it('creates month partitions as needed, once, even when asked concurrently', async () => {
    expect(partitionOf('2025-12-31')).to.deep.equal({name: 'audit_events_y2025m12', from: '2025-12-01', to: '2026-01-01'})
    // A year no other suite stores into: the embedded database is shared by the whole run.
    await Promise.all([ensurePartitions(db, ['1996-02-29', '1996-03-01']), ensurePartitions(db, ['1996-02-01']), ensurePartitions(db, ['1996-03-31'])])
    const names = await sql<{name: string}>`
      SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = 'audit_events'::regclass AND c.relname LIKE 'audit_events_y1996%' ORDER BY 1`.execute(db)
    expect(names.rows.map((r) => r.name)).to.deep.equal(['audit_events_y1996m02', 'audit_events_y1996m03'])
  })

  // The embedded engine is one session: nothing else can hold its table.
  const onServer = engine.name === 'postgres' ? it : () => {}
  onServer('waits only briefly for a table held by a day being stored: creating a month retries, dropping one is left for next time', async () => {
    await ensurePartitions(db, ['2023-01-15', '2023-03-15'])
    await store(db, '2023-01-15', [event('2023-01-15', 1)])
    let release!: () => void
    const released = new Promise<void>((resolve) => (release = resolve))
    // Another run's day, in its transaction, holding audit_events.
    const holding = eventStoreFor(db).transaction(async (_trx, append) => {
      await append(records('2023-03-15', [event('2023-03-15', 1)]))
      await released
    })
    await new Promise((resolve) => setTimeout(resolve, 100))
    const pruned = await pruneEvents(db, '2023-03-01')
    expect(pruned.busyPartitions).to.include('audit_events_y2023m01')
    expect(pruned.droppedPartitions).not.to.include('audit_events_y2023m01')
    const creating = ensurePartitions(db, ['2023-05-01'])
    await new Promise((resolve) => setTimeout(resolve, 2500))
    release()
    await holding
    await creating
    const again = await pruneEvents(db, '2023-03-01')
    expect(again.droppedPartitions).to.include('audit_events_y2023m01')
    const made = await sql<{name: string | null}>`SELECT to_regclass('audit_events_y2023m05')::text AS name`.execute(db)
    expect(made.rows[0].name).to.equal('audit_events_y2023m05')
  })

  // A COPY stays open across appends on a server: its failure may arrive while nothing is being
  // written, and must still be reported as itself (never a driver's TypeError, never an uncaught
  // error that would end the process), by whatever comes next.
  describe('a COPY left open between appends', () => {
    const day = '2025-09-28'
    const unpartitioned = '2031-01-01'
    const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

    async function outcome(work: (trx: Kysely<Database>, append: (r: EventRecord[]) => Promise<void>) => Promise<void>): Promise<Error | undefined> {
      return eventStoreFor(db)
        .transaction((trx, append) => work(trx, (r) => append(r)))
        .then(
          () => undefined,
          (error: Error) => error,
        )
    }

    beforeEach(() => ensurePartitions(db, [day]))

    for (const [next, wait] of [
      ['a statement', 300],
      ['an append to the same table', 300],
      ['a statement, after the COPY was ended for being idle', 900],
    ] as const) {
      onServer(`reports a failure that arrived meanwhile as itself, at ${next}`, async () => {
        const failure = await outcome(async (trx, append) => {
          await append(records(day, [event(day, 1)]))
          await append(records(unpartitioned, [event(unpartitioned, 1)]))
          // The server's error reaches the driver while nothing is written.
          await pause(wait)
          if (next === 'an append to the same table') await append(records(day, [event(day, 2)]))
          else await sql`SELECT 1`.execute(trx)
        })
        expect(failure?.message).to.match(/no partition of relation "audit_events" found for row/)
        expect((await storeStats(db)).events).to.equal(0)
        await store(db, day, [event(day, 3)])
        expect((await storeStats(db)).events).to.equal(1)
      })
    }

    onServer('reports a connection killed while its COPY is open as a lost connection, and the store stays usable', async () => {
      const failure = await outcome(async (trx, append) => {
        const {rows} = await sql<{pid: number}>`SELECT pg_backend_pid() AS pid`.execute(trx)
        await append(records(day, [event(day, 1)]))
        await sql`SELECT pg_terminate_backend(${rows[0].pid})`.execute(db)
        await pause(300)
        await sql`SELECT 1`.execute(trx)
      })
      expect(failure).to.be.instanceOf(Error)
      expect(failure?.message).to.not.match(/Cannot read properties/)
      expect(failure?.message).to.match(/terminat|connection|Connection/)
      await store(db, day, [event(day, 4)])
      expect((await storeStats(db)).events).to.equal(1)
    })

    onServer('keeps every row when appends pause longer than a COPY stays open idle', async () => {
      const failure = await outcome(async (_trx, append) => {
        await append(records(day, [event(day, 1), event(day, 2)]))
        await pause(900)
        await append(records(day, [event(day, 3)]))
        await append(records(day, [event(day, 4)]))
      })
      expect(failure).to.equal(undefined)
      expect((await storeStats(db)).events).to.equal(4)
    })
  })

  describe('searching', () => {
    const days = ['2025-09-01', '2025-09-02', '2025-10-01']

    beforeEach(async () => {
      for (const day of days) await store(db, day, Array.from({length: 20}, (_, n) => event(day, n)))
    })

    it('filters by date range, actor, type, action, app and ip, combined', async () => {
      const all = await searchEvents(db, {}, {limit: 100})
      expect(all.events).to.have.length(60)
      expect(all.next).to.equal(undefined)
      const september = await searchEvents(db, {from: '2025-09-01', to: '2025-09-30'}, {limit: 100})
      expect(september.events.every((e) => e.day.startsWith('2025-09'))).to.equal(true)
      expect(september.events).to.have.length(40)
      const combined = await searchEvents(db, {actor: 'user1@example.com', type: 'app', action: 'destroy', app: 'app-1', ip: '192.0.2.1', from: '2025-09-02'}, {limit: 100})
      const expected = [...days.slice(1)].flatMap((day) =>
        Array.from({length: 20}, (_, n) => event(day, n)).filter(
          (e) => e.actor?.email === 'user1@example.com' && e.type === 'app' && e.action === 'destroy' && e.app?.name === 'app-1' && e.request?.ip_address === '192.0.2.1',
        ),
      )
      expect(combined.events.map((e) => e.id).sort()).to.deep.equal(expected.map((e) => e.id).sort())
    })

    it('finds an action alone across every type, by the types the store holds, and nothing for an action it does not hold', async () => {
      const stored = days.flatMap((day) => Array.from({length: 20}, (_, n) => event(day, n)))
      const types = [...new Set(stored.map((e) => e.type))].sort()
      expect(types.length, 'the sample has several types').to.be.greaterThan(1)
      expect(await storedTypes(db)).to.deep.equal(types)
      for (const action of new Set(stored.map((e) => e.action))) {
        const found = await searchEvents(db, {action}, {limit: 100})
        const expected = stored.filter((e) => e.action === action).map((e) => e.id)
        expect(found.events.map((e) => e.id).sort(), action).to.deep.equal(expected.sort())
        // Newest first: (day, created_at, id) descending.
        const order = found.events.map((e) => `${e.day} ${e.created_at.toISOString()} ${e.id}`)
        expect(order).to.deep.equal([...order].sort().reverse())
      }

      expect((await searchEvents(db, {action: 'destory'}, {limit: 100})).events).to.deep.equal([])
      await sql`TRUNCATE audit_events`.execute(db)
      expect(await storedTypes(db)).to.deep.equal([])
      expect((await searchEvents(db, {action: 'create'}, {limit: 100})).events).to.deep.equal([])
    })

    it('names no types past MAX_NAMED_TYPES (they come from the API): an action alone is then found without them', async () => {
      expect(await storedTypes(db, 1), 'two types stored: past a cap of 1').to.equal(undefined)
      expect(await storedTypes(db, 2)).to.deep.equal(['addon', 'app'])
      const day = '2025-09-03'
      const many = Array.from({length: MAX_NAMED_TYPES + 1}, (_, n) => event(day, n + 1, {type: `type-${String(n).padStart(5, '0')}`}))
      await store(db, day, many)
      expect(await storedTypes(db)).to.equal(undefined)
      const found = await searchEvents(db, {action: 'destroy', from: day, to: day}, {limit: 2000})
      expect(found.events.map((e) => e.id).sort()).to.deep.equal(many.filter((e) => e.action === 'destroy').map((e) => e.id).sort())
      const streamed: string[] = []
      for await (const hit of streamEvents(db, {action: 'destroy', from: day, to: day}, {batch: 100})) streamed.push(hit.id)
      expect(streamed.sort()).to.deep.equal(found.events.map((e) => e.id).sort())
    })

    it('pages newest first by cursor, with no repeats and no gaps, while another day is stored meanwhile', async () => {
      const seen: string[] = []
      let cursor
      let pages = 0
      do {
        const result = await searchEvents(db, {}, {limit: 7, cursor})
        seen.push(...result.events.map((e) => e.id))
        cursor = result.next
        if (++pages === 2) await store(db, '2025-08-15', [event('2025-08-15', 1)])
      } while (cursor)
      const sorted = [...seen].sort().reverse()
      expect(seen, 'newest first').to.deep.equal(sorted)
      expect(new Set(seen).size, 'no repeats').to.equal(seen.length)
      for (const day of days) for (let n = 0; n < 20; n++) expect(seen, 'no gaps').to.include(event(day, n).id)
    })

    it('streams every match oldest first in bounded batches, up to a limit', async () => {
      const streamed: string[] = []
      for await (const hit of streamEvents(db, {type: 'addon'}, {order: 'oldest', batch: 4})) streamed.push(hit.id)
      const expected = days.flatMap((day) => Array.from({length: 20}, (_, n) => event(day, n)).filter((e) => e.type === 'addon'))
      expect(streamed).to.deep.equal(expected.map((e) => e.id))
      const limited: string[] = []
      for await (const hit of streamEvents(db, {}, {order: 'oldest', batch: 4, limit: 9})) limited.push(hit.id)
      expect(limited).to.have.length(9)
    })

    it('says what it holds, and prunes whole months, deleting only in the month that straddles the boundary', async () => {
      const stats = await storeStats(db)
      expect(stats).to.include({events: 60, oldestDay: '2025-09-01', newestDay: '2025-10-01'})
      expect(stats.bytes).to.be.greaterThan(0)
      const first = await pruneEvents(db, '2025-09-02')
      expect(first.busyPartitions).to.deep.equal([])
      expect(first.deletedEvents).to.equal(20)
      expect(first.droppedPartitions).not.to.include('audit_events_y2025m09')
      const second = await pruneEvents(db, '2025-10-01')
      expect(second.deletedEvents).to.equal(0)
      expect(second.droppedPartitions).to.include('audit_events_y2025m09').and.not.include('audit_events_y2025m10')
      expect(await storeStats(db)).to.include({events: 20, oldestDay: '2025-10-01'})
    })
  })
})

describe('checking a search’s values', () => {
  it('takes real days, words for type and action, and bounded values; empty ones are not given', () => {
    expect(checkEventFilter({from: '2025-09-01', to: '2025-09-30', actor: ' a@example.com ', type: 'addon', action: 'create', app: 'web', ip: '192.0.2.1'})).to.deep.equal({
      from: '2025-09-01',
      to: '2025-09-30',
      actor: 'a@example.com',
      type: 'addon',
      action: 'create',
      app: 'web',
      ip: '192.0.2.1',
    })
    expect(checkEventFilter({from: '', app: '  '})).to.deep.equal({})
  })

  it('refuses what cannot match, in one line naming the value', () => {
    expect(() => checkEventFilter({from: '2025-02-30'})).to.throw(FilterError, 'from "2025-02-30" is not a calendar day')
    expect(() => checkEventFilter({to: '0000-01-01'})).to.throw(FilterError, 'to "0000-01-01" is not a calendar day')
    expect(() => checkEventFilter({from: '2025-09-02', to: '2025-09-01'})).to.throw(FilterError, 'from 2025-09-02 is after to 2025-09-01')
    expect(() => checkEventFilter({type: 'app create'})).to.throw(FilterError, 'type "app create" is not an event type')
    expect(() => checkEventFilter({actor: 'a\u001B[2K@example.com'})).to.throw(FilterError, /actor "a\\x1B\[2K@example.com" cannot match any event/)
    expect(() => checkEventFilter({ip: '1'.repeat(300)})).to.throw(FilterError, /ip "1+…" cannot match/)
  })
})
