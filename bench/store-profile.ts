/**
 * Benchmark 1p (`store-profile`): where a big day's store time goes, measured in this process on
 * a scratch PostgreSQL database. The client's steps per page (parse, eventTexts, eventRecord,
 * copyWriter), then the day's COPY as the day job does it (one transaction, one append per page),
 * with the database server's own CPU time for it (its backend's /proc/<pid>/stat) and its WAL,
 * with every index, without each one in turn, and with none.
 */
import {type Kysely, sql} from 'kysely'

import {addDays, todayUtc} from '../src/lib/dates.js'
import {type EventRecord, copyWriter, ensurePartitions, eventRecord, eventStoreFor, eventTexts} from '../src/lib/db/event-store.js'
import {migrateToLatest} from '../src/lib/db/migrate.js'
import type {Database} from '../src/lib/db/schema.js'
import type {AuditEvent} from '../src/lib/heroku/types.js'
import {generateEvents} from '../test/fake-heroku/events.js'
import {createScratchDatabase, openTestDb} from '../test/support/db.js'
import {cpuSecondsOf} from './server-cpu.js'
import {median, spread, table} from './support.js'

const EVENTS = 100_000
const PAGE = 1000

/** A day's pages as the API sends them: the bytes, and the events parsed from them. */
function dayPages(day: string): Array<{body: Buffer; events: AuditEvent[]}> {
  const events = generateEvents(day, EVENTS) as AuditEvent[]
  const pages = []
  for (let k = 0; k < events.length; k += PAGE) {
    const body = Buffer.from(JSON.stringify(events.slice(k, k + PAGE)))
    pages.push({body, events: JSON.parse(body.toString('utf8')) as AuditEvent[]})
  }

  return pages
}

function pageRecords(day: string, page: {body: Buffer; events: AuditEvent[]}, before: number): EventRecord[] {
  const texts = eventTexts(page.events, page.body)
  return page.events.map((event, k) => eventRecord(day, event, texts[k], before + k + 1))
}

/** Milliseconds `work` takes over every page. */
function clientStep(pages: ReadonlyArray<{body: Buffer; events: AuditEvent[]}>, work: (page: {body: Buffer; events: AuditEvent[]}, before: number) => unknown): number {
  const started = performance.now()
  let before = 0
  for (const page of pages) {
    work(page, before)
    before += page.events.length
  }

  return performance.now() - started
}

interface LoadFigures {
  wall: number
  serverCpu: number
  clientCpu: number
  walBytes: number
}

/** Stores the day into an empty store as the day job does: one transaction, one append per page. */
async function loadDay(db: Kysely<Database>, day: string, pages: ReadonlyArray<{body: Buffer; events: AuditEvent[]}>): Promise<LoadFigures> {
  await sql`TRUNCATE audit_events`.execute(db)
  await ensurePartitions(db, [day])
  const wal = await sql<{lsn: string}>`SELECT pg_current_wal_lsn()::text AS lsn`.execute(db)
  let backend = 0
  let serverBefore = 0
  const clientBefore = process.cpuUsage()
  const started = performance.now()
  await eventStoreFor(db).transaction(async (trx, append) => {
    backend = (await sql<{pid: number}>`SELECT pg_backend_pid() AS pid`.execute(trx)).rows[0].pid
    serverBefore = cpuSecondsOf(backend)!
    let before = 0
    for (const page of pages) {
      await append(pageRecords(day, page, before))
      before += page.events.length
    }
  })
  const wall = (performance.now() - started) / 1000
  const serverCpu = cpuSecondsOf(backend)! - serverBefore
  const client = process.cpuUsage(clientBefore)
  const walBytes = await sql<{bytes: string}>`SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), ${wal.rows[0].lsn}::pg_lsn)::bigint AS bytes`.execute(db)
  return {wall, serverCpu, clientCpu: (client.user + client.system) / 1e6, walBytes: Number(walBytes.rows[0].bytes)}
}

const SECONDARY = ['audit_events_by_time', 'audit_events_by_actor', 'audit_events_by_app', 'audit_events_by_ip', 'audit_events_by_kind'] as const
const FILTER_INDEXES = [['audit_events_by_actor', 'actor_email'], ['audit_events_by_app', 'app_name'], ['audit_events_by_ip', 'ip_address'], ['audit_events_by_kind', 'type, action']] as const

export async function storeProfile(out: (line?: string) => void, runs: number): Promise<void> {
  out(`## 1p. Where the store's time goes: ${EVENTS.toLocaleString('en')} events in pages of ${PAGE}, in this process, on a scratch PostgreSQL database`)
  const day = addDays(todayUtc(), -3)
  const pages = dayPages(day)

  const steps: Record<string, number[]> = {'JSON.parse of the page (the client does it anyway)': [], 'eventTexts (cut each event from the page)': [], 'eventRecord (search columns)': [], 'copyWriter (COPY rows as UTF-8)': []}
  for (let i = 0; i < runs; i++) {
    steps['JSON.parse of the page (the client does it anyway)'].push(clientStep(pages, (page) => JSON.parse(page.body.toString('utf8'))))
    steps['eventTexts (cut each event from the page)'].push(clientStep(pages, (page) => eventTexts(page.events, page.body)))
    const texts = pages.map((page) => eventTexts(page.events, page.body))
    let p = 0
    steps['eventRecord (search columns)'].push(clientStep(pages, (page, before) => page.events.map((event, k) => eventRecord(day, event, texts[p][k], before + k + 1)) && p++))
    const records = pages.map((page, k) => pageRecords(day, page, k * PAGE))
    p = 0
    const rows = copyWriter()
    steps['copyWriter (COPY rows as UTF-8)'].push(clientStep(pages, () => rows(records[p++])))
  }

  out(table(Object.entries(steps).map(([step, ms]) => ({'client step, all pages': step, 'ms': spread(ms, 0), 'µs/event': ((median(ms) * 1000) / EVENTS).toFixed(1)}))))
  out()

  const url = await createScratchDatabase('bench')
  const db = openTestDb(url)
  await migrateToLatest(db)
  const variants: Array<{name: string; drop: () => Promise<void>; restore: () => Promise<void>}> = [
    {name: 'every index (as migrated)', drop: async () => {}, restore: async () => {}},
    ...SECONDARY.map((index) => ({
      name: `without ${index}`,
      drop: () => sql`DROP INDEX ${sql.ref(index)}`.execute(db).then(() => {}),
      restore: () => migrateIndexes(db),
    })),
    {
      // A proposal: the filter indexes end at created_at; a page's rare ties on (day, created_at) are sorted by id after.
      name: 'filter indexes without their trailing id',
      drop: async () => {
        for (const [index, columns] of FILTER_INDEXES) {
          await sql`DROP INDEX ${sql.ref(index)}`.execute(db)
          await sql`CREATE INDEX ${sql.ref(index)} ON audit_events (${sql.raw(columns)}, day, created_at)`.execute(db)
        }
      },
      restore: async () => {
        for (const [index] of FILTER_INDEXES) await sql`DROP INDEX ${sql.ref(index)}`.execute(db)
        await migrateIndexes(db)
      },
    },
    {
      name: 'primary key only',
      drop: async () => {
        for (const index of SECONDARY) await sql`DROP INDEX ${sql.ref(index)}`.execute(db)
      },
      restore: () => migrateIndexes(db),
    },
    {
      name: 'no index at all (not even the key)',
      drop: async () => {
        for (const index of SECONDARY) await sql`DROP INDEX ${sql.ref(index)}`.execute(db)
        await sql`ALTER TABLE audit_events DROP CONSTRAINT audit_events_pkey`.execute(db)
      },
      restore: async () => {
        await sql`TRUNCATE audit_events`.execute(db)
        await sql`ALTER TABLE audit_events ADD PRIMARY KEY (id, day)`.execute(db)
        await migrateIndexes(db)
      },
    },
  ]

  const rows = []
  let all: LoadFigures | undefined
  try {
    await loadDay(db, day, pages) // warm-up: the partition, the catalog, the JIT of this process
    for (const variant of variants) {
      await sql`TRUNCATE audit_events`.execute(db)
      await variant.drop()
      const figures: LoadFigures[] = []
      for (let i = 0; i < runs; i++) figures.push(await loadDay(db, day, pages))
      await sql`TRUNCATE audit_events`.execute(db)
      await variant.restore()
      const wall = median(figures.map((f) => f.wall))
      all ??= {wall, serverCpu: median(figures.map((f) => f.serverCpu)), clientCpu: 0, walBytes: 0}
      rows.push({
        'the day stored with': variant.name,
        'wall (s)': spread(figures.map((f) => f.wall)),
        'events/s': Math.round(EVENTS / wall),
        'server CPU (s)': spread(figures.map((f) => f.serverCpu)),
        'client CPU (s)': spread(figures.map((f) => f.clientCpu)),
        'WAL (bytes/event)': Math.round(median(figures.map((f) => f.walBytes)) / EVENTS),
        'saves (s)': variant === variants[0] ? '-' : (all.wall - wall).toFixed(2),
      })
    }
  } finally {
    await db.destroy()
  }

  out(table(rows))
  out(`     median (min–max) of ${runs} loads; wall is the whole transaction (records built, COPY, commit), server CPU its backend's, client CPU this process's`)
}

/** The migration's indexes again, after a variant dropped some (IF NOT EXISTS keeps the others). */
async function migrateIndexes(db: Kysely<Database>): Promise<void> {
  const {up} = await import('../src/migrations/2025-10-05T00-00-00_create_audit_events.js')
  await up(db)
}
