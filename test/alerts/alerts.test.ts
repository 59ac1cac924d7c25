/** Alerts on both engines, against a real loopback webhook: raised once, kept until sent, bounded, never a secret. */
import {expect} from 'chai'
import {type Kysely, sql} from 'kysely'

import {
  ALERT_KEYS,
  MAX_ALERT_TEXT,
  countPending,
  dayStatuses,
  flushAlerts,
  raiseAlert,
  raiseDayAlerts,
  raiseYesterdayAlert,
} from '../../src/lib/alerts/alerts.js'
import {startAlertTimer} from '../../src/lib/alerts/timer.js'
import {type AlertWebhook, type AlertsConfig, loadConfig} from '../../src/lib/config.js'
import type {Database} from '../../src/lib/db/schema.js'
import {yesterdayUtc} from '../../src/lib/dates.js'
import {captureLogger} from '../support/capture.js'
import {clearLog, describeOnEngines, insertRecord} from '../support/db.js'
import {type TestWebhook, WEBHOOK_TOKEN, startWebhook} from '../support/webhook.js'

const DAY = '2026-11-30'
const API_TOKEN = 'HRKU-alerts-test-token-0123456789abcdef'

interface AlertRow {
  key: string
  text: string
  sent_at: Date | null
  attempts: number
  last_error: string | null
}

async function alertRows(db: Kysely<Database>): Promise<AlertRow[]> {
  const result = await sql<AlertRow>`SELECT key, text, sent_at, attempts, last_error FROM audit_alerts ORDER BY created_at, id`.execute(db)
  return result.rows
}

/** Every secret of the suite, in every form it could be printed in. */
function secretForms(hook: TestWebhook): string[] {
  return [WEBHOOK_TOKEN, encodeURIComponent(WEBHOOK_TOKEN), hook.url, new URL(hook.url).pathname, API_TOKEN]
}

function expectNoSecret(text: string, hook: TestWebhook): void {
  for (const secret of secretForms(hook)) expect(text, `no ${secret} in the text`).not.to.include(secret)
}

describeOnEngines('alerts', (engine) => {
  let db: Kysely<Database>
  let hook: TestWebhook
  let webhook: AlertWebhook
  let alerts: AlertsConfig

  before(async () => {
    db = await engine.open()
    hook = await startWebhook()
    // As a command reads it: validated, and the URL's secret parts registered.
    const config = loadConfig({ALERT_WEBHOOK_URL: hook.url, HEROKU_API_TOKEN: API_TOKEN, HEALTH_REQUIRE_YESTERDAY_AFTER: '6'})
    alerts = config.alerts
    webhook = config.alerts.webhook!
  })

  after(async () => {
    await hook.close()
    await db.destroy()
  })

  beforeEach(async () => {
    await hook.up()
    hook.reset()
    await clearLog(db)
    await sql`TRUNCATE audit_alerts RESTART IDENTITY`.execute(db)
  })

  const flush = (logger = captureLogger(), options: {timeoutMs?: number; maxMessages?: number} = {}) => flushAlerts({db, webhook, logger, ...options})

  describe('raising', () => {
    it('records nothing without a webhook, and each key once', async () => {
      expect(await raiseAlert(db, {key: 'day-failed:2026-11-30:1', text: 'x'}, undefined)).to.equal('off')
      expect(await alertRows(db)).to.deep.equal([])
      expect(await raiseAlert(db, {key: 'day-failed:2026-11-30:1', text: 'first'}, webhook)).to.equal('recorded')
      expect(await raiseAlert(db, {key: 'day-failed:2026-11-30:1', text: 'second'}, webhook)).to.equal('duplicate')
      const rows = await alertRows(db)
      expect(rows).to.have.length(1)
      expect(rows[0]).to.include({key: 'day-failed:2026-11-30:1', text: 'first', sent_at: null, attempts: 0, last_error: null})
    })

    it('keeps a text on one line, without control characters or secrets, and bounded', async () => {
      const text = `boom\n\u001B[31mred ${WEBHOOK_TOKEN} ${encodeURIComponent(WEBHOOK_TOKEN)} ${hook.url} ${API_TOKEN} ${'x'.repeat(10_000)}`
      await raiseAlert(db, {key: 'k:1', text}, webhook)
      const [row] = await alertRows(db)
      expect(row.text).to.match(/^boom \\x1B\[31mred (?:\S*\[redacted\] ){4}x+…$/)
      expect(row.text.length).to.equal(MAX_ALERT_TEXT)
      expectNoSecret(row.text, hook)
    })
  })

  describe('days', () => {
    it('a FAILED or ERROR day: once per attempt, naming the day, status, attempt and the recorded reason', async () => {
      await insertRecord(db, {day: DAY, status: 'FAILED', attempts: 3, error: 'HTTP 503 from the API after 5 attempts (id: unavailable)'})
      const result = {day: DAY, outcome: 'failed', attempt: 3, message: 'the same'}
      expect(await raiseDayAlerts(db, webhook, new Map(), [result])).to.equal(1)
      // Seen again (another run reporting the same attempt): not again.
      expect(await raiseDayAlerts(db, webhook, new Map(), [result])).to.equal(0)
      await sql`UPDATE audit_events_log SET status = 'ERROR', attempts = 4, error_message = 'malformed page' WHERE process_date = ${DAY}`.execute(db)
      expect(await raiseDayAlerts(db, webhook, new Map(), [{day: DAY, outcome: 'error', attempt: 4}])).to.equal(1)
      const rows = await alertRows(db)
      expect(rows.map((r) => [r.key, r.text])).to.deep.equal([
        [ALERT_KEYS.dayFailed(DAY, 3), `${DAY} ended FAILED on attempt 3: HTTP 503 from the API after 5 attempts (id: unavailable)`],
        [ALERT_KEYS.dayFailed(DAY, 4), `${DAY} ended ERROR on attempt 4: malformed page`],
      ])
      expect(rows[0].key).to.equal('day-failed:2026-11-30:3')
    })

    it('a day FAILED or ERROR before the run and SUCCESS after it: its recovery, once; a plain or forced SUCCESS: nothing', async () => {
      const other = '2026-11-29'
      const forced = '2026-11-28'
      await insertRecord(db, {day: DAY, status: 'SUCCESS', attempts: 2, events: 1234})
      await insertRecord(db, {day: other, status: 'SUCCESS', attempts: 1, events: 5})
      await insertRecord(db, {day: forced, status: 'SUCCESS', attempts: 3, events: 7})
      const before = new Map([[DAY, 'FAILED' as const], [forced, 'SUCCESS' as const]])
      const results = [DAY, other, forced].map((day) => ({day, outcome: 'success'}))
      expect(await raiseDayAlerts(db, webhook, before, results)).to.equal(1)
      expect(await raiseDayAlerts(db, webhook, before, results)).to.equal(0)
      expect((await alertRows(db)).map((r) => [r.key, r.text])).to.deep.equal([
        ['day-recovered:2026-11-30:2', `${DAY} recovered: SUCCESS on attempt 2 with 1234 event(s) (it was FAILED)`],
      ])
    })

    it('dayStatuses reads the records of a range', async () => {
      await insertRecord(db, {day: DAY, status: 'ERROR'})
      await insertRecord(db, {day: '2026-12-05', status: 'SUCCESS'})
      expect([...(await dayStatuses(db, {from: '2026-11-01', to: DAY}))]).to.deep.equal([[DAY, 'ERROR']])
    })

    it('raises nothing without a webhook', async () => {
      await insertRecord(db, {day: DAY, status: 'FAILED', attempts: 1, error: 'x'})
      expect(await raiseDayAlerts(db, undefined, new Map(), [{day: DAY, outcome: 'failed', attempt: 1}])).to.equal(0)
      expect(await alertRows(db)).to.deep.equal([])
    })
  })

  describe('yesterday past HEALTH_REQUIRE_YESTERDAY_AFTER', () => {
    const beforeHour = new Date('2026-12-01T05:59:59Z')
    const afterHour = new Date('2026-12-01T06:00:00Z')

    it('not before the hour; once past it; never when yesterday is SUCCESS', async () => {
      expect(yesterdayUtc(afterHour)).to.equal(DAY)
      expect(await raiseYesterdayAlert(db, alerts, beforeHour)).to.equal('not-due')
      expect(await alertRows(db)).to.deep.equal([])
      expect(await raiseYesterdayAlert(db, alerts, afterHour)).to.equal('recorded')
      expect(await raiseYesterdayAlert(db, alerts, new Date('2026-12-01T18:00:00Z'))).to.equal('duplicate')
      expect((await alertRows(db)).map((r) => [r.key, r.text])).to.deep.equal([
        ['yesterday-missing:2026-11-30', `yesterday (${DAY}) is still not SUCCESS after 06:00 UTC: it is MISSING (no record)`],
      ])
      await insertRecord(db, {day: '2026-12-01', status: 'SUCCESS'})
      expect(await raiseYesterdayAlert(db, alerts, new Date('2026-12-02T07:00:00Z'))).to.equal('not-due')
    })

    it('names a FAILED yesterday with its reason; nothing without the setting or the webhook', async () => {
      await insertRecord(db, {day: DAY, status: 'FAILED', error: 'HTTP 503'})
      expect(await raiseYesterdayAlert(db, {...alerts, requireYesterdayAfterHour: undefined}, afterHour)).to.equal('not-due')
      expect(await raiseYesterdayAlert(db, {...alerts, webhook: undefined}, afterHour)).to.equal('off')
      expect(await raiseYesterdayAlert(db, alerts, afterHour)).to.equal('recorded')
      expect((await alertRows(db))[0].text).to.equal(`yesterday (${DAY}) is still not SUCCESS after 06:00 UTC: it is FAILED (HTTP 503)`)
    })
  })

  describe('sending', () => {
    it('posts {"text"} as JSON, oldest first, once; Slack markup from outside is escaped', async () => {
      await raiseAlert(db, {key: 'a', text: 'first <!channel> & co'}, webhook)
      await raiseAlert(db, {key: 'b', text: 'second'}, webhook)
      const logger = captureLogger()
      expect(await flush(logger)).to.deep.equal({sent: 2, pending: 0})
      expect(hook.texts()).to.deep.equal(['audit-logger: first &lt;!channel&gt; &amp; co', 'audit-logger: second'])
      expect(hook.messages[0].contentType).to.match(/^application\/json/)
      expect(hook.messages[0].path).to.equal(new URL(hook.url).pathname)
      expect(logger.lines).to.deep.equal([`info alerts: sent 2 to the alert webhook (${hook.host})`])
      const rows = await alertRows(db)
      expect(rows.every((r) => r.sent_at !== null && r.attempts === 1)).to.equal(true)
      expect(await flush()).to.deep.equal({sent: 0, pending: 0})
      expect(hook.messages).to.have.length(2)
    })

    it('names the deployment (HEROKU_APP_NAME) in each message', async () => {
      await raiseAlert(db, {key: 'a', text: 'hello'}, webhook)
      await flushAlerts({db, webhook, logger: captureLogger(), source: 'acme-audit'})
      expect(hook.texts()).to.deep.equal(['audit-logger (acme-audit): hello'])
    })

    it('a webhook that is down keeps the alert; the next flush sends it', async () => {
      await raiseAlert(db, {key: ALERT_KEYS.dayFailed(DAY, 1), text: `${DAY} ended FAILED on attempt 1: HTTP 503`}, webhook)
      await hook.down()
      const logger = captureLogger()
      const report = await flush(logger)
      expect(report).to.deep.include({sent: 0, pending: 1})
      // Refused; or, on a connection kept alive from before, closed.
      expect(report.error).to.match(/^could not be reached \((ECONNREFUSED|UND_ERR_SOCKET)\)$/)
      expect(logger.lines).to.deep.equal([
        `warn alerts: could not send to the alert webhook (${hook.host}): ${report.error}; 1 alert(s) kept for the next run`,
      ])
      expect(await alertRows(db)).to.deep.equal([
        {key: 'day-failed:2026-11-30:1', text: `${DAY} ended FAILED on attempt 1: HTTP 503`, sent_at: null, attempts: 1, last_error: report.error},
      ])
      await hook.up()
      expect(await flush()).to.deep.equal({sent: 1, pending: 0})
      expect(hook.texts()).to.deep.equal([`audit-logger: ${DAY} ended FAILED on attempt 1: HTTP 503`])
      const [row] = await alertRows(db)
      expect(row).to.include({attempts: 2, last_error: null})
      expect(row.sent_at).to.be.instanceOf(Date)
    })

    it('an alert refused for what it says (400, 413): passed over so the others still go, given up after three refusals', async () => {
      await raiseAlert(db, {key: 'a', text: 'one'}, webhook)
      await raiseAlert(db, {key: 'b', text: 'two'}, webhook)
      hook.mode = {kind: 'status', status: 400, body: 'invalid_payload'}
      const logger = captureLogger()
      expect(await flush(logger)).to.deep.equal({sent: 0, pending: 2})
      expect(hook.requests, 'the first refusal does not stop the flush').to.equal(2)
      expect(logger.lines[0]).to.equal(`warn alerts: the alert webhook (${hook.host}) refused one alert (answered HTTP 400: invalid_payload): kept for the next run; the others still go`)
      await flush()
      const third = captureLogger()
      expect(await flush(third)).to.deep.equal({sent: 0, pending: 0})
      expect(third.lines[0]).to.match(/given up after 3 refusals \(it stays in audit_alerts, key a\)$/)
      const rows = await alertRows(db)
      expect(rows.map((r) => [r.attempts, r.last_error])).to.deep.equal([
        [3, 'given up after 3 refusals: answered HTTP 400: invalid_payload'],
        [3, 'given up after 3 refusals: answered HTTP 400: invalid_payload'],
      ])
      expect(hook.texts()).to.deep.equal([])
    })

    for (const status of [503, 500, 429, 404]) {
      it(`an answer ${status} keeps the alert, with what the webhook said, and stops the flush`, async () => {
        await raiseAlert(db, {key: 'a', text: 'one'}, webhook)
        await raiseAlert(db, {key: 'b', text: 'two'}, webhook)
        hook.mode = {kind: 'status', status, body: 'rate_limited\r\nsecond line', headers: {'Retry-After': '30'}}
        const logger = captureLogger()
        const report = await flush(logger)
        expect(report).to.deep.equal({sent: 0, pending: 2, error: `answered HTTP ${status}: rate_limited second line`})
        expect(hook.requests, 'the first failure stops the flush').to.equal(1)
        expect((await alertRows(db)).map((r) => [r.attempts, r.last_error])).to.deep.equal([
          [1, `answered HTTP ${status}: rate_limited second line`],
          [0, null],
        ])
        hook.mode = {kind: 'ok'}
        expect(await flush()).to.deep.equal({sent: 2, pending: 0})
      })
    }

    it('a webhook that never answers costs the timeout, no more; the alert is kept', async function () {
      this.timeout(10_000)
      await raiseAlert(db, {key: 'a', text: 'one'}, webhook)
      hook.mode = {kind: 'slow'}
      const started = Date.now()
      const report = await flush(captureLogger(), {timeoutMs: 300})
      const took = Date.now() - started
      expect(report).to.deep.equal({sent: 0, pending: 1, error: 'did not answer within 0.3 s'})
      expect(took).to.be.within(250, 3000)
      hook.mode = {kind: 'slow', ms: 50}
      expect(await flush(captureLogger(), {timeoutMs: 2000})).to.deep.equal({sent: 1, pending: 0})
    })

    it('reads a few KB of an answer at most, and shows it as one safe line without secrets', async () => {
      await raiseAlert(db, {key: 'a', text: 'one'}, webhook)
      hook.mode = {kind: 'status', status: 502, body: `\u001B]0;owned\u0007 ${WEBHOOK_TOKEN} ${hook.url} ${'y'.repeat(5_000_000)}`}
      const logger = captureLogger()
      const report = await flush(logger)
      expect(report.error).to.match(/^answered HTTP 502: \\x1B\]0;owned\\x07 (?:\S*\[redacted\] ){2}y+…$/)
      expect(report.error!.length).to.be.below(250)
      const [row] = await alertRows(db)
      expect(row.last_error).to.equal(report.error)
      expectNoSecret(logger.text(), hook)
    })

    it('a redirect is not followed', async () => {
      await raiseAlert(db, {key: 'a', text: 'one'}, webhook)
      hook.mode = {kind: 'status', status: 302, headers: {Location: 'http://127.0.0.1:1/elsewhere'}}
      expect((await flush()).error).to.equal('answered HTTP 302 (a redirect, not followed)')
    })

    it('many waiting (a long outage): a bounded number of messages, the last one summing up the rest, all then sent', async () => {
      for (let n = 1; n <= 25; n++) await raiseAlert(db, {key: `k:${String(n).padStart(2, '0')}`, text: `alert ${n}`}, webhook)
      expect(await flush(captureLogger(), {maxMessages: 5})).to.deep.equal({sent: 25, pending: 0})
      const texts = hook.texts()
      expect(texts).to.have.length(5)
      expect(texts.slice(0, 4)).to.deep.equal(['audit-logger: alert 1', 'audit-logger: alert 2', 'audit-logger: alert 3', 'audit-logger: alert 4'])
      expect(texts[4].split('\n')).to.deep.equal(['audit-logger: …and 21 more alert(s):', ...Array.from({length: 21}, (_, k) => `• alert ${k + 5}`)])
      expect(await countPending(db)).to.equal(0)
    })

    it('a summary of very many stays within Slack’s bounds', async () => {
      for (let n = 1; n <= 200; n++) await raiseAlert(db, {key: `k:${n}`, text: `alert ${n} ${'z'.repeat(200)}`}, webhook)
      await flush(captureLogger(), {maxMessages: 2})
      const texts = hook.texts()
      expect(texts).to.have.length(2)
      expect(texts[1].length).to.be.below(4000)
      expect(texts[1]).to.match(/^audit-logger: …and 199 more alert\(s\):\n/)
      expect(texts[1]).to.match(/\(\d+ not shown: see the audit_alerts table\)$/)
    })

    it('two flushes at once send each alert once', async () => {
      for (let n = 1; n <= 4; n++) await raiseAlert(db, {key: `k:${n}`, text: `alert ${n}`}, webhook)
      hook.mode = {kind: 'slow', ms: 100}
      const reports = await Promise.all([flush(), flush()])
      expect(reports.reduce((sum, r) => sum + r.sent, 0)).to.equal(4)
      expect(hook.texts().toSorted()).to.deep.equal(['audit-logger: alert 1', 'audit-logger: alert 2', 'audit-logger: alert 3', 'audit-logger: alert 4'])
    })

    it('does nothing without a webhook', async () => {
      await raiseAlert(db, {key: 'a', text: 'one'}, webhook)
      expect(await flushAlerts({db, webhook: undefined, logger: captureLogger()})).to.deep.equal({sent: 0, pending: 0})
      expect(hook.requests).to.equal(0)
    })
  })

  describe("serve's timer", () => {
    it('raises the yesterday alert and sends it; stop() cuts a request in flight short', async function () {
      this.timeout(10_000)
      const logger = captureLogger()
      const timer = startAlertTimer({db, alerts, logger, clock: () => new Date('2026-12-01T07:00:00Z'), firstDelayMs: 60_000, intervalMs: 60_000})
      await timer.round()
      expect(hook.texts()).to.deep.equal([`audit-logger: yesterday (${DAY}) is still not SUCCESS after 06:00 UTC: it is MISSING (no record)`])
      await timer.round()
      expect(hook.texts(), 'once per day').to.have.length(1)
      await raiseAlert(db, {key: 'slow', text: 'slow one'}, webhook)
      hook.mode = {kind: 'slow'}
      const round = timer.round()
      while (hook.requests < 2) await new Promise((resolve) => setTimeout(resolve, 20))
      const started = Date.now()
      await timer.stop()
      await round
      expect(Date.now() - started).to.be.below(2000)
      expect(await countPending(db)).to.equal(1)
    })

    it('without a webhook: no rounds', async () => {
      const timer = startAlertTimer({db, alerts: {...alerts, webhook: undefined}, logger: captureLogger(), clock: () => new Date('2026-12-01T07:00:00Z')})
      await timer.round()
      await timer.stop()
      expect(await alertRows(db)).to.deep.equal([])
    })
  })
})
