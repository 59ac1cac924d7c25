import {mkdtempSync, writeFileSync} from 'node:fs'
import {homedir, tmpdir} from 'node:os'
import {join} from 'node:path'

import {expect} from 'chai'

import {DEFAULT_HEROKU_API_URL, type Env, loadConfig, withDotEnv} from '../../src/lib/config.js'
import {isCalendarDate, parseDay, parseProcessableDay, yesterdayUtc} from '../../src/lib/dates.js'
import {redact} from '../../src/lib/secrets.js'
import {usageErrorOf} from '../support/helpers.js'

const base: Env = {
  DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/audit',
  HEROKU_API_TOKEN: 'HRKU-config-test-token-0123456789',
  HEROKU_ACCOUNT_ID: 'acme',
}

describe('configuration', () => {
  it('reads a complete environment into a typed object', () => {
    const config = loadConfig({...base, FILTER_TYPE: 'app', FILTER_ACTION: 'create', FILTER_ACTOR_EMAIL: 'a@example.com'}, {needsHeroku: true})
    expect(config.database).to.deep.equal({kind: 'postgres', url: base.DATABASE_URL, ssl: 'auto'})
    expect(config.heroku).to.include({apiUrl: DEFAULT_HEROKU_API_URL, token: base.HEROKU_API_TOKEN, accountId: 'acme'})
    expect(config.heroku?.filters).to.deep.equal({type: 'app', action: 'create', actorEmail: 'a@example.com'})
  })

  it('keeps every event by default for 365 days; EVENT_STORE=off and EVENT_RETENTION_DAYS change that, and bad values are one line', () => {
    expect(loadConfig(base).store).to.deep.equal({enabled: true, catchUpArchives: true, retentionDays: 365, settleHours: 24})
    expect(loadConfig({...base, EVENT_STORE: 'OFF', EVENT_RETENTION_DAYS: '30', SETTLE_HOURS: 'off', CATCH_UP_ARCHIVES: 'off'}).store).to.deep.equal({enabled: false, catchUpArchives: false, retentionDays: 30})
    expect(loadConfig({...base, SETTLE_HOURS: '0'}).store.settleHours).to.equal(0)
    expect(usageErrorOf(() => loadConfig({...base, SETTLE_HOURS: '169'})).message).to.equal('SETTLE_HOURS "169" is not a whole number from 0 to 168')
    expect(usageErrorOf(() => loadConfig({...base, CATCH_UP_ARCHIVES: 'maybe'})).message).to.equal('CATCH_UP_ARCHIVES must be on or off (got "maybe")')
    expect(usageErrorOf(() => loadConfig({...base, EVENT_STORE: 'maybe'})).message).to.equal('EVENT_STORE must be on or off (got "maybe")')
    for (const days of ['0', '3651', '1.5', 'a year']) {
      expect(usageErrorOf(() => loadConfig({...base, EVENT_RETENTION_DAYS: days})).message).to.equal(`EVENT_RETENTION_DAYS "${days}" is not a whole number from 1 to 3650`)
    }
  })

  it('accepts HEROKU_ACCOUNT_ID_OR_NAME as an alias, and a UUID', () => {
    const {HEROKU_ACCOUNT_ID: _, ...rest} = base
    const uuid = '3f0e5b6e-1c2d-4e5f-8a9b-0c1d2e3f4a5b'
    expect(loadConfig({...rest, HEROKU_ACCOUNT_ID_OR_NAME: uuid}, {needsHeroku: true}).heroku?.accountId).to.equal(uuid)
  })

  it('uses the embedded database when DATABASE_URL is not set, in AUDIT_LOGGER_DATA_DIR or the user’s data folder', () => {
    const {DATABASE_URL: _, ...noUrl} = base
    expect(loadConfig({...noUrl, AUDIT_LOGGER_DATA_DIR: '/srv/audit'}).database).to.deep.equal({kind: 'embedded', dataDir: '/srv/audit'})
    expect(loadConfig({...noUrl, DATABASE_URL: '  ', XDG_DATA_HOME: '/x/data'}).database).to.deep.equal({kind: 'embedded', dataDir: '/x/data/audit-logger'})
    const inHome = loadConfig({...noUrl, AUDIT_LOGGER_DATA_DIR: undefined, XDG_DATA_HOME: undefined}).database
    expect(inHome).to.deep.equal({kind: 'embedded', dataDir: join(homedir(), '.local', 'share', 'audit-logger')})
    // DATABASE_URL wins over a data directory.
    expect(loadConfig({...base, AUDIT_LOGGER_DATA_DIR: '/srv/audit'}).database.kind).to.equal('postgres')
  })

  it('refuses the embedded database on a Heroku dyno, whose disk is wiped on restart, pointing to Heroku Postgres', () => {
    const {DATABASE_URL: _, ...noUrl} = base
    for (const env of [{...noUrl, DYNO: 'web.1'}, {...noUrl, DYNO: 'scheduler.4021', AUDIT_LOGGER_DATA_DIR: '/app/data'}]) {
      const error = usageErrorOf(() => loadConfig(env, {needsHeroku: true}))
      expect(error.message).to.equal('DATABASE_URL is not set, and the embedded database cannot live on a Heroku dyno (its disk is wiped on every restart)')
      expect(error.hint).to.equal('add Heroku Postgres, which sets DATABASE_URL: heroku addons:create heroku-postgresql:essential-0')
    }

    expect(loadConfig({...base, DYNO: 'web.1'}).database.kind).to.equal('postgres')
  })

  it('reads HEROKU_API_MAX_PAGE_BYTES, leaving the default (32 MiB) to the client when unset', () => {
    expect(loadConfig({...base, HEROKU_API_MAX_PAGE_BYTES: '67108864'}, {needsHeroku: true}).heroku?.maxPageBytes).to.equal(64 * 1024 * 1024)
    expect(loadConfig(base, {needsHeroku: true}).heroku?.maxPageBytes).to.equal(undefined)
  })

  it('does not ask for the API settings unless the command needs them', () => {
    expect(loadConfig({DATABASE_URL: base.DATABASE_URL}).heroku).to.equal(undefined)
  })

  const refusals: Array<[string, Env, RegExp]> = [
    ['a missing token', {HEROKU_API_TOKEN: undefined}, /HEROKU_API_TOKEN is not set/],
    ['an empty token', {HEROKU_API_TOKEN: '  '}, /HEROKU_API_TOKEN is not set/],
    ['a missing account', {HEROKU_ACCOUNT_ID: undefined}, /HEROKU_ACCOUNT_ID is not set/],
    ['a malformed account', {HEROKU_ACCOUNT_ID: 'acme/../x'}, /HEROKU_ACCOUNT_ID "acme\/..\/x" is neither a UUID nor an account name/],
    ['a DATABASE_URL that is not a URL', {DATABASE_URL: 'not a url'}, /DATABASE_URL is not a valid URL/],
    ['a DATABASE_URL of another kind', {DATABASE_URL: 'mysql://u@h/d'}, /DATABASE_URL must start with postgres/],
    ['a bad DATABASE_SSL', {DATABASE_SSL: 'maybe'}, /DATABASE_SSL must be/],
    ['a bad API URL', {HEROKU_API_URL: 'ftp://x'}, /HEROKU_API_URL must be an http\(s\) URL/],
    ['a bad actor filter', {FILTER_ACTOR_EMAIL: 'bob'}, /FILTER_ACTOR_EMAIL "bob" is not an email address/],
    ['a bad type filter', {FILTER_TYPE: 'app create'}, /FILTER_TYPE/],
    ['a bad log level', {LOG_LEVEL: 'loud'}, /LOG_LEVEL "loud" is not a log level/],
    ['a bad timeout', {HEROKU_API_TIMEOUT: '0'}, /HEROKU_API_TIMEOUT "0" is not a whole number/],
    ['a page cap below a real page', {HEROKU_API_MAX_PAGE_BYTES: '1000'}, /^HEROKU_API_MAX_PAGE_BYTES "1000" is not a whole number from 1048576 to 268435456$/],
    ['a page cap that is not a number of bytes', {HEROKU_API_MAX_PAGE_BYTES: '64MB'}, /^HEROKU_API_MAX_PAGE_BYTES "64MB" is not a whole number/],
  ]
  for (const [what, change, message] of refusals) {
    it(`refuses ${what} with one line naming the variable and a fix`, () => {
      const error = usageErrorOf(() => loadConfig({...base, ...change}, {needsHeroku: true}))
      expect(error.message).to.match(message)
      expect(error.message).not.to.include('\n')
      expect(error.hint, 'a hint on how to fix it').to.be.a('string').and.not.be.empty
    })
  }

  it('never echoes the database password in its errors, and registers it for redaction', () => {
    const error = usageErrorOf(() => loadConfig({DATABASE_URL: 'mysql://user:Sentinel-Pass-771@db.example.com/x'}))
    expect(error.message).not.to.include('Sentinel-Pass-771')
    expect(redact('oops Sentinel-Pass-771 oops')).to.equal('oops [redacted] oops')
  })

  it('registers the token for redaction even when validation fails later', () => {
    usageErrorOf(() => loadConfig({...base, HEROKU_API_TOKEN: 'HRKU-registered-early-0001', HEROKU_ACCOUNT_ID: undefined}, {needsHeroku: true}))
    expect(redact('token HRKU-registered-early-0001')).to.equal('token [redacted]')
  })

  describe('.env', () => {
    it('fills in variables from .env without overriding the real environment', () => {
      const dir = mkdtempSync(join(tmpdir(), 'audit-logger-env-'))
      writeFileSync(join(dir, '.env'), 'HEROKU_ACCOUNT_ID=from-dotenv\nFILTER_TYPE=addon\n# a comment\n')
      const env = withDotEnv({HEROKU_ACCOUNT_ID: 'from-env'}, dir)
      expect(env.HEROKU_ACCOUNT_ID).to.equal('from-env')
      expect(env.FILTER_TYPE).to.equal('addon')
    })

    it('leaves the environment alone when there is no .env', () => {
      const dir = mkdtempSync(join(tmpdir(), 'audit-logger-env-'))
      const env = {A: '1'}
      expect(withDotEnv(env, dir)).to.equal(env)
    })
  })
})

describe('dates', () => {
  const now = new Date('2025-03-01T00:30:00Z')

  it('defaults to yesterday in UTC, whatever the local time zone', () => {
    expect(yesterdayUtc(now)).to.equal('2025-02-28')
    expect(yesterdayUtc(new Date('2024-03-01T23:59:59Z'))).to.equal('2024-02-29')
    expect(yesterdayUtc(new Date('2025-01-01T00:00:00Z'))).to.equal('2024-12-31')
  })

  it('accepts real past calendar dates', () => {
    expect(parseProcessableDay('2024-02-29', now)).to.equal('2024-02-29')
    expect(parseProcessableDay('2025-02-28', now)).to.equal('2025-02-28')
    expect(isCalendarDate('2025-02-30')).to.equal(false)
  })

  const bad: Array<[string, RegExp]> = [
    ['2025-02-30', /February 2025 has 28 days/],
    ['2023-02-29', /February 2023 has 28 days/],
    ['2025-13-01', /no month 13/],
    ['2025-00-10', /no month 0/],
    ['yesterday', /not in YYYY-MM-DD form/],
    ['', /not in YYYY-MM-DD form/],
    ['2025-1-1', /not in YYYY-MM-DD form/],
    ['2025-03-01', /is today/],
    ['2999-01-01', /is in the future/],
  ]
  for (const [input, message] of bad) {
    it(`refuses "${input}" with a clear reason`, () => {
      const error = usageErrorOf(() => parseProcessableDay(input, now))
      expect(error.message).to.match(message)
      expect(error.hint).to.be.a('string')
    })
  }

  it('lets the operator commands name any real date, today included', () => {
    expect(parseDay('2025-03-01')).to.equal('2025-03-01')
  })
})
