/**
 * Scenario 10 with real processes: the database goes away in the middle of a run. Its connections
 * (application_name 'audit-logger', on this test's own scratch database only) are terminated with
 * pg_terminate_backend, and new ones are refused (ALLOW_CONNECTIONS false) until the test lets
 * them back. Whatever the moment: no crash on the pool's 'error' event, never SUCCESS without the
 * events written, a clear message, exit 1.
 */

import {expect} from 'chai'
import pg from 'pg'

import {migrateToLatest} from '../../src/lib/db/migrate.js'
import {generateEvents} from '../fake-heroku/events.js'
import {type FakeHeroku, startFakeHeroku} from '../fake-heroku/server.js'
import {type CliResult, cliEnv, startCli} from '../support/cli.js'
import {admin, createScratchDatabase, describeWithServer, openTestDb} from '../support/db.js'
import {waitForRun} from '../support/helpers.js'

const DAY = '2025-04-20'
const EVENTS = 2500

/** Reads the run's database with a client that is not the run's. */
async function query<R extends pg.QueryResultRow>(url: string, text: string, values: unknown[] = []): Promise<R[]> {
  const client = new pg.Client({connectionString: url, application_name: 'audit-logger-test'})
  await client.connect()
  try {
    return (await client.query<R>(text, values)).rows
  } finally {
    await client.end()
  }
}

function expectNoCrash(result: CliResult): void {
  expect(result.signal).to.equal(null)
  expect(result.stderr).not.to.match(/unhandled|UnhandledPromiseRejection|triggerUncaughtException|Unhandled 'error' event/i)
  expect(result.stderr, 'no stack trace').not.to.match(/^\s+at .+:\d+:\d+\)?$/m)
}

describeWithServer('the database drops mid-run (scenario 10, real processes)', function () {
  this.timeout(90_000)
  let fake: FakeHeroku
  let url: string
  let name: string

  before(async () => {
    fake = await startFakeHeroku({events: {[DAY]: generateEvents(DAY, EVENTS)}})
  })

  after(async () => {
    await fake.close()
  })

  beforeEach(async () => {
    fake.reset()
    url = await createScratchDatabase('drop')
    name = new URL(url).pathname.slice(1)
    const db = openTestDb(url)
    try {
      await migrateToLatest(db)
    } finally {
      await db.destroy()
    }
  })

  afterEach(async () => {
    await admin((client) => client.query(`ALTER DATABASE ${name} ALLOW_CONNECTIONS true`))
  })

  /** Terminates the run's connections to this test's database; with `refuse`, new ones fail until allowed again. */
  async function dropDatabase(refuse: boolean): Promise<number> {
    return admin(async (client) => {
      if (refuse) await client.query(`ALTER DATABASE ${name} ALLOW_CONNECTIONS false`)
      const killed = await client.query<{n: number}>(
        `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = 'audit-logger'`,
        [name],
      )
      return killed.rows[0].n
    })
  }

  async function allowConnections(): Promise<void> {
    await admin((client) => client.query(`ALTER DATABASE ${name} ALLOW_CONNECTIONS true`))
  }

  async function row(): Promise<{status: string; events_count: number; error_message: string | null} | undefined> {
    const rows = await query<{status: string; events_count: number; error_message: string | null}>(url, 'SELECT status, events_count, error_message FROM audit_events_log WHERE process_date = $1', [DAY])
    return rows[0]
  }

  function env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
    return cliEnv({DATABASE_URL: url, HEROKU_API_URL: fake.url, HEROKU_API_TOKEN: fake.token, HEROKU_ACCOUNT_ID: 'acme', HEROKU_API_TIMEOUT: '60', ...extra})
  }

  it('connections killed during the fetch, the database back at once: the pool replaces them, no crash, SUCCESS with every event', async () => {
    fake.script([{kind: 'delay', ms: 1500}], {day: DAY})
    const run = startCli(['process', '--date', DAY, '--format', 'json'], env())
    await waitForRun('the request and the PROCESSING row', run, async () => fake.requestsForDay(DAY).length > 0 && (await row())?.status === 'PROCESSING')
    expect(await dropDatabase(false), 'the run had its connection open').to.be.at.least(1)

    const result = await run.result
    expect(result.code, result.stderr).to.equal(0)
    expectNoCrash(result)
    expect(result.stderr).to.match(/database connection dropped/)
    expect(result.stdout.split('\n').filter(Boolean)).to.have.length(EVENTS)
    expect(await row()).to.include({status: 'SUCCESS', events_count: EVENTS})
  })

  it('the database gone while the heartbeat runs during the fetch: the beat fails without a crash, nothing is written, never SUCCESS, exit 1', async function () {
    // --stale-after 1 beats every 12 s: the page is held for longer, so a beat meets the dead database.
    this.timeout(120_000)
    fake.script([{kind: 'delay', ms: 14_000}], {day: DAY})
    const run = startCli(['process', '--date', DAY, '--format', 'json', '--stale-after', '1'], env())
    let stderr = ''
    run.stderr!.on('data', (chunk: string) => (stderr += chunk))
    await waitForRun('the request and the PROCESSING row', run, async () => fake.requestsForDay(DAY).length > 0 && (await row())?.status === 'PROCESSING')
    await dropDatabase(true)
    await waitForRun('a heartbeat to fail', run, () => /heartbeat failed/.test(stderr), 30_000)

    const result = await run.result
    expect(result.code, result.stderr).to.equal(1)
    expectNoCrash(result)
    expect(result.stdout, 'no event written: the fence could not be checked').to.equal('')
    expect(result.stderr).to.match(new RegExp(`${DAY}: heartbeat failed: .*`))
    expect(result.stderr, result.stderr).to.match(new RegExp(`${DAY} ERROR after .*: lost the database`))
    expect(result.stderr).to.match(/could not be recorded either/)
    await allowConnections()
    expect((await row())?.status, 'left PROCESSING, for the next run to take over once stale').to.equal('PROCESSING')
  })

  it('the database gone right before the finish, after the events were written: exit 1, not SUCCESS (the day will be fetched again)', async () => {
    const run = startCli(['process', '--date', DAY, '--format', 'json'], env())
    // Stop reading the run's stdout: once the fence is checked it blocks writing the day (a pipe
    // holds far less than the day's 1.4 MB), right before its finish.
    run.stdout!.pause()
    await waitForRun('every page served and the fence checked', run, async () => {
      if (fake.requestsForDay(DAY).length < 3) return false
      const fenced = await query<{n: number}>(
        url,
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'audit-logger' AND state = 'idle' AND query ~ '^\\s*UPDATE audit_events_log SET heartbeat_at = now\\(\\)'`,
      )
      return fenced[0].n > 0
    })
    expect((await row())?.status).to.equal('PROCESSING')
    await dropDatabase(true)
    run.stdout!.resume()

    const result = await run.result
    expect(result.code, result.stderr).to.equal(1)
    expectNoCrash(result)
    expect(result.stdout.split('\n').filter(Boolean), 'the day was written before the database went').to.have.length(EVENTS)
    expect(result.stderr).to.match(new RegExp(`${DAY} ERROR after .*: lost the database: .*; the ERROR could not be recorded either, so ${DAY} stays PROCESSING .*writes its ${EVENTS} events again`))
    await allowConnections()
    expect((await row())?.status, 'never SUCCESS').to.equal('PROCESSING')
  })

  it('a range stops starting days once the database is gone, and says so', async () => {
    const days = ['2025-04-18', '2025-04-19', '2025-04-20', '2025-04-21', '2025-04-22']
    fake.script([{kind: 'delay', ms: 1500}], {day: days[1]})
    const run = startCli(['process', '--from', days[0], '--to', days.at(-1)!], env())
    await waitForRun(`the request for ${days[1]}`, run, () => fake.requestsForDay(days[1]).length > 0)
    await dropDatabase(true)

    const result = await run.result
    expect(result.code, result.stderr).to.equal(1)
    expectNoCrash(result)
    for (const later of days.slice(2)) expect(fake.requestsForDay(later), later).to.have.length(0)
    expect(result.stderr, result.stderr).to.match(new RegExp(`${days[1]} +ERROR .*lost the database`))
    expect(result.stderr).to.match(/Stopped: the database cannot be reached .*3 day\(s\) were not started/)
    await allowConnections()
    const rows = await query<{process_date: string; status: string}>(url, `SELECT process_date::text, status FROM audit_events_log ORDER BY process_date`)
    expect(rows).to.deep.equal([
      {process_date: days[0], status: 'SUCCESS'},
      {process_date: days[1], status: 'PROCESSING'},
    ])
  })
}, 'terminates the runs’ connections (pg_terminate_backend) and refuses new ones (ALLOW_CONNECTIONS false)')
