/** Sinks through the command line: `process` delivers after storing, `deliver` drains, `db status` shows the backlog. */
import {expect} from 'chai'
import {type Kysely, sql} from 'kysely'

import {addDays, todayUtc} from '../../src/lib/dates.js'
import type {Database} from '../../src/lib/db/schema.js'
import {generateEvents} from '../fake-heroku/events.js'
import type {FakeHeroku} from '../fake-heroku/server.js'
import {expectNoCrash, runCli, startCli} from '../support/cli.js'
import {describeOnEngines} from '../support/db.js'
import {waitForRun} from '../support/helpers.js'
import {useJobSuite} from '../support/job-suite.js'
import {type SinkServer, startSink} from '../support/sink.js'
import {startWebhook} from '../support/webhook.js'

const SINK_TOKEN = 'hec tok%/&?=+en-4242'

describeOnEngines('sinks (real processes)', function (engine) {
  this.timeout(60_000)
  let fake: FakeHeroku
  let db: Kysely<Database>
  let env: NodeJS.ProcessEnv
  let intake: SinkServer
  const day = addDays(todayUtc(), -3)
  const nextDay = addDays(todayUtc(), -2)

  useJobSuite((suite) => ({fake, db, env} = suite), {engine: engine.name})

  beforeEach(async () => {
    intake = await startSink()
    fake.setEvents(day, generateEvents(day, 40))
    fake.setEvents(nextDay, generateEvents(nextDay, 25))
  })

  afterEach(() => intake.close())

  // Two tries per batch: an intake that is down costs a run one short wait.
  const withSink = (extra: Record<string, string> = {}) => ({...env, SINK_URL: intake.url, SINK_TOKEN, SINK_BATCH_EVENTS: '10', SINK_MAX_ATTEMPTS: '2', ...extra})

  it('deliver without SINK_URL, or a sink with the store off, is one usage line (exit 2)', async () => {
    const none = await runCli(['deliver'], env)
    expect(none.code).to.equal(2)
    expect(none.stderr.trim().split('\n')).to.have.length(1)
    expect(none.stderr).to.match(/SINK_URL is not set/)
    const off = await runCli(['deliver'], withSink({EVENT_STORE: 'off'}))
    expect(off.code).to.equal(2)
    expect(off.stderr).to.match(/SINK_URL is set but the event store is off/)
  })

  it('process stores the day and then delivers it; db status --json shows nothing waiting', async () => {
    const run = await runCli(['process', '--date', day], withSink())
    expect(run.code, run.stderr).to.equal(0)
    expect(intake.acceptedIds()).to.deep.equal(generateEvents(day, 40).map((e) => e.id).sort(byStoredOrder(day)))
    expect(run.stderr).to.match(/sink ndjson http:\/\/127\.0\.0\.1:\d+: delivered 40 event\(s\) in 4 request\(s\); nothing waiting/)
    const status = await runCli(['db', 'status', '--json'], withSink())
    const report = JSON.parse(status.stdout) as {delivery: Array<{pendingEvents: number; lastSuccessAt: string | null; target: string; configured: boolean}>}
    expect(report.delivery).to.have.length(1)
    expect(report.delivery[0]).to.include({pendingEvents: 0, configured: true})
    expect(report.delivery[0].lastSuccessAt).to.be.a('string')
    expect(status.stdout).not.to.include(new URL(intake.url).pathname)
  })

  it('a sink down across runs loses nothing: process still succeeds, deliver says what waits (exit 1), then drains (exit 0)', async () => {
    await intake.down()
    const first = await runCli(['process', '--date', day], withSink())
    expect(first.code, 'the day is SUCCESS whatever the sink does').to.equal(0)
    expect(first.stderr).to.match(/40 event\(s\) waiting/)
    const second = await runCli(['process', '--date', nextDay], withSink())
    expect(second.code).to.equal(0)
    const stillDown = await runCli(['deliver'], withSink())
    expect(stillDown.code).to.equal(1)
    expect(stillDown.stderr).to.match(/65 event\(s\) waiting/)
    const status = await runCli(['db', 'status'], withSink())
    expect(status.stdout).to.match(/Delivery:\n {2}ndjson http:\/\/127\.0\.0\.1:\d+: 65 event\(s\) waiting since /)
    await intake.up()
    const drained = await runCli(['deliver'], withSink())
    expect(drained.code, drained.stderr).to.equal(0)
    expect(new Set(intake.acceptedIds()).size).to.equal(65)
    expect(intake.acceptedIds()).to.have.length(65)
  })

  it('a 4xx stops the sink with one line and no secret, even when the intake echoes the token; deliver resumes it once fixed', async () => {
    intake.script({status: 403, body: `{"text":"Invalid token: Splunk ${SINK_TOKEN}","code":4}`})
    const run = await runCli(['process', '--date', day], withSink({SINK_FORMAT: 'splunk-hec'}))
    expect(run.code).to.equal(0)
    expectNoCrash(run)
    expect(run.stderr).to.match(/stopped after delivering 0 event\(s\) in 1 request\(s\): refused a batch \(HTTP 403/)
    for (const text of [run.stdout, run.stderr]) {
      expect(text).not.to.include(SINK_TOKEN)
      expect(text).not.to.include(encodeURIComponent(SINK_TOKEN))
    }

    const again = await runCli(['process', '--date', nextDay], withSink({SINK_FORMAT: 'splunk-hec'}))
    expect(again.stderr, again.stderr).to.match(/stopped since .*fix it, then run .?audit-logger deliver.? to resume/)
    expect(intake.requests).to.have.length(1)
    const stored = await sql<{stop_reason: string}>`SELECT stop_reason FROM audit_sinks`.execute(db)
    expect(stored.rows[0].stop_reason).not.to.include(SINK_TOKEN)
    const resumed = await runCli(['deliver', '--json'], withSink({SINK_FORMAT: 'splunk-hec'}))
    expect(resumed.code, resumed.stderr).to.equal(0)
    expect(JSON.parse(resumed.stdout)).to.include({outcome: 'done', delivered: 65, pending: 0})
  })

  it('a sink stopped by a 400 is announced to ALERT_WEBHOOK_URL once, naming its target, without the token', async () => {
    const hook = await startWebhook()
    try {
      const alerting = withSink({ALERT_WEBHOOK_URL: hook.url})
      intake.script({status: 400, body: `{"text":"Invalid token ${SINK_TOKEN} (${encodeURIComponent(SINK_TOKEN)})","code":6}`})
      const run = await runCli(['process', '--date', day], alerting)
      expect(run.code, run.stderr).to.equal(0)
      expect(hook.texts()).to.have.length(1)
      const [text] = hook.texts()
      expect(text).to.include(`sink ndjson ${new URL(intake.url).origin} refused a batch and is stopped: HTTP 400`)
      expect(text).not.to.include(SINK_TOKEN)
      expect(text).not.to.include(encodeURIComponent(SINK_TOKEN))

      // Still stopped: the next run sends it nothing and announces nothing new.
      const again = await runCli(['process', '--date', nextDay], alerting)
      expect(again.code, again.stderr).to.equal(0)
      expect(intake.requests).to.have.length(1)
      expect(hook.texts()).to.deep.equal([text])
    } finally {
      await hook.close()
    }
  })

  it('a changed SINK_URL is a new sink that gets the whole store; deliver --forget-other-sinks drops the old one and its backlog', async () => {
    await intake.down()
    await runCli(['process', '--date', day], withSink())
    const other = await startSink()
    try {
      const moved = await runCli(['deliver', '--forget-other-sinks'], withSink({SINK_URL: other.url}))
      expect(moved.code, moved.stderr).to.equal(0)
      expect(moved.stderr).to.match(/forgot 1 other sink\(s\) and their backlog: ndjson http:\/\/127\.0\.0\.1:\d+/)
      expect(new Set(other.acceptedIds()).size).to.equal(40)
      const status = JSON.parse((await runCli(['db', 'status', '--json'], withSink({SINK_URL: other.url}))).stdout) as {delivery: Array<{configured: boolean}>}
      expect(status.delivery.map((sink) => sink.configured)).to.deep.equal([true])
    } finally {
      await other.close()
    }
  })

  it('a deliver stopped by SIGTERM (a dyno stopping) ends at once, releases the sink, and the next run carries on', async () => {
    await runCli(['process', '--date', day], withSink({SINK_URL: 'http://127.0.0.1:9/unused'}))
    await sql`DELETE FROM audit_sinks`.execute(db)
    intake.script({status: 200}, 'hang')
    const run = startCli(['deliver'], withSink())
    await waitForRun('the second batch sent', run, () => intake.requests.length >= 2)
    run.kill('SIGTERM')
    const stopped = await run.result
    expect(stopped.code, 'events are still waiting').to.equal(1)
    expect(stopped.stderr).to.match(/received SIGTERM: stopping/)
    expect(stopped.stderr).to.match(/interrupted after delivering 10 event\(s\)/)
    const lease = await sql<{lease_token: string | null}>`SELECT lease_token FROM audit_sinks`.execute(db)
    expect(lease.rows[0].lease_token, 'the lease is released').to.equal(null)
    const resumed = await runCli(['deliver'], withSink())
    expect(resumed.code, resumed.stderr).to.equal(0)
    expect(intake.acceptedIds()).to.have.length(40)
    expect(new Set(intake.acceptedIds()).size).to.equal(40)
  })

  it('a deliver killed mid-way resumes from its durable position: every event arrives, at most one batch twice', async () => {
    await runCli(['process', '--date', day], withSink({SINK_URL: 'http://127.0.0.1:9/unused'}))
    await sql`DELETE FROM audit_sinks`.execute(db)
    // Three batches go through, then the intake stalls; the run is killed while it waits.
    intake.script({status: 200}, {status: 200}, {status: 200}, 'hang')
    const run = startCli(['deliver'], withSink())
    await waitForRun('the fourth batch sent', run, () => intake.requests.length >= 4)
    run.kill('SIGKILL')
    await run.result
    // Its lease would hold the sink for a couple of minutes: the test does not wait for that.
    await sql`UPDATE audit_sinks SET leased_until = now() - interval '1 second'`.execute(db)
    const resumed = await runCli(['deliver'], withSink())
    expect(resumed.code, resumed.stderr).to.equal(0)
    const ids = intake.acceptedIds()
    expect(new Set(ids).size).to.equal(40)
    expect(ids.length - 40).to.be.at.most(10)
  })
})

/** The store delivers a day in (created_at, id) order. */
function byStoredOrder(day: string): (a: string, b: string) => number {
  const created = new Map(generateEvents(day, 40).map((e) => [e.id, e.created_at]))
  return (a, b) => (created.get(a)! === created.get(b)! ? (a < b ? -1 : 1) : created.get(a)! < created.get(b)! ? -1 : 1)
}
