import {expect} from 'chai'
import type {Kysely} from 'kysely'
import {sql} from 'kysely'

import {claimDay, cleanupStale, findDay} from '../../src/lib/db/audit-log-repository.js'
import type {Database} from '../../src/lib/db/schema.js'
import {type AuditClientOptions, createAuditClient} from '../../src/lib/heroku/client.js'
import {type ProcessDayOptions, exitCodeFor, processDay} from '../../src/lib/processing/process-day.js'
import {CaptureStream, captureLogger} from '../support/capture.js'
import {clearLog, describeOnEngines} from '../support/db.js'
import {useJobSuite} from '../support/job-suite.js'
import type {FakeHeroku} from '../fake-heroku/server.js'
import {generateEvents} from '../fake-heroku/events.js'

const DAY = '2025-09-28'

describeOnEngines('processDay: claim → heartbeat → fetch → write → finish', (engine) => {
  let fake: FakeHeroku
  let db: Kysely<Database>

  useJobSuite((suite) => ({fake, db} = suite), {fake: {events: {[DAY]: generateEvents(DAY, 2500)}}, open: engine.open, rateLimitRemaining: 4500})

  beforeEach(() => {
    fake.setEvents(DAY, generateEvents(DAY, 2500))
  })

  // Quick retries, so a fault sequence plays out in milliseconds.
  function client(overrides: Partial<AuditClientOptions> = {}) {
    return createAuditClient({
      apiUrl: fake.url,
      token: fake.token,
      accountId: 'acme',
      baseDelayMs: 5,
      maxDelayMs: 20,
      attemptTimeoutMs: 500,
      maxAttempts: 3,
      ...overrides,
    })
  }

  function run(options: Partial<ProcessDayOptions> = {}, clientOptions: Partial<AuditClientOptions> = {}) {
    const output = new CaptureStream()
    const logger = captureLogger()
    const done = processDay(
      {db, client: client(clientOptions), output, logger},
      {day: DAY, format: 'text', force: false, staleAfterMinutes: 15, heartbeatIntervalMs: 50, ...options},
    )
    return {output, logger, done}
  }

  it('fetches every page, writes every event once, and records SUCCESS', async () => {
    const {output, done} = run()
    const result = await done
    expect(result).to.include({outcome: 'success', events: 2500, pages: 3, attempt: 1})
    const ids = output.lines().map((line) => /id=(\S+)$/.exec(line)?.[1])
    expect(new Set(ids).size).to.equal(2500)
    expect(ids[0]).to.equal(generateEvents(DAY, 1)[0].id)
    const row = await findDay(db, DAY)
    expect(row).to.include({status: 'SUCCESS', events_count: 2500, error_message: null, attempts: 1})
    expect(row?.finished_at).to.be.instanceOf(Date)
    expect(exitCodeFor([result.outcome])).to.equal(0)
  })

  it('writes one JSON object per event with --format json', async () => {
    const {output, done} = run({format: 'json'})
    await done
    const events = output.lines().map((line) => JSON.parse(line))
    expect(events).to.have.length(2500)
    expect(events[0]).to.deep.equal(generateEvents(DAY, 2500)[0])
  })

  it('skips a SUCCESS day without calling the API, and fetches it again with force', async () => {
    await run().done
    fake.reset()
    const skipped = await run().done
    expect(skipped).to.include({outcome: 'done', events: 2500})
    expect(skipped.message).to.match(/already SUCCESS.*--force/)
    expect(fake.requests).to.have.length(0)

    const forced = run({force: true})
    expect(await forced.done).to.include({outcome: 'success', attempt: 2})
    expect(forced.output.lines()).to.have.length(2500)
  })

  it('leaves a day held by a live run alone', async () => {
    await claimDay(db, {day: DAY, token: crypto.randomUUID(), staleAfterMinutes: 15, force: false})
    const {output, done} = run()
    const result = await done
    expect(result.outcome).to.equal('busy')
    expect(result.message).to.match(/being processed by another run/)
    expect(output.text).to.equal('')
    expect(fake.requests).to.have.length(0)
  })

  it('records FAILED, writes nothing, and retries the day when asked again', async () => {
    fake.script([{kind: 'status', status: 503}, {kind: 'status', status: 503}, {kind: 'status', status: 503}])
    const failed = run()
    const result = await failed.done
    expect(result.outcome).to.equal('failed')
    expect(result.message).to.match(/503.*gave up after 3 attempts/)
    expect(failed.output.text).to.equal('')
    expect(await findDay(db, DAY)).to.include({status: 'FAILED', events_count: 0})
    expect(exitCodeFor([result.outcome])).to.equal(1)

    const retried = await run().done
    expect(retried).to.include({outcome: 'success', attempt: 2})
  })

  it('writes nothing when a later page fails: no partial day', async () => {
    // Page 1 answers, then page 2 fails for good.
    fake.script([{kind: 'delay', ms: 0}, {kind: 'status', status: 401}])
    const {output, done} = run()
    const result = await done
    expect(result.outcome).to.equal('failed')
    expect(output.text).to.equal('')
    expect((await findDay(db, DAY))?.error_message).to.match(/401 unauthorized/)
  })

  it('records ERROR, never SUCCESS with 0 events, for a broken body', async () => {
    for (const kind of ['truncated-json', 'not-array'] as const) {
      await clearLog(db)
      fake.script([{kind}])
      const {output, done} = run()
      const result = await done
      expect(result.outcome, kind).to.equal('error')
      expect(output.text).to.equal('')
      const row = await findDay(db, DAY)
      expect(row?.status).to.equal('ERROR')
      expect(row?.error_message).to.match(/malformed response/)
    }
  })

  it('keeps the heartbeat fresh while the fetch is slow', async () => {
    fake.script([{kind: 'delay', ms: 400}])
    const {done} = run({heartbeatIntervalMs: 50})
    await new Promise((resolve) => setTimeout(resolve, 250))
    const during = await sql<{age: number; since_start: number}>`
      SELECT extract(epoch FROM now() - heartbeat_at)::float AS age, extract(epoch FROM heartbeat_at - started_at)::float AS since_start
      FROM audit_events_log WHERE process_date = ${DAY}`.execute(db)
    expect(during.rows[0].since_start, 'heartbeat moved after the claim').to.be.greaterThan(0)
    expect(during.rows[0].age).to.be.lessThan(1)
    expect((await done).outcome).to.equal('success')
  })

  it('takes over a stale PROCESSING record and counts the attempt', async () => {
    await claimDay(db, {day: DAY, token: crypto.randomUUID(), staleAfterMinutes: 15, force: false})
    await sql`UPDATE audit_events_log SET heartbeat_at = now() - interval '16 minutes'`.execute(db)
    const {logger, done} = run()
    expect(await done).to.include({outcome: 'success', attempt: 2})
    expect(logger.text()).to.match(/took over a PROCESSING record/)
  })

  describe('the fence (scenario 6)', () => {
    it('a run whose claim was cleaned up and re-claimed finishes nothing, writes nothing, and leaves the new row alone', async () => {
      // A is slow; meanwhile its row goes stale, is cleaned up, and B claims the day.
      fake.script([{kind: 'delay', ms: 600}])
      const a = run({heartbeatIntervalMs: 60_000})
      await new Promise((resolve) => setTimeout(resolve, 150))
      await sql`UPDATE audit_events_log SET heartbeat_at = now() - interval '20 minutes'`.execute(db)
      expect(await cleanupStale(db, 15)).to.have.length(1)
      const b = await claimDay(db, {day: DAY, token: crypto.randomUUID(), staleAfterMinutes: 15, force: false})
      expect(b.claimed).to.equal(true)
      const before = await findDay(db, DAY)

      const result = await a.done
      expect(result.outcome).to.equal('lost')
      expect(result.message).to.match(/lost the claim/)
      expect(exitCodeFor([result.outcome])).to.equal(1)
      expect(a.output.text, 'no duplicate day written').to.equal('')
      expect(await findDay(db, DAY)).to.deep.equal(before)
    })

    it('a run whose record is deleted while it fetches stops early on its heartbeat', async () => {
      fake.script([{kind: 'hang'}])
      const a = run({heartbeatIntervalMs: 30}, {attemptTimeoutMs: 10_000})
      await new Promise((resolve) => setTimeout(resolve, 100))
      await sql`DELETE FROM audit_events_log`.execute(db)
      const result = await a.done
      expect(result.outcome).to.equal('lost')
      expect(await findDay(db, DAY)).to.equal(undefined)
    })
  })

  it('waits as a 429 asks, retries, and ends SUCCESS (scenario 11)', async () => {
    const waits: number[] = []
    fake.script([{kind: 'status', status: 429, retryAfter: '3'}])
    const {done} = run({}, {sleep: async (ms) => void waits.push(ms)})
    expect(await done).to.include({outcome: 'success', events: 2500})
    expect(waits).to.deep.equal([3000])
  })

  it('fails the day at once, without sleeping, when a 429 asks for more than the cap (scenario 11)', async () => {
    const waits: number[] = []
    fake.script([{kind: 'status', status: 429, retryAfter: '3600'}])
    const {done} = run({}, {sleep: async (ms) => void waits.push(ms), retryAfterCapMs: 60_000})
    const result = await done
    expect(result.outcome).to.equal('failed')
    expect(result.message).to.match(/rate_limit.*asked to wait 3600 s, more than the 60 s/)
    expect(waits).to.deep.equal([])
    expect((await findDay(db, DAY))?.error_message).to.match(/run again later/)
  })

  it('ends FAILED, not in an endless loop, when Next-Range repeats (scenario 12)', async () => {
    fake.script([{kind: 'repeat-next-range'}])
    const {output, done} = run()
    const result = await done
    expect(result.outcome).to.equal('failed')
    expect(result.message).to.match(/repeated the paging range/)
    expect(fake.requests.length).to.be.at.most(3)
    expect(output.text).to.equal('')
  })

  it('records FAILED when cancelled by a signal', async () => {
    fake.script([{kind: 'hang'}])
    const cancel = new AbortController()
    const {done} = run({signal: cancel.signal}, {attemptTimeoutMs: 10_000})
    setTimeout(() => cancel.abort(), 100)
    const result = await done
    expect(result.outcome).to.equal('failed')
    expect(result.message).to.match(/cancelled/)
    expect((await findDay(db, DAY))?.status).to.equal('FAILED')
  })
})
