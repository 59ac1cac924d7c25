/**
 * Sinks on the embedded database, with real processes (bin/run.js) and no DATABASE_URL: `process`
 * delivers what it stored, and `deliver` drains what an intake that was down missed.
 */
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {expect} from 'chai'

import {addDays, todayUtc} from '../../src/lib/dates.js'
import {generateEvents} from '../fake-heroku/events.js'
import {type FakeHeroku, startFakeHeroku} from '../fake-heroku/server.js'
import {cliEnv, runCli} from '../support/cli.js'
import {type SinkServer, startSink} from '../support/sink.js'

// Recent enough for the event store to keep it (EVENT_RETENTION_DAYS).
const DAY = addDays(todayUtc(), -3)
const EVENTS = 40
const IDS = generateEvents(DAY, EVENTS)
  .map((e) => e.id)
  .sort()

describe('sinks on the embedded database (real processes, no DATABASE_URL)', function () {
  this.timeout(120_000)
  let fake: FakeHeroku
  let intake: SinkServer
  let scratch: string

  before(async () => {
    fake = await startFakeHeroku({events: {[DAY]: generateEvents(DAY, EVENTS)}})
    scratch = mkdtempSync(join(tmpdir(), 'audit-logger-deliver-embedded-'))
  })

  after(async () => {
    await fake?.close()
    if (scratch) rmSync(scratch, {recursive: true, force: true})
  })

  beforeEach(async () => {
    intake = await startSink()
  })

  afterEach(() => intake.close())

  /** A data directory of the test's own, and a sink that costs a run one short wait when down. */
  const envFor = (name: string) =>
    cliEnv({
      HEROKU_API_URL: fake.url,
      HEROKU_API_TOKEN: fake.token,
      HEROKU_ACCOUNT_ID: 'acme',
      AUDIT_LOGGER_DATA_DIR: join(scratch, name),
      SINK_URL: intake.url,
      SINK_TOKEN: 'embedded-sink-token',
      SINK_BATCH_EVENTS: '10',
      SINK_MAX_ATTEMPTS: '2',
    })

  it('process stores the day and delivers it, every event once; deliver then has nothing to send (exit 0)', async () => {
    const env = envFor('delivered')
    const run = await runCli(['process', '--date', DAY], env)
    expect(run.code, run.stderr).to.equal(0)
    expect(run.stderr).to.include('using embedded PostgreSQL (PGlite)')
    expect(run.stderr).to.match(/sink ndjson http:\/\/127\.0\.0\.1:\d+: delivered 40 event\(s\) in 4 request\(s\); nothing waiting/)
    expect([...intake.acceptedIds()].sort()).to.deep.equal(IDS)

    const requests = intake.requests.length
    const again = await runCli(['deliver'], env)
    expect(again.code, again.stderr).to.equal(0)
    expect(again.stderr).to.match(/delivered 0 event\(s\) in 0 request\(s\); nothing waiting/)
    expect(intake.requests).to.have.length(requests)
  })

  it('an intake down: process still exits 0, deliver exits 1 saying what waits, and drains once it is back', async () => {
    const env = envFor('outage')
    await intake.down()
    const run = await runCli(['process', '--date', DAY], env)
    expect(run.code, 'the day is SUCCESS whatever the sink does').to.equal(0)
    expect(run.stderr).to.match(/40 event\(s\) waiting/)

    const stillDown = await runCli(['deliver'], env)
    expect(stillDown.code).to.equal(1)
    expect(stillDown.stderr).to.match(/unavailable after delivering 0 event\(s\).*; 40 event\(s\) waiting/)

    await intake.up()
    const drained = await runCli(['deliver'], env)
    expect(drained.code, drained.stderr).to.equal(0)
    expect([...intake.acceptedIds()].sort()).to.deep.equal(IDS)
  })
})
