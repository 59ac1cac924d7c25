/**
 * The soak (`npm run test:slow`, not part of `npm test`): 200 consecutive `process --date` runs
 * (real processes) over random past dates, each with a random fault scripted into the fake Heroku:
 * 5xx, 429 with Retry-After 0–1, resets, cut and truncated bodies, hangs past the attempt timeout,
 * 4xx, bodies that are not arrays, a repeating Next-Range, delays, and now and then a SIGKILL of
 * the run mid-fetch followed by a back-dated heartbeat (a crashed run the next one takes over).
 *
 * Each run's outcome must be the one its fault calls for (so every FAILED or ERROR is honest), and
 * at the end: after `db cleanup` nothing is PROCESSING; every SUCCESS day's events were written
 * exactly once over all the runs, with the right count and digest; no FAILED or ERROR day wrote
 * anything; no process is left; no spool file is left in the temporary directory.
 *
 *   SOAK_RUNS=200 SOAK_SEED=12345 npm run test:slow     # a failing seed is printed; rerun it
 */
import {mkdtempSync, readdirSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import {expect} from 'chai'
import {type Kysely, sql} from 'kysely'

import {findDay} from '../../src/lib/db/audit-log-repository.js'
import {migrateToLatest} from '../../src/lib/db/migrate.js'
import type {Database} from '../../src/lib/db/schema.js'
import {addDays} from '../../src/lib/dates.js'
import {eventsDigest} from '../../src/lib/processing/events-digest.js'
import {type AuditEvent, generateEvents, mulberry32} from '../fake-heroku/events.js'
import {type Fault, type FakeHeroku, startFakeHeroku} from '../fake-heroku/server.js'
import {cliEnv, runCli, startCli} from '../support/cli.js'
import {createScratchDatabase, describeWithServer, openTestDb} from '../support/db.js'

const RUNS = Number(process.env.SOAK_RUNS ?? 200)
const SEED = Number(process.env.SOAK_SEED ?? Math.floor(Math.random() * 2 ** 31))
const PAGE = 10
const DATES = 120

/** What a run must end as, given its fault: the client tries each request twice (HEROKU_API_MAX_ATTEMPTS=2). */
type Expected = 'SUCCESS' | 'FAILED' | 'ERROR' | 'KILLED'

interface Plan {
  name: string
  faults: Fault[]
  expected: Expected
}

const PASS: Fault = {kind: 'delay', ms: 0}

/** Transient faults: one is retried away, two in a row (both attempts) fail the day. */
const TRANSIENT: Array<[string, () => Fault]> = [
  ['500', () => ({kind: 'status', status: 500})],
  ['502', () => ({kind: 'status', status: 502})],
  ['503', () => ({kind: 'status', status: 503})],
  ['504', () => ({kind: 'status', status: 504})],
  ['429 Retry-After 0', () => ({kind: 'status', status: 429, retryAfter: '0'})],
  ['429 Retry-After 1', () => ({kind: 'status', status: 429, retryAfter: '1'})],
  ['reset', () => ({kind: 'reset'})],
  ['cut body', () => ({kind: 'cut-body'})],
  ['hang (past the 2 s timeout)', () => ({kind: 'hang'})],
  ['stalled body', () => ({kind: 'hang-body'})],
]

function planFor(random: () => number, pages: number): Plan {
  const pick = <T>(list: T[]): T => list[Math.floor(random() * list.length)]
  // The fault hits a random page of the day: the pages before it are answered normally.
  const page = Math.floor(random() * pages)
  const before = Array.from({length: page}, () => PASS)
  const at = (name: string, faults: Fault[], expected: Expected): Plan => ({name: `${name} on page ${page + 1}/${pages}`, faults: [...before, ...faults], expected})
  const roll = random()
  if (roll < 0.2) return {name: 'no fault', faults: [], expected: 'SUCCESS'}
  if (roll < 0.3) return at('delay', [{kind: 'delay', ms: Math.floor(random() * 300)}], 'SUCCESS')
  if (roll < 0.5) {
    const [name, fault] = pick(TRANSIENT)
    return at(`${name} once`, [fault()], 'SUCCESS')
  }

  if (roll < 0.65) {
    const [name, fault] = pick(TRANSIENT)
    return at(`${name} twice`, [fault(), fault()], 'FAILED')
  }

  if (roll < 0.75) {
    const status = pick([400, 401, 403, 404, 422])
    return at(String(status), [{kind: 'status', status}], 'FAILED')
  }

  if (roll < 0.85) return at(pick(['truncated JSON', 'not an array']), [{kind: random() < 0.5 ? 'truncated-json' : 'not-array'}], 'ERROR')
  if (roll < 0.92) return at('repeating Next-Range', [{kind: 'repeat-next-range'}], 'FAILED')
  return at('SIGKILL mid-fetch', [{kind: 'hang'}], 'KILLED')
}

describeWithServer('soak: 200 consecutive runs over random dates with random faults', function () {
  this.timeout(20 * 60_000)
  let fake: FakeHeroku
  let db: Kysely<Database>
  let env: NodeJS.ProcessEnv
  let spoolDir: string
  const events = new Map<string, AuditEvent[]>()

  before(async () => {
    const random = mulberry32(SEED)
    // Small days, 0 to 35 events: one to four pages of ten.
    for (let i = 0; i < DATES; i++) {
      const day = addDays('2023-01-01', i * 2)
      events.set(day, generateEvents(day, Math.floor(random() * 36), {seed: SEED % 1000}))
    }

    fake = await startFakeHeroku({events: Object.fromEntries(events), maxPageSize: PAGE, rateLimitRemaining: 1_000_000_000})
    const url = await createScratchDatabase('soak')
    db = openTestDb(url)
    await migrateToLatest(db)
    spoolDir = mkdtempSync(join(tmpdir(), 'audit-logger-soak-'))
    env = cliEnv({
      DATABASE_URL: url,
      HEROKU_API_URL: fake.url,
      HEROKU_API_TOKEN: fake.token,
      HEROKU_ACCOUNT_ID: 'acme',
      HEROKU_API_MAX_ATTEMPTS: '2',
      // Short enough that a hang costs little, long enough that a loaded machine does not time out a normal page.
      HEROKU_API_TIMEOUT: '2',
      LOG_LEVEL: 'warn',
      TMPDIR: spoolDir,
    })
  })

  after(async () => {
    await db?.destroy()
    await fake?.close()
  })

  it(`${RUNS} runs (seed ${SEED}): every outcome honest, nothing stuck, no event written twice, nothing left behind`, async () => {
    const random = mulberry32(SEED ^ 0x5eed)
    const dates = [...events.keys()]
    const written = new Map<string, string[]>(dates.map((d) => [d, []]))
    const pids: number[] = []
    const tally = new Map<string, number>()
    const started = Date.now()

    for (let i = 0; i < RUNS; i++) {
      // Mostly a date not done yet (new, FAILED, ERROR or crashed: retries and take-overs), now and
      // then any date (a done one is skipped).
      const done = new Set((await db.selectFrom('audit_events_log').select('process_date').where('status', '=', 'SUCCESS').execute()).map((r) => r.process_date))
      const open = dates.filter((d) => !done.has(d))
      const pool = open.length > 0 && random() < 0.85 ? open : dates
      const day = pool[Math.floor(random() * pool.length)]
      const dayEvents = events.get(day)!
      const before = await findDay(db, day)
      const plan = planFor(random, Math.max(1, Math.ceil(dayEvents.length / PAGE)))
      // A day done before is skipped: no request, whatever the script.
      const expected: Expected | 'SKIPPED' = before?.status === 'SUCCESS' ? 'SKIPPED' : plan.expected
      const what = `run ${i + 1} (seed ${SEED}): ${day} (${dayEvents.length} events, was ${before?.status ?? 'missing'}) with ${plan.name}`

      fake.reset()
      fake.script(plan.faults, {day})
      const run = startCli(['process', '--date', day, '--format', 'json'], env)
      pids.push(run.pid!)
      if (expected === 'KILLED') {
        const hangingAt = plan.faults.length
        const deadline = Date.now() + 20_000
        while (!(fake.requestsForDay(day).length >= hangingAt && (await findDay(db, day))?.status === 'PROCESSING')) {
          if (Date.now() > deadline || run.exitCode !== null) throw new Error(`${what}: never reached the hanging request`)
          await sleep(10)
        }

        run.kill('SIGKILL')
      }

      const result = await run.result
      const lines = result.stdout.split('\n').filter(Boolean)
      const row = await findDay(db, day)
      tally.set(expected, (tally.get(expected) ?? 0) + 1)

      switch (expected) {
        case 'KILLED': {
          expect(result.signal, what).to.equal('SIGKILL')
          expect(lines, `${what}: a killed run writes nothing`).to.deep.equal([])
          expect(row?.status, what).to.equal('PROCESSING')
          // The crash is discovered later: its heartbeat goes stale.
          await sql`UPDATE audit_events_log SET heartbeat_at = now() - interval '16 minutes' WHERE process_date = ${day}`.execute(db)
          break
        }

        case 'SKIPPED': {
          expect(result.code, `${what}\n${result.stderr}`).to.equal(0)
          expect(lines, what).to.deep.equal([])
          expect(fake.requestsForDay(day), what).to.have.length(0)
          expect(row?.status, what).to.equal('SUCCESS')
          break
        }

        case 'SUCCESS': {
          expect(result.code, `${what}\n${result.stderr}`).to.equal(0)
          expect(row, what).to.include({status: 'SUCCESS', events_count: dayEvents.length})
          expect(lines, what).to.have.length(dayEvents.length)
          break
        }

        case 'FAILED':
        case 'ERROR': {
          expect(result.code, `${what}\n${result.stderr}`).to.equal(1)
          expect(row?.status, `${what}\n${result.stderr}`).to.equal(expected)
          expect(row?.error_message, what).to.be.a('string').and.not.equal('')
          expect(lines, `${what}: a failed day writes nothing`).to.deep.equal([])
          break
        }
      }

      expect(result.stderr, what).not.to.match(/unhandled|triggerUncaughtException|^\s+at .+:\d+:\d+\)?$/im)
      written.get(day)!.push(...lines.map((line) => (JSON.parse(line) as {id: string}).id))
    }

    // The crashed runs nobody took over are cleaned up; then nothing may be left PROCESSING.
    const cleanup = await runCli(['db', 'cleanup'], env)
    expect(cleanup.code, cleanup.stderr).to.equal(0)
    const rows = await db.selectFrom('audit_events_log').selectAll().orderBy('process_date').execute()
    for (const row of rows) {
      const day = row.process_date
      const ids = written.get(day)!
      expect(['SUCCESS', 'FAILED', 'ERROR'], `${day} ended ${row.status}`).to.include(row.status)
      if (row.status === 'SUCCESS') {
        const expectedIds = events.get(day)!.map((e) => e.id)
        expect(ids.toSorted(), `${day}: every event written exactly once over all the runs`).to.deep.equal(expectedIds.toSorted())
        expect(row.events_count).to.equal(expectedIds.length)
        expect(row.events_digest).to.equal(eventsDigest(expectedIds))
      } else {
        expect(ids, `${day} is ${row.status}: nothing of it was written`).to.deep.equal([])
        expect(row.error_message, day).to.be.a('string').and.not.equal('')
      }
    }

    // No process left behind, and no spool file (each is unlinked as soon as it is opened, so even a SIGKILL leaves none).
    for (const pid of pids) expect(() => process.kill(pid, 0), `process ${pid} is gone`).to.throw(/ESRCH/)
    expect(readdirSync(spoolDir)).to.deep.equal([])

    const summary = [...tally].map(([k, n]) => `${n} ${k}`).join(', ')
    const statuses = rows.reduce<Record<string, number>>((acc, r) => ({...acc, [r.status]: (acc[r.status] ?? 0) + 1}), {})
    console.log(`      soak (seed ${SEED}): ${RUNS} runs in ${((Date.now() - started) / 1000).toFixed(0)} s: ${summary}; dates now ${JSON.stringify(statuses)}`)
  })
})
