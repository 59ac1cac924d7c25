/** LOG_LINES_PER_SECOND: a whole number, bounded; unset, a pace a Logplex drain keeps up with on a dyno, unpaced elsewhere. */
import {expect} from 'chai'

import {DYNO_LOG_LINES_PER_SECOND, type Env, MAX_LOG_LINES_PER_SECOND, loadConfig} from '../../src/lib/config.js'
import {usageErrorOf} from '../support/helpers.js'

const base: Env = {
  DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/audit',
  HEROKU_API_TOKEN: 'HRKU-config-test-token-0123456789',
  HEROKU_ACCOUNT_ID: 'acme',
}

const pace = (env: Env) => loadConfig({...base, ...env}, {needsHeroku: true}).processing?.logLinesPerSecond

describe('LOG_LINES_PER_SECOND', () => {
  it('is unpaced (0) by default off a dyno, and DYNO_LOG_LINES_PER_SECOND (200) on one', () => {
    expect(pace({})).to.equal(0)
    expect(DYNO_LOG_LINES_PER_SECOND).to.equal(200)
    expect(pace({DYNO: 'scheduler.1234'})).to.equal(DYNO_LOG_LINES_PER_SECOND)
    expect(pace({DYNO: ''}), 'an empty DYNO is unset').to.equal(0)
  })

  it('takes a whole number from 0 (unpaced, on a dyno too) to the bound', () => {
    expect(pace({LOG_LINES_PER_SECOND: '50'})).to.equal(50)
    expect(pace({LOG_LINES_PER_SECOND: ' 1000 '})).to.equal(1000)
    expect(pace({LOG_LINES_PER_SECOND: '0', DYNO: 'run.1'})).to.equal(0)
    expect(pace({LOG_LINES_PER_SECOND: String(MAX_LOG_LINES_PER_SECOND)})).to.equal(MAX_LOG_LINES_PER_SECOND)
  })

  for (const bad of ['-1', '1.5', '2e3', 'fast', '100001', '0x10']) {
    it(`refuses "${bad}" with one line naming the variable and a fix`, () => {
      const error = usageErrorOf(() => loadConfig({...base, LOG_LINES_PER_SECOND: bad}, {needsHeroku: true}))
      expect(error.message).to.equal(`LOG_LINES_PER_SECOND "${bad}" is not a whole number from 0 to ${MAX_LOG_LINES_PER_SECOND}`)
      expect(error.hint).to.be.a('string').and.not.be.empty
    })
  }
})
