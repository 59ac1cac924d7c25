/**
 * The edges of what the tool takes: days from 0001-01-01 to 9999-12-31 (PostgreSQL has no year 0,
 * YYYY-MM-DD has four digits), refused outside with one line or a 400, and handled inside on both
 * engines; and the largest --stale-after / STALE_AFTER_MINUTES.
 */
import {expect} from 'chai'
import type {Kysely} from 'kysely'

import {MAX_STALE_AFTER_MINUTES, loadWebConfig} from '../../src/lib/config.js'
import {findDay, resetDay} from '../../src/lib/db/audit-log-repository.js'
import {cleanupStale} from '../../src/lib/db/audit-log-repository.js'
import type {Database} from '../../src/lib/db/schema.js'
import {
  FIRST_DAY,
  LAST_DAY,
  addDays,
  addDaysClamped,
  daysBetween,
  isCalendarDate,
  parseDay,
  parseProcessableDay,
  parseProcessableRange,
} from '../../src/lib/dates.js'
import {UsageError} from '../../src/lib/errors.js'
import {planDays} from '../../src/lib/processing/plan.js'
import {findMissingDays} from '../../src/lib/processing/gaps.js'
import {buildApp} from '../../src/lib/web/app.js'
import {gapReport} from '../../src/lib/web/health.js'
import {captureLogger} from '../support/capture.js'
import {clearLog, describeOnEngines, insertRecord} from '../support/db.js'
import {usageErrorOf} from '../support/helpers.js'

const NOW = new Date('2025-10-01T12:00:00Z')

describe('the days the tool takes: 0001-01-01 to 9999-12-31', () => {
  it('knows year 0 is not a calendar date, and the first and last days are', () => {
    for (const day of ['0000-01-01', '0000-02-29', '0000-12-31']) expect(isCalendarDate(day), day).to.equal(false)
    for (const day of [FIRST_DAY, '0001-12-31', '9999-12-31', '2024-02-29']) expect(isCalendarDate(day), day).to.equal(true)
  })

  it('refuses year 0 with one line saying which days to use, wherever a day is typed', () => {
    const error = usageErrorOf(() => parseDay('0000-01-01'))
    expect(error.message).to.equal('date "0000-01-01" is not a real calendar date: there is no year 0')
    expect(error.hint).to.equal('write a day from 0001-01-01 to 9999-12-31, e.g. 2025-09-28')
    expect(usageErrorOf(() => parseProcessableDay('0000-06-15', NOW)).message).to.match(/there is no year 0/)
    expect(usageErrorOf(() => parseProcessableRange('0000-12-30', '0001-01-02', NOW)).message).to.match(/^--from "0000-12-30" .*no year 0/)
    expect(parseDay(FIRST_DAY)).to.equal(FIRST_DAY)
    expect(parseDay(LAST_DAY)).to.equal(LAST_DAY)
    expect(parseProcessableRange('0001-01-01', '0001-01-05', NOW)).to.deep.equal({from: '0001-01-01', to: '0001-01-05'})
    expect(usageErrorOf(() => parseProcessableDay(LAST_DAY, NOW)).message).to.match(/in the future/)
  })

  it('counts days up to the edges, and never steps past them into a malformed day', () => {
    expect(addDays('0001-01-02', -1)).to.equal('0001-01-01')
    expect(addDays('9999-12-30', 1)).to.equal('9999-12-31')
    expect(addDays('0001-12-31', 1)).to.equal('0002-01-01')
    expect(() => addDays('0001-01-01', -1)).to.throw(RangeError)
    expect(() => addDays('9999-12-31', 1)).to.throw(RangeError)
    expect(addDaysClamped('0001-01-05', -30)).to.equal('0001-01-01')
    expect(addDaysClamped('9999-12-20', 30)).to.equal('9999-12-31')
    expect(addDaysClamped('2025-01-31', 1)).to.equal('2025-02-01')
    expect(daysBetween('9999-12-29', '9999-12-31')).to.deep.equal(['9999-12-29', '9999-12-30', '9999-12-31'])
    expect(daysBetween('0001-01-01', '0001-01-02')).to.deep.equal(['0001-01-01', '0001-01-02'])
    expect(daysBetween('0001-01-02', '0001-01-01')).to.deep.equal([])
  })
})

describe('the largest stale-after', () => {
  it('is a year, for STALE_AFTER_MINUTES too, refused beyond with one line naming the variable', () => {
    expect(MAX_STALE_AFTER_MINUTES).to.equal(525_600)
    expect(loadWebConfig({STALE_AFTER_MINUTES: String(MAX_STALE_AFTER_MINUTES)}).staleAfterMinutes).to.equal(MAX_STALE_AFTER_MINUTES)
    for (const value of ['99999999999', String(MAX_STALE_AFTER_MINUTES + 1), '0']) {
      expect(() => loadWebConfig({STALE_AFTER_MINUTES: value}), value).to.throw(UsageError, /^STALE_AFTER_MINUTES ".*" is not a whole number from 1 to 525600$/)
    }
  })
})

describeOnEngines('the first and last days in the database', (engine) => {
  let db: Kysely<Database>

  before(async () => {
    db = await engine.open()
  })

  after(() => db.destroy())
  beforeEach(() => clearLog(db))

  it('stores, finds, plans, cleans up and resets them', async () => {
    await insertRecord(db, {day: FIRST_DAY, status: 'SUCCESS', events: 3})
    await insertRecord(db, {day: '0001-01-03', status: 'PROCESSING', heartbeatSecondsAgo: 60 * 60})
    await insertRecord(db, {day: LAST_DAY, status: 'FAILED'})
    expect((await findDay(db, FIRST_DAY))?.process_date).to.equal(FIRST_DAY)
    expect((await findDay(db, LAST_DAY))?.process_date).to.equal(LAST_DAY)
    expect(await findMissingDays(db, {from: FIRST_DAY, to: '0001-01-05'})).to.deep.equal(['0001-01-02', '0001-01-04', '0001-01-05'])
    expect(await findMissingDays(db, {from: '9999-12-29', to: LAST_DAY})).to.deep.equal(['9999-12-29', '9999-12-30'])

    const plan = await planDays(db, {mode: 'range', from: FIRST_DAY, to: '0001-01-05', force: false, staleAfterMinutes: 15, pageSize: 1000, maxAttemptsPerRequest: 5})
    expect(plan.days.map((d) => `${d.day} ${d.status} ${d.action}`)).to.deep.equal([
      '0001-01-01 SUCCESS skip',
      '0001-01-02 MISSING fetch',
      '0001-01-03 PROCESSING fetch',
      '0001-01-04 MISSING fetch',
      '0001-01-05 MISSING fetch',
    ])

    // The largest stale-after keeps the SQL's now() - interval inside PostgreSQL's timestamps.
    expect(await cleanupStale(db, MAX_STALE_AFTER_MINUTES)).to.deep.equal([])
    expect((await cleanupStale(db, 15)).map((c) => c.day)).to.deep.equal(['0001-01-03'])
    expect((await resetDay(db, FIRST_DAY, {force: false, staleAfterMinutes: MAX_STALE_AFTER_MINUTES})).outcome).to.equal('removed')
    expect(await findDay(db, FIRST_DAY)).to.equal(undefined)
  })

  it('looks for gaps back from a day in year 1 no further than 0001-01-01', async () => {
    await insertRecord(db, {day: '0001-01-02', status: 'SUCCESS'})
    const report = await gapReport(db, NOW, {to: '0001-01-04'})
    expect(report.window).to.deep.equal({from: FIRST_DAY, to: '0001-01-04'})
    expect(report.missing).to.deep.equal(['0001-01-01', '0001-01-03', '0001-01-04'])
  })

  it('serves them on the status page, and answers year 0 with a 400, signed in or read-only', async () => {
    await insertRecord(db, {day: FIRST_DAY, status: 'SUCCESS'})
    await insertRecord(db, {day: LAST_DAY, status: 'FAILED'})
    const auth = {username: 'ops', password: 'pw'}
    const authorization = `Basic ${Buffer.from('ops:pw').toString('base64')}`
    for (const config of [{auth, port: 0, staleAfterMinutes: 15}, {port: 0, staleAfterMinutes: 15}]) {
      const app = await buildApp({db, config, version: {} as never, logger: captureLogger(), now: () => NOW})
      const headers = config.auth ? {authorization} : {}
      try {
        const inRange = ['/logs/0001-01-01', '/logs/9999-12-31', '/api/logs/0001-01-01', '/?from=0001-01-01&to=9999-12-31', '/api/logs?from=0001-01-01&to=0001-01-05', '/api/logs?to=0001-01-05']
        if (config.auth) inRange.push('/delete?date=0001-01-01&date=9999-12-31')
        for (const url of inRange) expect((await app.inject({url, headers})).statusCode, url).to.equal(200)
        const api = (await app.inject({url: '/api/logs?to=0001-01-05', headers})).json()
        expect(api.missing).to.deep.equal({from: FIRST_DAY, to: '0001-01-05', days: ['0001-01-02', '0001-01-03', '0001-01-04', '0001-01-05']})
        expect(api.records.map((r: {date: string}) => r.date)).to.deep.equal([FIRST_DAY])

        const yearZero = ['/logs/0000-01-01', '/api/logs/0000-01-01', '/?from=0000-01-01', '/?to=0000-01-01', '/api/logs?from=0000-01-01', '/api/logs?to=0000-12-31']
        if (config.auth) yearZero.push('/delete?date=0000-01-01', '/delete?date=2025-09-01&date=0000-01-01')
        for (const url of yearZero) {
          const response = await app.inject({url, headers})
          expect(response.statusCode, url).to.equal(400)
          expect(response.body, url).to.match(/Bad request: .*0000-\d\d-\d\d is not a real calendar date from 0001-01-01 to 9999-12-31/)
        }
      } finally {
        await app.close()
      }
    }
  })
})
