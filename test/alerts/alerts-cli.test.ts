/** Alerts through `process`, as a user runs it: against the fake Heroku API and a real loopback webhook. */
import {fileURLToPath} from 'node:url'

import {runCommand} from '@oclif/test'
import {expect} from 'chai'
import {type Kysely, sql} from 'kysely'

import {addDays, todayUtc, yesterdayUtc} from '../../src/lib/dates.js'
import type {Database} from '../../src/lib/db/schema.js'
import {generateEvents} from '../fake-heroku/events.js'
import type {FakeHeroku} from '../fake-heroku/server.js'
import {cliEnv, runCli, startCli} from '../support/cli.js'
import {describeOnEngines} from '../support/db.js'
import {freePort, useEnv, waitForRun} from '../support/helpers.js'
import {type JobSuite, useJobSuite} from '../support/job-suite.js'
import {type TestWebhook, WEBHOOK_TOKEN, startWebhook} from '../support/webhook.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const run = (args: string) => runCommand(args, {root: ROOT})
const DAY = addDays(todayUtc(), -3)

describeOnEngines('alerts through process (in-process, and real processes)', function (engine) {
  this.timeout(60_000)
  let fake: FakeHeroku
  let db: Kysely<Database>
  let dbVars: JobSuite['dbVars']
  let hook: TestWebhook

  useJobSuite((suite) => ({fake, db, dbVars} = suite), {
    fake: {events: {[DAY]: generateEvents(DAY, 30), [yesterdayUtc()]: generateEvents(yesterdayUtc(), 2)}},
    engine: engine.name,
  })

  before(async () => {
    hook = await startWebhook()
  })

  after(() => hook.close())

  beforeEach(async () => {
    await hook.up()
    hook.reset()
    await sql`TRUNCATE audit_alerts RESTART IDENTITY`.execute(db)
  })

  useEnv(() => ({
    ...dbVars,
    HEROKU_API_URL: fake.url,
    HEROKU_API_TOKEN: fake.token,
    HEROKU_ACCOUNT_ID: 'acme',
    HEROKU_API_MAX_ATTEMPTS: '1',
    LOG_LEVEL: undefined,
    ALERT_WEBHOOK_URL: hook.url,
    HEALTH_REQUIRE_YESTERDAY_AFTER: undefined,
    HEROKU_APP_NAME: undefined,
  }))

  /** The API's error message quotes the webhook's URL and token: neither may reach the webhook, stdout or stderr. */
  const failOnce = () => fake.script([{kind: 'status', status: 503, message: `upstream down (${hook.url} ${WEBHOOK_TOKEN} ${fake.token})`}], {day: DAY})

  function expectNoSecret(...texts: string[]): void {
    for (const text of texts) {
      for (const secret of [WEBHOOK_TOKEN, encodeURIComponent(WEBHOOK_TOKEN), new URL(hook.url).pathname, fake.token]) {
        expect(text).not.to.include(secret)
      }
    }
  }

  it('a FAILED day is announced once with its attempt and reason, and its recovery; the exit codes are as without alerts', async () => {
    failOnce()
    const failed = await run(`process --date ${DAY}`)
    expect(failed.error?.oclif?.exit).to.equal(1)
    expect(hook.texts()).to.have.length(1)
    expect(hook.texts()[0]).to.match(new RegExp(`^audit-logger: ${DAY} ended FAILED on attempt 1: .*503.*upstream down \\(\\S*\\[redacted\\] \\[redacted\\] \\[redacted\\]\\)`))
    expect(failed.stderr).to.include(`alerts: sent 1 to the alert webhook (${hook.host})`)
    expectNoSecret(failed.stdout, failed.stderr, ...hook.texts())

    const recovered = await run(`process --date ${DAY}`)
    expect(recovered.error).to.equal(undefined)
    expect(hook.texts()).to.have.length(2)
    expect(hook.texts()[1]).to.equal(`audit-logger: ${DAY} recovered: SUCCESS on attempt 2 with 30 event(s) (it was FAILED)`)
    // A done day asked again: nothing new.
    await run(`process --date ${DAY} --force`)
    expect(hook.texts()).to.have.length(2)
  })

  it('a webhook that is down: one warn line, the exit code unchanged, the alert kept and sent by the next run', async () => {
    failOnce()
    await hook.down()
    const failed = await run(`process --date ${DAY}`)
    expect(failed.error?.oclif?.exit).to.equal(1)
    const warns = failed.stderr.split('\n').filter((line) => line.includes('alerts:'))
    expect(warns).to.have.length(1)
    expect(warns[0]).to.match(new RegExp(`alerts: could not send to the alert webhook \\(${hook.host}\\): could not be reached \\(\\w+\\); 1 alert\\(s\\) kept for the next run`))
    expect(failed.stderr, 'no stack trace').not.to.match(/^\s+at .+:\d+:\d+\)?$/m)
    expectNoSecret(failed.stdout, failed.stderr)

    // Still down: a day that succeeds exits 0 all the same (and announces its recovery, kept too).
    const ok = await run(`process --date ${DAY}`)
    expect(ok.error, ok.stderr).to.equal(undefined)
    expect(ok.stderr).to.match(/2 alert\(s\) kept for the next run/)

    await hook.up()
    const later = await run(`process --date ${yesterdayUtc()}`)
    expect(later.error).to.equal(undefined)
    expect(hook.texts().map((text) => text.replace(/: .*/, ''))).to.deep.equal(['audit-logger', 'audit-logger'])
    expect(hook.texts()[0]).to.match(new RegExp(`${DAY} ended FAILED on attempt 1`))
    expect(hook.texts()[1]).to.match(new RegExp(`${DAY} recovered`))
  })

  it('a webhook answering 503 or 429: the exit code is unchanged', async () => {
    hook.mode = {kind: 'status', status: 503, body: 'try later'}
    failOnce()
    const failed = await run(`process --date ${DAY}`)
    expect(failed.error?.oclif?.exit).to.equal(1)
    expect(failed.stderr, failed.stderr).to.match(/alerts: could not send to the alert webhook \(127\.0\.0\.1:\d+\): answered HTTP 503: try later; 1 alert\(s\) kept/)
    hook.mode = {kind: 'status', status: 429, body: 'rate_limited'}
    const ok = await run(`process --date ${DAY}`)
    expect(ok.error).to.equal(undefined)
    expect(await sql<{n: number}>`SELECT count(*)::int AS n FROM audit_alerts WHERE sent_at IS NULL`.execute(db)).to.have.nested.property('rows[0].n', 2)
  })

  it('yesterday not SUCCESS past HEALTH_REQUIRE_YESTERDAY_AFTER: announced once at the end of a run; not while the hour is ahead', async () => {
    // useEnv puts these back after the test.
    process.env.HEALTH_REQUIRE_YESTERDAY_AFTER = '23'
    process.env.HEROKU_APP_NAME = 'acme-audit'
    const early = new Date().getUTCHours() < 23
    await run(`process --date ${DAY}`)
    if (early) expect(hook.texts(), 'the hour is ahead').to.deep.equal([])
    process.env.HEALTH_REQUIRE_YESTERDAY_AFTER = '0'
    await run(`process --date ${DAY}`)
    await run(`process --date ${DAY}`)
    expect(hook.texts()).to.deep.equal([`audit-logger (acme-audit): yesterday (${yesterdayUtc()}) is still not SUCCESS after 00:00 UTC: it is MISSING (no record)`])
  })

  it('without ALERT_WEBHOOK_URL: nothing recorded, nothing sent', async () => {
    delete process.env.ALERT_WEBHOOK_URL
    process.env.HEALTH_REQUIRE_YESTERDAY_AFTER = '0'
    failOnce()
    const failed = await run(`process --date ${DAY}`)
    expect(failed.error?.oclif?.exit).to.equal(1)
    expect(failed.stderr).not.to.include('alerts:')
    expect(hook.requests).to.equal(0)
    expect(await sql<{n: number}>`SELECT count(*)::int AS n FROM audit_alerts`.execute(db)).to.have.nested.property('rows[0].n', 0)
  })

  it('a malformed ALERT_WEBHOOK_URL is one line, exit 2, quoting no part of its path', async () => {
    for (const [url, line] of [
      [`ftp://hooks.example.com/services/${encodeURIComponent(WEBHOOK_TOKEN)}`, 'ALERT_WEBHOOK_URL must be an http(s) URL (it starts with ftp://)'],
      [`hooks.example.com/${encodeURIComponent(WEBHOOK_TOKEN)}`, 'ALERT_WEBHOOK_URL is not a valid URL'],
      [`https://user:${encodeURIComponent(WEBHOOK_TOKEN)}@hooks.example.com/x`, 'ALERT_WEBHOOK_URL must not hold a user name or password (user:password@host)'],
    ]) {
      process.env.ALERT_WEBHOOK_URL = url
      const result = await run(`process --date ${DAY}`)
      expect(result.error?.oclif?.exit, url).to.equal(2)
      const lines = result.stderr.split('\n').filter(Boolean)
      expect(lines, result.stderr).to.have.length(1)
      expect(lines[0]).to.include(line)
      expectNoSecret(result.stdout, result.stderr)
    }
  })

  describe('real processes', () => {
    const env = () => cliEnv({
      ...dbVars,
      HEROKU_API_URL: fake.url,
      HEROKU_API_TOKEN: fake.token,
      HEROKU_ACCOUNT_ID: 'acme',
      HEROKU_API_MAX_ATTEMPTS: '1',
      ALERT_WEBHOOK_URL: hook.url,
    })

    it('process: the alert is sent, and the process ends as soon as the run does', async () => {
      failOnce()
      const started = Date.now()
      const result = await runCli(['process', '--date', DAY], env())
      expect(result.code, result.stderr).to.equal(1)
      expect(hook.texts()).to.have.length(1)
      expect(hook.texts()[0]).to.match(new RegExp(`^audit-logger: ${DAY} ended FAILED on attempt 1: `))
      expectNoSecret(result.stdout, result.stderr, hook.texts()[0])
      // No webhook connection kept alive holds the process (an idle keep-alive would add ~4 s).
      expect(Date.now() - started).to.be.below(15_000)
    })

    it('process stopped by SIGTERM: the day it failed is recorded as an alert at once, and the next run sends it', async () => {
      fake.script([{kind: 'delay', ms: 10_000}], {day: DAY})
      const running = startCli(['process', '--date', DAY], env())
      await waitForRun('the day asked for', running, () => fake.requestsForDay(DAY).length >= 1)
      running.kill('SIGTERM')
      const stopped = await running.result
      expect(stopped.code, stopped.stderr).to.equal(1)
      expect(hook.texts(), 'a run stopped by a signal leaves at once, sending nothing').to.have.length(0)
      const kept = await sql<{key: string; sent: boolean}>`SELECT key, sent_at IS NOT NULL AS sent FROM audit_alerts`.execute(db)
      expect(kept.rows).to.deep.equal([{key: `day-failed:${DAY}:1`, sent: false}])
      const next = await runCli(['process', '--date', yesterdayUtc()], env())
      expect(next.code, next.stderr).to.equal(0)
      expect(hook.texts()).to.have.length(1)
      expect(hook.texts()[0]).to.match(new RegExp(`^audit-logger: ${DAY} ended FAILED on attempt 1: `))
    })

    it('serve: announces yesterday past the hour; SIGTERM cuts a hanging webhook short and exits 0, the alert kept', async () => {
      const port = await freePort()
      const server = startCli(['serve'], {...env(), PORT: String(port), HEALTH_REQUIRE_YESTERDAY_AFTER: '0'})
      await waitForRun('the yesterday alert', server, () => hook.messages.length === 1)
      expect(hook.texts()).to.deep.equal([`audit-logger: yesterday (${yesterdayUtc()}) is still not SUCCESS after 00:00 UTC: it is MISSING (no record)`])
      server.kill('SIGTERM')
      const first = await server.result
      expect(first.code, first.stderr).to.equal(0)
      expectNoSecret(first.stdout, first.stderr)

      hook.mode = {kind: 'slow'}
      await sql`UPDATE audit_alerts SET sent_at = NULL`.execute(db)
      const again = startCli(['serve'], {...env(), PORT: String(port)})
      await waitForRun('the webhook request', again, () => hook.requests === 2)
      const stopping = Date.now()
      again.kill('SIGTERM')
      const second = await again.result
      expect(second.code, second.stderr).to.equal(0)
      expect(Date.now() - stopping).to.be.below(5000)
      const pending = await sql<{n: number}>`SELECT count(*)::int AS n FROM audit_alerts WHERE sent_at IS NULL`.execute(db)
      expect(pending.rows[0].n).to.equal(1)
    })
  })
})
