import {expect} from 'chai'
import {type Kysely, sql} from 'kysely'

import type {Database} from '../../src/lib/db/schema.js'
import {findMissingDays, yesterdayState} from '../../src/lib/processing/gaps.js'
import {clearLog, describeOnEngines, insertRecord} from '../support/db.js'

describeOnEngines('gaps: findMissingDays and yesterdayState', (engine) => {
  let db: Kysely<Database>

  before(async () => {
    db = await engine.open()
  })

  after(() => db.destroy())
  beforeEach(() => clearLog(db))

  describe('findMissingDays', () => {
    it('lists the days of the inclusive range that have no record, oldest first, whatever their status', async () => {
      await insertRecord(db, {day: '2024-02-28', status: 'SUCCESS'})
      await insertRecord(db, {day: '2024-03-01', status: 'FAILED'})
      await insertRecord(db, {day: '2024-03-03', status: 'PROCESSING', heartbeatSecondsAgo: 5})
      // Outside the range: must not count.
      await insertRecord(db, {day: '2024-02-20', status: 'SUCCESS'})
      expect(await findMissingDays(db, {from: '2024-02-27', to: '2024-03-04'})).to.deep.equal([
        '2024-02-27',
        '2024-02-29',
        '2024-03-02',
        '2024-03-04',
      ])
    })

    it('crosses year ends, and takes single days and empty ranges', async () => {
      await insertRecord(db, {day: '2024-12-31', status: 'SUCCESS'})
      expect(await findMissingDays(db, {from: '2024-12-30', to: '2025-01-01'})).to.deep.equal(['2024-12-30', '2025-01-01'])
      expect(await findMissingDays(db, {from: '2024-12-31', to: '2024-12-31'})).to.deep.equal([])
      expect(await findMissingDays(db, {from: '2025-01-01', to: '2025-01-01'})).to.deep.equal(['2025-01-01'])
      expect(await findMissingDays(db, {from: '2025-01-02', to: '2025-01-01'}), 'from after to').to.deep.equal([])
    })

    it('covers a whole year in one answer, in any session time zone', async () => {
      await insertRecord(db, {day: '2024-03-10', status: 'SUCCESS'})
      await insertRecord(db, {day: '2024-11-03', status: 'ERROR'})
      await db.connection().execute(async (conn) => {
        // DST changes in this zone fall on 2024-03-10 and 2024-11-03: no day may be lost or doubled.
        await sql`SET TIME ZONE 'America/New_York'`.execute(conn)
        const missing = await findMissingDays(conn, {from: '2024-01-01', to: '2024-12-31'})
        expect(missing).to.have.length(364)
        expect(new Set(missing).size).to.equal(364)
        expect(missing[0]).to.equal('2024-01-01')
        expect(missing.at(-1)).to.equal('2024-12-31')
        expect(missing).to.include('2024-02-29')
        expect(missing).not.to.include('2024-03-10')
        expect(missing).not.to.include('2024-11-03')
        await sql`RESET TIME ZONE`.execute(conn)
      })
    })

    it('asks the database once, however long the range', async () => {
      let queries = 0
      const counting = db.withPlugin({
        transformQuery: (args) => {
          queries++
          return args.node
        },
        transformResult: async (args) => args.result,
      })
      expect(await findMissingDays(counting, {from: '2024-01-01', to: '2024-12-31'})).to.have.length(366)
      expect(queries).to.equal(1)
    })

    it('refuses a bound that is not a date', async () => {
      for (const bad of ['2024-02-30', 'yesterday', "2024-01-01'; DROP TABLE audit_events_log; --"]) {
        let error: unknown
        try {
          await findMissingDays(db, {from: bad, to: '2024-03-01'})
        } catch (caught) {
          error = caught
        }

        expect(error, bad).to.be.instanceOf(RangeError)
      }
    })
  })

  describe('yesterdayState', () => {
    const now = new Date('2025-03-01T00:30:00Z')

    it('is MISSING without a record', async () => {
      expect(await yesterdayState(db, now)).to.deep.equal({day: '2025-02-28', status: 'MISSING'})
    })

    it('gives the record’s status otherwise', async () => {
      for (const status of ['PROCESSING', 'FAILED', 'ERROR', 'SUCCESS'] as const) {
        await clearLog(db)
        await insertRecord(db, {day: '2025-02-28', status})
        expect(await yesterdayState(db, now)).to.deep.equal({day: '2025-02-28', status})
      }
    })

    it('takes yesterday in UTC, across a year end, and defaults to the current time', async () => {
      expect((await yesterdayState(db, new Date('2025-01-01T00:00:00Z'))).day).to.equal('2024-12-31')
      expect((await yesterdayState(db, new Date('2024-12-31T23:59:59-05:00'))).day).to.equal('2024-12-31')
      const expected = new Date(Date.now() - 86_400_000).toISOString().slice(0, 10)
      expect((await yesterdayState(db)).day).to.equal(expected)
    })
  })
})
