/** ALERT_WEBHOOK_URL: validated like every other variable, and a secret from the moment it is read. */
import {expect} from 'chai'

import {type Env, loadConfig} from '../../src/lib/config.js'
import {redact} from '../../src/lib/secrets.js'
import {usageErrorOf} from '../support/helpers.js'
import {WEBHOOK_TOKEN} from '../support/webhook.js'

const base: Env = {DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/audit'}
const ENCODED = encodeURIComponent(WEBHOOK_TOKEN)

describe('alerts configuration', () => {
  it('no ALERT_WEBHOOK_URL (or an empty one): no webhook', () => {
    expect(loadConfig(base).alerts).to.deep.equal({webhook: undefined, requireYesterdayAfterHour: undefined})
    expect(loadConfig({...base, ALERT_WEBHOOK_URL: '  '}).alerts.webhook).to.equal(undefined)
  })

  it('an http(s) URL: kept whole, named by its host alone; HEALTH_REQUIRE_YESTERDAY_AFTER and HEROKU_APP_NAME come along', () => {
    const url = `https://hooks.slack.com/services/T0AAA/B0BBB/${ENCODED}`
    const {alerts} = loadConfig({...base, ALERT_WEBHOOK_URL: url, HEALTH_REQUIRE_YESTERDAY_AFTER: '6', HEROKU_APP_NAME: 'acme-audit'})
    expect(alerts).to.deep.equal({webhook: {url, host: 'hooks.slack.com'}, requireYesterdayAfterHour: 6, source: 'acme-audit'})
    expect(loadConfig({...base, ALERT_WEBHOOK_URL: 'http://127.0.0.1:8080/hook/abcdefgh'}).alerts.webhook).to.deep.equal({url: 'http://127.0.0.1:8080/hook/abcdefgh', host: '127.0.0.1:8080'})
  })

  it('is a secret once read: the URL, its path and its token, encoded or not, are masked everywhere', () => {
    const url = `https://hooks.example.org/services/T0AAA/B0BBB/${ENCODED}?key=Query-Secret-0042`
    loadConfig({...base, ALERT_WEBHOOK_URL: url})
    const text = redact(`a ${url} b ${WEBHOOK_TOKEN} c ${ENCODED} d /services/T0AAA/B0BBB/${ENCODED}?key=Query-Secret-0042 e Query-Secret-0042 f`)
    for (const secret of [WEBHOOK_TOKEN, ENCODED, 'Query-Secret-0042']) expect(text).not.to.include(secret)
    // The host stays readable, and so do short words of a path without a token.
    expect(redact('hooks.example.org')).to.equal('hooks.example.org')
    loadConfig({...base, ALERT_WEBHOOK_URL: 'https://relay.example.org/alerts?format=json'})
    expect(redact('alerts: sent 1 as json')).to.equal('alerts: sent 1 as json')
  })

  it('a malformed value is one usage error that quotes no part of the URL', () => {
    const cases: Array<[string, string]> = [
      [`ftp://hooks.example.com/${ENCODED}`, 'ALERT_WEBHOOK_URL must be an http(s) URL (it starts with ftp://)'],
      [`hooks.slack.com/services/${ENCODED}`, 'ALERT_WEBHOOK_URL is not a valid URL'],
      [`https://me:${ENCODED}@hooks.example.com/x`, 'ALERT_WEBHOOK_URL must not hold a user name or password (user:password@host)'],
    ]
    for (const [url, message] of cases) {
      const error = usageErrorOf(() => loadConfig({...base, ALERT_WEBHOOK_URL: url}))
      expect(error.message).to.equal(message)
      expect(error.hint).to.match(/incoming webhook URL/)
      for (const secret of [WEBHOOK_TOKEN, ENCODED]) expect(`${error.message} ${error.hint}`).not.to.include(secret)
    }
  })

  it('HEALTH_REQUIRE_YESTERDAY_AFTER must be an hour, 0–23', () => {
    expect(usageErrorOf(() => loadConfig({...base, HEALTH_REQUIRE_YESTERDAY_AFTER: '24'})).message).to.equal('HEALTH_REQUIRE_YESTERDAY_AFTER "24" is not a whole number from 0 to 23')
  })
})
