/**
 * The event store from the command line, as users run it: `events` (formats, filters, the default
 * window, --limit, a reader that leaves early, a stream of 50,000 in bounded memory), `events show`,
 * `db prune` and db status's store section — real processes (bin/run.js) on PostgreSQL and on the
 * embedded engine, each store seeded in-process and closed before the commands run.
 */
import {existsSync, mkdtempSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'

import {expect} from 'chai'
import type {Kysely} from 'kysely'

import {foldJsonText} from '../../src/lib/events/event-json.js'
import {dayDiff, todayUtc} from '../../src/lib/dates.js'
import {createDb} from '../../src/lib/db/connection.js'
import {openEmbeddedDb} from '../../src/lib/db/embedded.js'
import {storeStats} from '../../src/lib/db/event-queries.js'
import {migrateToLatest} from '../../src/lib/db/migrate.js'
import type {Database} from '../../src/lib/db/schema.js'
import {formatEvent} from '../../src/lib/output/format-event.js'
import {type CliResult, cliEnv, expectNoCrash, runAndCloseStdout, runCli} from '../support/cli.js'
import {createScratchDatabase, describeWithServer, insertRecord, snapshot} from '../support/db.js'
import {
  ALL,
  ALL_FIVE,
  D1,
  D2,
  D3,
  FIXTURE,
  HOSTILE,
  HOSTILE_CSV,
  ODD_TEXT,
  PRETTY,
  PRETTY_STORED,
  TODAY,
  WINDOW_FIRST,
  YESTERDAY,
  event,
  idsWhere,
  keepAllFive,
  storeDay,
  storeMany,
} from '../support/event-fixture.js'

const PEAK_RSS_HOOK = fileURLToPath(new URL('../support/peak-rss.mjs', import.meta.url))

/** The big store: days of BIG_PER_DAY events of about 1.3 KB, far from the fixture's days. */
const BIG_DAYS = ['2024-06-01', '2024-06-02', '2024-06-03', '2024-06-04', '2024-06-05']
const BIG_PER_DAY = 10_000
const BIG_TOTAL = BIG_DAYS.length * BIG_PER_DAY

// --- the engines --------------------------------------------------------------------------------

interface Target {
  /** The variables that point a run at this database. */
  vars: Record<string, string>
  /** Opens the database in this process (the embedded one must be closed before a run: it is locked). */
  open(): Promise<{db: Kysely<Database>; close(): Promise<void>}>
}

async function postgresTarget(label: string): Promise<Target> {
  const url = await createScratchDatabase(label)
  return {
    vars: {DATABASE_URL: url},
    async open() {
      const db = createDb({url, ssl: 'disable'})
      return {db, close: () => db.destroy()}
    },
  }
}

function embeddedTarget(dir: string): Target {
  return {
    vars: {AUDIT_LOGGER_DATA_DIR: dir},
    async open() {
      const embedded = await openEmbeddedDb(dir)
      return {db: embedded.db, close: () => embedded.close()}
    },
  }
}

async function withDb<T>(target: Target, work: (db: Kysely<Database>) => Promise<T>): Promise<T> {
  const {db, close} = await target.open()
  try {
    return await work(db)
  } finally {
    await close()
  }
}

const ENGINES = [
  {
    name: 'postgres',
    declare: (title: string, fn: (this: Mocha.Suite) => void) => describeWithServer(title, fn, 'its embedded copy ran; this one needs a PostgreSQL server'),
    target: (label: string) => postgresTarget(label),
  },
  {name: 'embedded', declare: describe, target: async (label: string) => embeddedTarget(join(mkdtempSync(join(tmpdir(), `audit-logger-${label}-`)), 'data'))},
] as const

// --- helpers ------------------------------------------------------------------------------------

function lines(text: string): string[] {
  return text.split('\n').filter((line) => line.length > 0)
}

/** stderr without the line naming the database. */
function messages(stderr: string): string[] {
  return lines(stderr).filter((line) => !line.startsWith('ℹ using '))
}

function jsonIds(stdout: string): string[] {
  return lines(stdout).map((line) => (JSON.parse(line) as {id: string}).id)
}

/** No character that acts on a terminal or forges a line: only \n ends lines (CRLF in CSV). */
function expectControlFree(text: string, what: string, crlf = false): void {
  const body = crlf ? text.replaceAll('\r\n', '\n') : text
  // eslint-disable-next-line no-control-regex
  expect(body, what).not.to.match(/[\u0000-\u0009\u000B-\u001F\u007F-\u009F\u2028\u2029\u202A-\u202E\u2066-\u2069]/)
}

function expectOneErrorLine(result: CliResult, pattern: RegExp, code = 2): void {
  expect(result.code, result.stderr).to.equal(code)
  expect(result.stdout).to.equal('')
  expect(messages(result.stderr), result.stderr).to.have.length(1)
  expect(messages(result.stderr)[0]).to.match(pattern)
  expect(result.stderr, 'no stack trace').not.to.match(/^\s+at /m)
}

// --- the suites ---------------------------------------------------------------------------------

for (const engine of ENGINES) {
  engine.declare(`events, events show and the store in db status, from the command line [${engine.name}]`, function () {
    this.timeout(180_000)
    let target: Target
    let env: NodeJS.ProcessEnv
    const events = (...args: string[]) => runCli(['events', ...args], env)

    before(async function () {
      this.timeout(300_000)
      target = await engine.target('events')
      env = cliEnv(target.vars)
      await withDb(target, async (db) => {
        await migrateToLatest(db)
        for (const day of FIXTURE) await storeDay(db, day)
        await storeMany(db, BIG_DAYS, BIG_PER_DAY)
        await insertRecord(db, {day: D2, status: 'SUCCESS', events: 13})
      })
    })

    after(() => {
      const dir = target?.vars.AUDIT_LOGGER_DATA_DIR
      if (dir) rmSync(join(dir, '..'), {recursive: true, force: true})
    })

    it('text: the line process prints, oldest first, control characters escaped; a count on stderr', async () => {
      const result = await events('--date', D2)
      expect(result.code, result.stderr).to.equal(0)
      const expected = ALL.filter(({day}) => day === D2).map(({event: e}) => formatEvent(e, 'text'))
      expect(result.stdout).to.equal(expected.join(''))
      expect(lines(result.stdout)[0]).to.match(/^created_at=2025-09-28T00:00:00Z actor\.email=ann@example\.com type=app action=create app\.name=billing-api id=2025-09-28-e00$/)
      const hostile = lines(result.stdout).at(-1)!
      expect(hostile).to.include('actor.email="mallory\\u001b]0;pwned\\u0007@example.com"')
      expectControlFree(result.stdout, 'text output')
      expect(messages(result.stderr)).to.deep.equal([`ℹ 13 event(s) (${D2})`])
    })

    it('json: each stored text on one line, byte for byte; a pretty-printed element folded', async () => {
      const result = await events('--from', D1, '--to', D3, '--format', 'json')
      expect(result.code, result.stderr).to.equal(0)
      const out = lines(result.stdout)
      expect(jsonIds(result.stdout)).to.deep.equal(idsWhere(D1, D3))
      expect(out, 'the odd element exactly as the API wrote it').to.include(ODD_TEXT)
      expect(out).to.include(foldJsonText(PRETTY_STORED))
      expect(out).to.include(JSON.stringify(HOSTILE))
      for (const line of out) expect(() => JSON.parse(line)).not.to.throw()
    })

    it('csv: a header and one row per event, formula cells guarded, control characters escaped, RFC 4180 quoting', async () => {
      const result = await events('--date', D2, '--format', 'csv')
      expect(result.code, result.stderr).to.equal(0)
      const rows = result.stdout.split('\r\n')
      expect(rows[0]).to.equal('created_at,day,id,type,action,actor_email,actor_id,app_name,app_id,owner_email,team_name,ip_address,account')
      expect(rows).to.have.length(1 + 13 + 1)
      expect(rows.at(-1)).to.equal('')
      expect(rows[1]).to.equal(`${D2}T00:00:00.000Z,${D2},${D2}-e00,app,create,ann@example.com,actor-0,billing-api,app-0,owner@example.com,ops,203.0.113.7,acme`)
      expect(result.stdout.endsWith(HOSTILE_CSV)).to.equal(true)
      expectControlFree(result.stdout, 'csv output', true)
    })

    it('the filters from their flags, all five combined (each of them narrowing the result)', async () => {
      const expected = idsWhere(D1, D3, (e) => keepAllFive(e))
      expect(expected).not.to.be.empty
      for (const name of Object.keys(ALL_FIVE) as Array<keyof typeof ALL_FIVE>) {
        expect(idsWhere(D1, D3, (e) => keepAllFive(e, name)), `without --${name} more match`).not.to.deep.equal(expected)
      }

      const flags = Object.entries(ALL_FIVE).flatMap(([name, value]) => [`--${name}`, value])
      const result = await events('--from', D1, '--to', D3, '--format', 'json', ...flags)
      expect(result.code, result.stderr).to.equal(0)
      expect(jsonIds(result.stdout)).to.deep.equal(expected)
      expect(messages(result.stderr)).to.deep.equal([
        `ℹ ${expected.length} event(s) (${D1}..${D3}, actor ann@example.com, type app, action create, app billing-api, ip 203.0.113.7)`,
      ])
    })

    it('defaults to the last 7 days ending yesterday (UTC): not the day before, not today', async () => {
      const result = await events('--format', 'json')
      expect(result.code, result.stderr).to.equal(0)
      expect(jsonIds(result.stdout)).to.deep.equal(idsWhere(WINDOW_FIRST, YESTERDAY))
      expect(jsonIds(result.stdout)).to.have.length(3)
      expect(messages(result.stderr)).to.deep.equal([`ℹ 3 event(s) (${WINDOW_FIRST}..${YESTERDAY})`])
    })

    it('--limit N: the first N, saying when more match', async () => {
      const limited = await events('--from', D1, '--to', D3, '--format', 'json', '--limit', '3')
      expect(limited.code, limited.stderr).to.equal(0)
      expect(jsonIds(limited.stdout)).to.deep.equal(idsWhere(D1, D3).slice(0, 3))
      expect(messages(limited.stderr)).to.deep.equal([`ℹ 3 events (${D1}..${D3}); stopped at --limit 3, more match`])
    })

    it('nothing matching: nothing on stdout (not even a CSV header), one line on stderr, exit 0', async () => {
      const result = await events('--date', D2, '--actor', 'nobody@example.com', '--format', 'csv')
      expect(result.code, result.stderr).to.equal(0)
      expect(result.stdout).to.equal('')
      expect(messages(result.stderr)).to.deep.equal([`ℹ no events match (${D2}, actor nobody@example.com)`])
    })

    it('streams 50,000 events in order in bounded memory: peak RSS within 80 MB of an empty search’s', async () => {
      const scratch = mkdtempSync(join(tmpdir(), 'audit-logger-rss-'))
      const peakMb = async (args: string[], check: (result: CliResult) => void) => {
        const file = join(scratch, 'peak')
        // bin/run.js's shebang line gives Node --max-semi-space-size=4; the test starts `node bin/run.js`, so it is given here.
        const result = await runCli(['events', ...args], {...env, NODE_OPTIONS: `--max-semi-space-size=4 --import=${PEAK_RSS_HOOK}`, PEAK_RSS_FILE: file})
        check(result)
        return Number(readFileSync(file, 'utf8')) / 2 ** 20
      }

      try {
        // The engine's own cost (the embedded one runs PostgreSQL in the process): a search that finds nothing.
        const empty = await peakMb(['--date', '2024-06-30', '--format', 'json'], (result) => expect(result.stdout).to.equal(''))
        const big = await peakMb(['--from', BIG_DAYS[0], '--to', BIG_DAYS.at(-1)!, '--format', 'json'], (result) => {
          expect(result.code, result.stderr).to.equal(0)
          const keys = lines(result.stdout).map((line) => {
            const e = JSON.parse(line) as {id: string; created_at: string}
            return `${e.id.slice(0, 10)} ${e.created_at} ${e.id}`
          })
          expect(keys).to.have.length(BIG_TOTAL)
          // Oldest first: day, then created_at, then id.
          expect(keys.every((key, k) => k === 0 || keys[k - 1] < key), 'in order').to.equal(true)
        })
        // The heap grows by some tens of MB before the collector catches up, and stays there however many events follow.
        expect(big, `peak RSS ${big.toFixed(0)} MB, ${empty.toFixed(0)} MB for an empty search`).to.be.below(empty + 80)
      } finally {
        rmSync(scratch, {recursive: true, force: true})
      }
    })

    it('| head -1: a reader that leaves early ends the command quietly, exit 0', async () => {
      const result = await runAndCloseStdout(['events', '--from', BIG_DAYS[0], '--to', BIG_DAYS.at(-1)!, '--format', 'csv'], env)
      expectNoCrash(result)
      expect(result.firstChunk).to.match(/^created_at,day,id,/)
      expect(result.code, result.stderr).to.equal(0)
      expect(messages(result.stderr), 'quietly').to.deep.equal([])
    })

    it('events show: the stored text as is (one pretty-printed stays so), --pretty indents, an unknown id exits 1', async () => {
      const asStored = await runCli(['events', 'show', PRETTY.id], env)
      expect(asStored.code, asStored.stderr).to.equal(0)
      expect(asStored.stdout).to.equal(`${PRETTY_STORED}\n`)
      const indented = await runCli(['events', 'show', HOSTILE.id, '--pretty'], env)
      expect(indented.code, indented.stderr).to.equal(0)
      expect(JSON.parse(indented.stdout)).to.deep.equal(HOSTILE)
      expect(indented.stdout).to.include('\n  "id": "hostile-1",\n')
      expectControlFree(indented.stdout.replaceAll('\n', ''), '--pretty output')

      const unknown = await runCli(['events', 'show', 'no-such-event'], env)
      expectOneErrorLine(unknown, /^Error: no stored event has the id no-such-event — /, 1)
    })

    it('db status: the store’s events, days, size and partitions; --json under "store"', async () => {
      const total = ALL.length + BIG_TOTAL
      const text = await runCli(['db', 'status'], env)
      expect(text.code, text.stderr).to.equal(0)
      expect(text.stdout).to.match(/^Event store: on, keeping 365 days \(EVENT_RETENTION_DAYS\)$/m)
      expect(text.stdout).to.match(new RegExp(`^ {2}${total} events of 2024-06-01\\.\\.${TODAY} in \\d+ month partition\\(s\\): [\\d.]+ (MB|kB) on disk, \\d+ bytes per event$`, 'm'))
      const json = await runCli(['db', 'status', '--json'], {...env, EVENT_RETENTION_DAYS: '90'})
      const {store} = JSON.parse(json.stdout) as {store: Record<string, unknown>}
      expect(store).to.include({enabled: true, events: total, oldestDay: '2024-06-01', newestDay: TODAY, retentionDays: 90})
      expect(store.bytes).to.be.a('number').and.above(BIG_TOTAL * 1000)
      expect(store.partitions).to.be.a('number').and.at.least(4)

      const off = await runCli(['db', 'status', '--json'], {...env, EVENT_STORE: 'off'})
      expect((JSON.parse(off.stdout) as {store: {enabled: boolean; events: number}}).store).to.include({enabled: false, events: total})
      const offText = await runCli(['db', 'status'], {...env, EVENT_STORE: 'off'})
      expect(offText.stdout).to.match(/^Event store: off \(EVENT_STORE=off\): process keeps no events; unset EVENT_STORE to keep them$/m)
    })
  })

  engine.declare(`db prune [${engine.name}]`, function () {
    this.timeout(120_000)
    let target: Target
    let env: NodeJS.ProcessEnv
    // The first day kept is 2025-03-15: January and February go whole, March loses its 10th.
    const firstKept = '2025-03-15'
    const retention = String(dayDiff(firstKept, todayUtc()))
    const days = ['2025-01-10', '2025-01-31', '2025-02-14', '2025-03-10', '2025-03-14', '2025-03-15', '2025-03-20', '2025-04-02']

    before(async () => {
      target = await engine.target('prune')
      env = cliEnv({...target.vars, EVENT_RETENTION_DAYS: retention})
      await withDb(target, async (db) => {
        await migrateToLatest(db)
        for (const day of days) {
          await storeDay(db, {day, events: [event(day, 1), event(day, 2)]})
          await insertRecord(db, {day, status: 'SUCCESS', events: 2})
        }
      })
    })

    after(() => {
      const dir = target?.vars.AUDIT_LOGGER_DATA_DIR
      if (dir) rmSync(join(dir, '..'), {recursive: true, force: true})
    })

    it('drops whole old months, deletes the straddling days, keeps the records; then finds nothing to do', async () => {
      const records = await withDb(target, (db) => snapshot(db))
      const pruned = await runCli(['db', 'prune'], env)
      expect(pruned.code, pruned.stderr).to.equal(0)
      expect(pruned.stdout).to.equal(
        `Pruned the events of days before ${firstKept} (EVENT_RETENTION_DAYS=${retention}): dropped 2 whole month(s) (2025-01, 2025-02) ` +
          "and deleted 4 event(s) of the month that straddles the boundary. The days' processing records stay.\n",
      )
      await withDb(target, async (db) => {
        expect(await storeStats(db)).to.include({events: 6, oldestDay: firstKept, newestDay: '2025-04-02', partitions: 2})
        expect(await snapshot(db), 'every record stays').to.deep.equal(records)
      })

      const again = await runCli(['db', 'prune', '--json'], {...env, EVENT_STORE: 'off'})
      expect(again.code, again.stderr).to.equal(0)
      expect(JSON.parse(again.stdout)).to.deep.equal({firstKeptDay: firstKept, retentionDays: Number(retention), droppedMonths: [], busyMonths: [], deletedEvents: 0})
      expect(again.stderr).to.include('the event store is off (EVENT_STORE=off): process keeps no new events; those kept earlier are pruned all the same')
    })
  })
}

describe('events: bad values, the store off, and a database not made yet (real processes)', function () {
  this.timeout(120_000)
  let scratch: string

  before(() => {
    scratch = mkdtempSync(join(tmpdir(), 'audit-logger-events-bad-'))
  })

  after(() => rmSync(scratch, {recursive: true, force: true}))

  it('refuses bad values with one line, exit 2, before opening any database', async () => {
    // A database that cannot be reached: any attempt to open it would say so instead.
    const env = cliEnv({DATABASE_URL: 'postgres://postgres@127.0.0.1:1/nothing'})
    const cases: Array<{args: string[]; error: RegExp}> = [
      {args: ['--date', '2025-02-30'], error: /^Error: date "2025-02-30" is not a calendar day written YYYY-MM-DD — /},
      {args: ['--date', 'yesterday'], error: /^Error: date "yesterday" is not a calendar day/},
      {args: ['--from', '2025-10-01', '--to', '2025-09-01'], error: /^Error: from 2025-10-01 is after to 2025-09-01 — see --help/},
      {args: ['--from', '2025-13-01', '--to', '2025-12-01'], error: /^Error: from "2025-13-01" is not a calendar day/},
      {args: ['--from', '2025-09-01'], error: /^Error: .*--to/},
      {args: ['--date', '2025-09-01', '--from', '2025-09-01', '--to', '2025-09-02'], error: /^Error: --from and --date cannot be used together; --to and --date cannot be used together — see --help$/},
      {args: ['--type', 'app;drop'], error: /^Error: type "app;drop" is not an event type/},
      {args: ['--actor', 'a\u001B[2Jb@example.com'], error: /^Error: actor "a\\x1B\[2Jb@example\.com" cannot match any event/},
      {args: ['--ip', 'x'.repeat(300)], error: /^Error: ip "x+…" cannot match any event \(at most 256 characters/},
      {args: ['--limit', '0'], error: /^Error: --limit: Expected an integer greater than or equal to 1/},
      {args: ['--limit', '1000001'], error: /^Error: --limit: Expected an integer less than or equal to 1000000/},
      {args: ['--format', 'xml'], error: /^Error: .*--format/},
    ]
    for (const {args, error} of cases) {
      const result = await runCli(['events', ...args], env)
      expectOneErrorLine(result, error)
      expect(result.stderr, args.join(' ')).not.to.match(/cannot reach/)
    }
  })

  it('events show refuses an id that cannot be one (too long, control characters): exit 2, one line', async () => {
    const env = cliEnv({DATABASE_URL: 'postgres://postgres@127.0.0.1:1/nothing'})
    expectOneErrorLine(await runCli(['events', 'show', 'x'.repeat(257)], env), /^Error: id "x+…" cannot be an event's id \(1 to 256 characters, no control characters\)/)
    expectOneErrorLine(await runCli(['events', 'show', 'abc\u001B]0;x\u0007'], env), /^Error: id "abc\\x1B]0;x\\x07" cannot be an event's id/)
  })

  it('EVENT_STORE=off: one line saying how to turn it on, exit 2, the store not read (no database opened or made)', async () => {
    const dataDir = join(scratch, 'off')
    for (const vars of [{DATABASE_URL: 'postgres://postgres@127.0.0.1:1/nothing'}, {AUDIT_LOGGER_DATA_DIR: dataDir}]) {
      for (const args of [['events'], ['events', 'show', 'some-id']]) {
        const result = await runCli(args, cliEnv({...vars, EVENT_STORE: 'off'}))
        expectOneErrorLine(result, /^Error: the event store is off \(EVENT_STORE=off\): no events are kept to search — unset EVENT_STORE \(or set it to on\)/)
      }
    }

    expect(existsSync(dataDir)).to.equal(false)
  })

  it('an embedded database not made yet: events finds nothing, db status reports an empty store — and nothing is created', async () => {
    const dataDir = join(scratch, 'never-used')
    const env = cliEnv({AUDIT_LOGGER_DATA_DIR: dataDir})
    const search = await runCli(['events', '--date', D2], env)
    expect(search.code, search.stderr).to.equal(0)
    expect(search.stdout).to.equal('')
    expect(messages(search.stderr)).to.deep.equal([`ℹ no events match (${D2}): nothing is stored yet — process stores each day it collects`])
    const status = await runCli(['db', 'status', '--json'], env)
    expect(status.code, status.stderr).to.equal(0)
    expect((JSON.parse(status.stdout) as {store: unknown}).store).to.deep.equal({
      enabled: true,
      events: 0,
      oldestDay: null,
      newestDay: null,
      bytes: 0,
      partitions: 0,
      retentionDays: 365,
    })
    expect(existsSync(dataDir), 'nothing made').to.equal(false)
  })
})
