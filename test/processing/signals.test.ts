/**
 * Scenario 8 with real processes: SIGTERM (what Heroku sends on a restart or a scheduler timeout)
 * and SIGINT (Ctrl-C) while a run waits on a slow or hanging API. The request is aborted, the day
 * recorded FAILED with the reason, the process exits 1 at once, nothing is written to stdout,
 * nothing is left in the temporary directory, and nothing escapes as an unhandled rejection.
 */
import {mkdtempSync, readdirSync} from 'node:fs'
import {readdir, readlink} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import {expect} from 'chai'
import type {Kysely} from 'kysely'
import pg from 'pg'

import {findDay} from '../../src/lib/db/audit-log-repository.js'
import type {Database} from '../../src/lib/db/schema.js'
import {generateEvents} from '../fake-heroku/events.js'
import type {FakeHeroku} from '../fake-heroku/server.js'
import {type CliResult, cliEnv, startCli} from '../support/cli.js'
import {describeWithServer} from '../support/db.js'
import {useJobSuite} from '../support/job-suite.js'
import {freePort, waitForRun} from '../support/helpers.js'

/** Files the process holds open under `dir` whose name is gone (Linux: /proc/PID/fd links end in ' (deleted)'). */
async function openDeletedFiles(pid: number, dir: string): Promise<string[]> {
  const fds = await readdir(`/proc/${pid}/fd`)
  const targets = await Promise.all(fds.map((fd) => readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')))
  return targets.filter((target) => target.startsWith(dir) && target.endsWith(' (deleted)'))
}

/** What must never appear on stderr, whatever the signal interrupted. */
function expectNoCrash(result: CliResult): void {
  expect(result.stderr).not.to.match(/unhandled|UnhandledPromiseRejection|ERR_UNHANDLED|triggerUncaughtException/i)
  expect(result.stderr, 'no stack trace').not.to.match(/^\s+at .+:\d+:\d+\)?$/m)
  expect(result.signal, 'exited by itself, not killed by the signal').to.equal(null)
}

/** How long a run may take to stop after the signal: far less than the API timeout it would otherwise sit out. */
const STOPS_WITHIN_MS = 10_000

describeWithServer('signals (scenario 8, real processes)', function () {
  this.timeout(60_000)
  const DAY = '2025-05-20'
  let fake: FakeHeroku
  let db: Kysely<Database>
  let env: NodeJS.ProcessEnv
  let spoolDir: string

  useJobSuite((suite) => ({fake, db} = suite), {fake: {events: {[DAY]: generateEvents(DAY, 1500)}}, rateLimitRemaining: 4500})

  beforeEach(() => {
    spoolDir = mkdtempSync(join(tmpdir(), 'audit-logger-signals-'))
    env = cliEnv({
      DATABASE_URL: process.env.TEST_DATABASE_URL,
      HEROKU_API_URL: fake.url,
      HEROKU_API_TOKEN: fake.token,
      HEROKU_ACCOUNT_ID: 'acme',
      // A hanging request would otherwise be sat out for two minutes: only the abort can end it.
      HEROKU_API_TIMEOUT: '120',
      // The day's spool goes here, so the test can see nothing is left behind.
      TMPDIR: spoolDir,
    })
  })

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`${signal} while a page hangs: the request is aborted, the day FAILED, exit 1 at once, stdout empty`, async () => {
      // Page 1 is answered (and spooled), page 2 hangs.
      fake.script([{kind: 'delay', ms: 0}, {kind: 'hang'}], {day: DAY})
      const run = startCli(['process', '--date', DAY, '--format', 'json'], env)
      await waitForRun('page 2 requested and the row PROCESSING', run, async () => fake.requestsForDay(DAY).length >= 2 && (await findDay(db, DAY))?.status === 'PROCESSING')

      const signalled = Date.now()
      run.kill(signal)
      const result = await run.result
      expect(Date.now() - signalled, 'stopped long before the 120 s timeout').to.be.below(STOPS_WITHIN_MS)
      expect(result.code, result.stderr).to.equal(1)
      expectNoCrash(result)
      expect(result.stdout, 'the spooled page is never written').to.equal('')
      expect(result.stderr).to.include(`received ${signal}: stopping`)
      expect(result.stderr).to.match(new RegExp(`${DAY} FAILED after .*fetching ${DAY} was cancelled`))
      const row = await findDay(db, DAY)
      expect(row).to.include({status: 'FAILED', events_count: 0, error_message: `fetching ${DAY} was cancelled`, events_digest: null})
      expect(row?.finished_at).to.be.instanceOf(Date)
      // The request was not retried after the abort, and no other one was made.
      expect(fake.requestsForDay(DAY)).to.have.length(2)
      expect(readdirSync(spoolDir), 'no spool file left behind').to.deep.equal([])
    })
  }

  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    it(`${signal} once a big day's spool has moved to a temporary file: no file is left behind (it never had a name)`, async () => {
      // 10,000 events are ~5.6 MB of JSON lines: past the spool's 4 MB in memory with page 8. Page 10
      // hangs; it is asked for once page 9 is in, so page 8 has been spooled by then.
      const big = '2025-05-21'
      fake.setEvents(big, generateEvents(big, 10_000))
      fake.script([...Array.from({length: 9}, () => ({kind: 'delay' as const, ms: 0})), {kind: 'hang'}], {day: big})
      const run = startCli(['process', '--date', big, '--format', 'json'], env)
      await waitForRun('page 10 requested', run, () => fake.requestsForDay(big).length >= 10)
      // The run holds an open file in the spool directory that no name points to.
      const held = await openDeletedFiles(run.pid!, spoolDir)
      expect(held, 'the spool is an unlinked file').to.have.length(1)
      expect(readdirSync(spoolDir)).to.deep.equal([])

      run.kill(signal)
      const result = await run.result
      expect(result.stdout).to.equal('')
      expect(readdirSync(spoolDir)).to.deep.equal([])
      const row = await findDay(db, big)
      if (signal === 'SIGTERM') {
        expect(result.code, result.stderr).to.equal(1)
        expectNoCrash(result)
        expect(row?.status).to.equal('FAILED')
      } else {
        expect(result.signal).to.equal('SIGKILL')
        expect(row?.status, 'a killed run is recovered later, once stale').to.equal('PROCESSING')
      }
    })
  }

  it('SIGTERM during a retry wait (Retry-After 60): the wait is cut short, the day FAILED', async () => {
    fake.script([{kind: 'status', status: 503, retryAfter: '60'}], {day: DAY})
    const run = startCli(['process', '--date', DAY], env)
    let stderr = ''
    run.stderr!.on('data', (chunk: string) => (stderr += chunk))
    await waitForRun('the retry notice', run, () => /retrying in 60\.0 s/.test(stderr))
    run.kill('SIGTERM')
    const result = await run.result
    expect(result.code, result.stderr).to.equal(1)
    expectNoCrash(result)
    expect(result.stdout).to.equal('')
    expect(await findDay(db, DAY)).to.include({status: 'FAILED', error_message: `fetching ${DAY} was cancelled`})
    expect(fake.requestsForDay(DAY), 'the retry was never sent').to.have.length(1)
  })

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`${signal} during a range: the day before stays SUCCESS with its events written, the current day FAILED, later days untouched`, async () => {
      const days = ['2025-05-10', '2025-05-11', '2025-05-12', '2025-05-13']
      fake.setEvents(days[0], generateEvents(days[0], 30))
      fake.script([{kind: 'hang'}], {day: days[1]})
      const run = startCli(['process', '--from', days[0], '--to', days.at(-1)!, '--format', 'json'], env)
      await waitForRun(`the request for ${days[1]}`, run, () => fake.requestsForDay(days[1]).length > 0)
      run.kill(signal)
      const result = await run.result
      expect(result.code, result.stderr).to.equal(1)
      expectNoCrash(result)
      const written = result.stdout.split('\n').filter(Boolean).map((line) => (JSON.parse(line) as {id: string}).id)
      expect(written, `only ${days[0]}'s events`).to.deep.equal(generateEvents(days[0], 30).map((e) => e.id))
      expect(await findDay(db, days[0])).to.include({status: 'SUCCESS', events_count: 30})
      expect(await findDay(db, days[1])).to.include({status: 'FAILED', error_message: `fetching ${days[1]} was cancelled`})
      for (const later of days.slice(2)) expect(await findDay(db, later), later).to.equal(undefined)
      expect(fake.requestsForDay(days[2])).to.have.length(0)
      expect(result.stderr).to.match(/Interrupted: 2 day\(s\) were not started\. Run again: audit-logger process --from 2025-05-11 --to 2025-05-13 --format json$/m)
      expect(readdirSync(spoolDir)).to.deep.equal([])
    })
  }
}, 'reads the day’s record while the run still holds its database: only a server admits both')

describeWithServer('serve and SIGINT (scenario 8, a real process)', function () {
  this.timeout(30_000)

  // SIGTERM with a request in flight is proven in serve.test.ts; Ctrl-C must behave the same.
  it('on SIGINT finishes the request in flight, then exits 0', async () => {
    const port = await freePort()
    const server = startCli(['serve'], cliEnv({DATABASE_URL: process.env.TEST_DATABASE_URL, PORT: String(port)}))
    let stderr = ''
    server.stderr!.on('data', (chunk: string) => (stderr += chunk))
    await waitForRun('the server listening', server, () => stderr.includes('listening'))

    // A lock on the table holds the page's query, so the request is in flight when the signal comes.
    const blocker = new pg.Client({connectionString: process.env.TEST_DATABASE_URL, application_name: 'audit-logger-test'})
    await blocker.connect()
    try {
      await blocker.query('BEGIN; LOCK TABLE audit_events_log IN ACCESS EXCLUSIVE MODE')
      const inFlight = fetch(`http://127.0.0.1:${port}/api/logs`)
      await waitForRun('the request waiting on the lock', server, async () => {
        const waiting = await blocker.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND application_name = 'audit-logger' AND datname = current_database()`)
        return waiting.rows[0].n > 0
      })
      server.kill('SIGINT')
      await sleep(200)
      await blocker.query('COMMIT')
      const answer = await inFlight
      expect(answer.status).to.equal(200)
      await answer.json()
    } finally {
      await blocker.end()
    }

    const result = await server.result
    expect(result.code, result.stderr).to.equal(0)
    expectNoCrash(result)
    expect(result.stderr).to.match(/received SIGINT: closing/)
  })
}, 'holds a serve request in flight with a row lock from a second PostgreSQL connection')
