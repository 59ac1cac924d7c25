import {randomUUID} from 'node:crypto'

import {expect} from 'chai'
import {type Kysely, sql} from 'kysely'

import {
  claimDay,
  type ClaimResult,
  cleanupStale,
  countByStatus,
  finishDay,
  findDay,
  heartbeat,
  isLive,
  latestDays,
  resetDay,
} from '../../src/lib/db/audit-log-repository.js'
import type {AuditLogRow, Database, ProcessStatus} from '../../src/lib/db/schema.js'
import {backdateHeartbeat, clearLog, describeOnEngines, insertRecord, snapshot} from '../support/db.js'

const DAY = '2025-09-28'
const STALE_AFTER = 15
const JUST_FRESH = 14 * 60
const JUST_STALE = 16 * 60

let db: Kysely<Database>

function claim(day: string, options: {token?: string; force?: boolean} = {}): Promise<ClaimResult> {
  return claimDay(db, {day, token: options.token ?? randomUUID(), staleAfterMinutes: STALE_AFTER, force: options.force ?? false})
}

function expectClaimed(result: ClaimResult): Extract<ClaimResult, {claimed: true}> {
  if (!result.claimed) expect.fail(`expected the claim to succeed; the row is ${JSON.stringify(result.current)}`)
  return result
}

function expectNotClaimed(result: ClaimResult): AuditLogRow | undefined {
  if (result.claimed) expect.fail(`expected the claim to be refused; it took ${JSON.stringify(result.row)}`)
  return result.current
}

async function row(day: string): Promise<AuditLogRow> {
  const found = await findDay(db, day)
  if (!found) expect.fail(`no row for ${day}`)
  return found
}

/** The database's clock, which judges staleness. */
async function dbNow(): Promise<Date> {
  const result = await sql<{now: Date}>`SELECT now() AS now`.execute(db)
  return result.rows[0].now
}

async function expectRecent(value: Date | null, what: string): Promise<void> {
  expect(value, what).to.be.instanceOf(Date)
  const ageMs = (await dbNow()).getTime() - value!.getTime()
  expect(ageMs, `${what} age in ms`).to.be.within(0, 5000)
}

function finish(day: string, token: string, status: 'SUCCESS' | 'FAILED' | 'ERROR' = 'SUCCESS', eventsCount = 7) {
  return finishDay(db, {day, token, status, eventsCount, errorMessage: status === 'SUCCESS' ? null : 'it broke'})
}

describeOnEngines('audit-log repository', (engine) => {
  before(async () => {
    db = await engine.open()
  })

  after(() => db.destroy())

  beforeEach(() => clearLog(db))

  describe('claimDay', () => {
    it('inserts a PROCESSING row with a token and a heartbeat for a new day', async () => {
      const token = randomUUID()
      const {row: claimed, previousStatus} = expectClaimed(await claim(DAY, {token}))
      expect(previousStatus).to.equal(null)
      expect(claimed).to.include({process_date: DAY, status: 'PROCESSING', attempts: 1, claim_token: token, events_count: 0})
      expect(claimed.error_message).to.equal(null)
      expect(claimed.finished_at).to.equal(null)
      await expectRecent(claimed.heartbeat_at, 'heartbeat_at')
      await expectRecent(claimed.started_at, 'started_at')
      expect(await row(DAY)).to.deep.equal(claimed)
    })

    it('refuses a day another run holds and returns that run’s row', async () => {
      const first = randomUUID()
      expectClaimed(await claim(DAY, {token: first}))
      const before = await snapshot(db)
      const current = expectNotClaimed(await claim(DAY))
      expect(current).to.include({status: 'PROCESSING', claim_token: first, attempts: 1})
      expect(await snapshot(db)).to.deep.equal(before)
    })

    for (const status of ['FAILED', 'ERROR'] as const) {
      it(`retries a ${status} day, counting the attempt and reporting the previous status`, async () => {
        await insertRecord(db, {day: DAY, status, attempts: 2, events: 3, error: 'it broke', claimToken: randomUUID(), heartbeatSecondsAgo: 3600})
        const token = randomUUID()
        const {row: claimed, previousStatus} = expectClaimed(await claim(DAY, {token}))
        expect(previousStatus).to.equal(status)
        expect(claimed).to.include({status: 'PROCESSING', attempts: 3, claim_token: token, events_count: 0, error_message: null})
        expect(claimed.finished_at).to.equal(null)
        await expectRecent(claimed.heartbeat_at, 'heartbeat_at')
      })
    }

    it('takes over a PROCESSING day whose heartbeat is just past the threshold', async () => {
      await insertRecord(db, {day: DAY, status: 'PROCESSING', claimToken: randomUUID(), heartbeatSecondsAgo: JUST_STALE})
      const token = randomUUID()
      const {row: claimed, previousStatus} = expectClaimed(await claim(DAY, {token}))
      expect(previousStatus).to.equal('PROCESSING')
      expect(claimed).to.include({claim_token: token, attempts: 2})
      await expectRecent(claimed.heartbeat_at, 'heartbeat_at')
    })

    it('leaves a PROCESSING day whose heartbeat is just inside the threshold', async () => {
      const holder = randomUUID()
      await insertRecord(db, {day: DAY, status: 'PROCESSING', claimToken: holder, heartbeatSecondsAgo: JUST_FRESH})
      const before = await snapshot(db)
      expect(expectNotClaimed(await claim(DAY))?.claim_token).to.equal(holder)
      expect(await snapshot(db)).to.deep.equal(before)
    })

    it('leaves a SUCCESS day unless forced', async () => {
      await insertRecord(db, {day: DAY, status: 'SUCCESS', events: 12, claimToken: randomUUID(), heartbeatSecondsAgo: 86_400})
      const before = await snapshot(db)
      expect(expectNotClaimed(await claim(DAY))?.status).to.equal('SUCCESS')
      expect(await snapshot(db)).to.deep.equal(before)

      const token = randomUUID()
      const {row: claimed, previousStatus} = expectClaimed(await claim(DAY, {token, force: true}))
      expect(previousStatus).to.equal('SUCCESS')
      expect(claimed).to.include({status: 'PROCESSING', claim_token: token, attempts: 2, events_count: 0})
    })

    for (const start of ['absent', 'FAILED'] as const) {
      it(`lets exactly one of 20 concurrent claims win (row ${start})`, async () => {
        if (start === 'FAILED') await insertRecord(db, {day: DAY, status: 'FAILED', error: 'earlier failure'})
        const tokens = Array.from({length: 20}, () => randomUUID())
        const results = await Promise.all(tokens.map((token) => claim(DAY, {token})))

        const winners = results.filter((r) => r.claimed)
        expect(winners).to.have.length(1)
        const stored = await row(DAY)
        expect(stored.claim_token).to.equal(winners[0].row.claim_token)
        expect(stored.attempts).to.equal(start === 'FAILED' ? 2 : 1)
        for (const loser of results.filter((r) => !r.claimed)) {
          expect(loser.current?.claim_token).to.equal(stored.claim_token)
        }
      })
    }

    it('is idempotent for its token: tried again after a lost connection, it holds the day without another attempt', async () => {
      const token = randomUUID()
      await insertRecord(db, {day: DAY, status: 'FAILED', error: 'HTTP 503', heartbeatSecondsAgo: 600})
      expect(expectClaimed(await claim(DAY, {token})).previousStatus).to.equal('FAILED')
      const again = expectClaimed(await claim(DAY, {token}))
      expect(again.previousStatus, 'its own claim is not a takeover').to.equal(null)
      expect(again.row).to.include({status: 'PROCESSING', claim_token: token, attempts: 2})
      expectNotClaimed(await claim(DAY))
    })
  })

  describe('heartbeat', () => {
    it('refreshes the heartbeat while the claim is held', async () => {
      const token = randomUUID()
      expectClaimed(await claim(DAY, {token}))
      await backdateHeartbeat(db, DAY, 600)
      expect(await heartbeat(db, DAY, token)).to.equal(true)
      await expectRecent((await row(DAY)).heartbeat_at, 'heartbeat_at')
    })

    it('is refused once another run has re-claimed the day', async () => {
      const first = randomUUID()
      const second = randomUUID()
      expectClaimed(await claim(DAY, {token: first}))
      await backdateHeartbeat(db, DAY, JUST_STALE)
      expectClaimed(await claim(DAY, {token: second}))
      const before = await snapshot(db)
      expect(await heartbeat(db, DAY, first)).to.equal(false)
      expect(await snapshot(db)).to.deep.equal(before)
      expect(await heartbeat(db, DAY, second)).to.equal(true)
    })

    it('is refused once the row is cleaned up, and once it is deleted', async () => {
      const token = randomUUID()
      expectClaimed(await claim(DAY, {token}))
      await backdateHeartbeat(db, DAY, JUST_STALE)
      await cleanupStale(db, STALE_AFTER)
      const cleaned = await snapshot(db)
      expect(await heartbeat(db, DAY, token)).to.equal(false)
      expect(await snapshot(db)).to.deep.equal(cleaned)

      await sql`DELETE FROM audit_events_log WHERE process_date = ${DAY}`.execute(db)
      expect(await heartbeat(db, DAY, token)).to.equal(false)
      expect(await findDay(db, DAY)).to.equal(undefined)
    })
  })

  describe('finishDay', () => {
    it('records the result while the claim is held, once', async () => {
      const token = randomUUID()
      expectClaimed(await claim(DAY, {token}))
      expect(await finish(DAY, token, 'SUCCESS', 42)).to.equal(true)
      const finished = await row(DAY)
      expect(finished).to.include({status: 'SUCCESS', events_count: 42, error_message: null, claim_token: token})
      await expectRecent(finished.finished_at, 'finished_at')

      expect(await finish(DAY, token, 'FAILED')).to.equal(false)
      expect((await row(DAY)).status).to.equal('SUCCESS')
    })

    it('is idempotent: tried again after a lost connection (it may have committed), it counts once more, but never over another status', async () => {
      const token = randomUUID()
      expectClaimed(await claim(DAY, {token}))
      expect(await finish(DAY, token, 'SUCCESS', 42)).to.equal(true)
      expect(await finish(DAY, token, 'SUCCESS', 42), 'the same finish again').to.equal(true)
      expect(await finish(DAY, token, 'ERROR'), 'another status').to.equal(false)
      expect(await row(DAY)).to.include({status: 'SUCCESS', events_count: 42, attempts: 1})
    })

    it('records FAILED with its message', async () => {
      const token = randomUUID()
      expectClaimed(await claim(DAY, {token}))
      expect(await finish(DAY, token, 'FAILED', 0)).to.equal(true)
      expect(await row(DAY)).to.include({status: 'FAILED', error_message: 'it broke'})
    })

    it('fences off a run whose claim was cleaned up and taken by another (scenario 6)', async () => {
      const runA = randomUUID()
      const runB = randomUUID()
      expectClaimed(await claim(DAY, {token: runA}))
      await backdateHeartbeat(db, DAY, JUST_STALE)
      expect((await cleanupStale(db, STALE_AFTER)).map((c) => c.day)).to.deep.equal([DAY])
      expect((await row(DAY)).status).to.equal('ERROR')

      const {previousStatus} = expectClaimed(await claim(DAY, {token: runB}))
      expect(previousStatus).to.equal('ERROR')
      const held = await snapshot(db)
      expect(await finish(DAY, runA, 'SUCCESS', 99)).to.equal(false)
      expect(await snapshot(db)).to.deep.equal(held)

      expect(await finish(DAY, runB, 'SUCCESS', 5)).to.equal(true)
      expect(await row(DAY)).to.include({status: 'SUCCESS', events_count: 5, claim_token: runB, attempts: 2})
    })
  })

  describe('cleanupStale', () => {
    it('turns only the PROCESSING row past the threshold into ERROR (scenario 5)', async () => {
      const stale = '2025-09-02'
      await insertRecord(db, {day: '2025-09-01', status: 'PROCESSING', claimToken: randomUUID(), heartbeatSecondsAgo: JUST_FRESH})
      await insertRecord(db, {day: stale, status: 'PROCESSING', claimToken: randomUUID(), heartbeatSecondsAgo: JUST_STALE})
      await insertRecord(db, {day: '2025-08-01', status: 'SUCCESS', events: 9, heartbeatSecondsAgo: 86_400 * 30})
      await insertRecord(db, {day: '2025-08-02', status: 'FAILED', error: 'HTTP 503', heartbeatSecondsAgo: 86_400 * 30})
      await insertRecord(db, {day: '2025-08-03', status: 'ERROR', error: 'bad body', heartbeatSecondsAgo: 86_400 * 30})
      const lastBeat = (await row(stale)).heartbeat_at!
      const before = await snapshot(db)

      const cleaned = await cleanupStale(db, STALE_AFTER)

      expect(cleaned.map((c) => c.day)).to.deep.equal([stale])
      expect(cleaned[0].lastSignOfLife?.getTime()).to.equal(lastBeat.getTime())
      const after = await snapshot(db)
      const unchanged = (rows: string[]) => rows.filter((r) => !r.includes(stale))
      expect(unchanged(after)).to.deep.equal(unchanged(before))
      expect(unchanged(after)).to.have.length(4)

      const errored = await row(stale)
      expect(errored.status).to.equal('ERROR')
      const isoSeconds = lastBeat.toISOString().replace(/\.\d{3}Z$/, 'Z')
      expect(errored.error_message).to.include(`no heartbeat since ${isoSeconds}`)
    })

    it('judges a row without a heartbeat (the old tool’s) by its updated_at', async () => {
      await insertRecord(db, {day: DAY, status: 'PROCESSING'})
      await sql`
        UPDATE audit_events_log SET heartbeat_at = NULL, updated_at = TIMESTAMP '2024-09-29 00:05:00'
        WHERE process_date = ${DAY}
      `.execute(db)

      const cleaned = await cleanupStale(db, STALE_AFTER)

      expect(cleaned.map((c) => c.day)).to.deep.equal([DAY])
      expect((await row(DAY)).error_message).to.include('no heartbeat since 2024-09-29T00:05:00Z')
      expect(cleaned[0].lastSignOfLife?.toISOString()).to.equal('2024-09-29T00:05:00.000Z')
    })

    it('changes a stale row once when two cleanups run at once', async () => {
      const days = ['2025-07-01', '2025-07-02', '2025-07-03']
      // A few rounds, so the two statements really overlap on some row.
      for (let round = 0; round < 5; round++) {
        await clearLog(db)
        for (const day of days) await insertRecord(db, {day, status: 'PROCESSING', claimToken: randomUUID(), heartbeatSecondsAgo: JUST_STALE})
        const [first, second] = await Promise.all([cleanupStale(db, STALE_AFTER), cleanupStale(db, STALE_AFTER)])
        const reported = [...first, ...second].map((c) => c.day).sort()
        expect(reported, `round ${round}`).to.deep.equal(days)
        for (const day of days) expect((await row(day)).status).to.equal('ERROR')
      }
    })
  })

  describe('resetDay', () => {
    const options = {force: false, staleAfterMinutes: STALE_AFTER}

    it('refuses to remove a live run’s row without force (scenario 7)', async () => {
      const token = randomUUID()
      expectClaimed(await claim(DAY, {token}))
      const before = await snapshot(db)
      const result = await resetDay(db, DAY, options)
      expect(result.outcome).to.equal('refused-live')
      expect(result.outcome === 'refused-live' && result.row.claim_token).to.equal(token)
      expect(await snapshot(db)).to.deep.equal(before)
    })

    it('removes a live run’s row with force, and the old run then hits the fence', async () => {
      const token = randomUUID()
      expectClaimed(await claim(DAY, {token}))
      const result = await resetDay(db, DAY, {...options, force: true})
      expect(result.outcome).to.equal('removed')
      expect(result.outcome === 'removed' && result.row.claim_token).to.equal(token)
      expect(await findDay(db, DAY)).to.equal(undefined)

      expect(await heartbeat(db, DAY, token)).to.equal(false)
      expect(await finish(DAY, token)).to.equal(false)
      expect(await findDay(db, DAY)).to.equal(undefined)
    })

    it('removes a stale PROCESSING row without force', async () => {
      await insertRecord(db, {day: DAY, status: 'PROCESSING', claimToken: randomUUID(), heartbeatSecondsAgo: JUST_STALE})
      expect((await resetDay(db, DAY, options)).outcome).to.equal('removed')
      expect(await findDay(db, DAY)).to.equal(undefined)
    })

    it('removes a FAILED row and leaves other days alone', async () => {
      await insertRecord(db, {day: DAY, status: 'FAILED', error: 'HTTP 503'})
      await insertRecord(db, {day: '2025-09-27', status: 'SUCCESS'})
      const result = await resetDay(db, DAY, options)
      expect(result.outcome).to.equal('removed')
      expect(result.outcome === 'removed' && result.row.status).to.equal('FAILED')
      expect((await latestDays(db, 10)).map((r) => r.process_date)).to.deep.equal(['2025-09-27'])
    })

    it('reports none when there is no row', async () => {
      expect(await resetDay(db, DAY, options)).to.deep.equal({outcome: 'none'})
    })
  })

  describe('queries', () => {
    async function seed(rows: Array<[string, ProcessStatus]>): Promise<void> {
      for (const [day, status] of rows) await insertRecord(db, {day, status, heartbeatSecondsAgo: 0})
    }

    it('latestDays lists the newest days first, up to the limit', async () => {
      await seed([['2025-01-15', 'SUCCESS'], ['2024-12-31', 'FAILED'], ['2025-02-01', 'ERROR'], ['2025-01-01', 'SUCCESS'], ['2023-06-30', 'PROCESSING']])
      expect((await latestDays(db, 3)).map((r) => r.process_date)).to.deep.equal(['2025-02-01', '2025-01-15', '2025-01-01'])
      expect((await latestDays(db, 10)).map((r) => r.process_date)).to.deep.equal(['2025-02-01', '2025-01-15', '2025-01-01', '2024-12-31', '2023-06-30'])
    })

    it('countByStatus counts each status as a number', async () => {
      expect(await countByStatus(db)).to.deep.equal({})
      await seed([['2025-01-01', 'SUCCESS'], ['2025-01-02', 'SUCCESS'], ['2025-01-03', 'FAILED'], ['2025-01-04', 'PROCESSING'], ['2025-01-05', 'SUCCESS']])
      expect(await countByStatus(db)).to.deep.equal({FAILED: 1, PROCESSING: 1, SUCCESS: 3})
    })

    it('isLive is true only for a PROCESSING row with a recent heartbeat', async () => {
      await insertRecord(db, {day: '2025-01-01', status: 'PROCESSING', heartbeatSecondsAgo: 0})
      await insertRecord(db, {day: '2025-01-02', status: 'PROCESSING', heartbeatSecondsAgo: JUST_FRESH})
      await insertRecord(db, {day: '2025-01-03', status: 'PROCESSING', heartbeatSecondsAgo: JUST_STALE})
      await insertRecord(db, {day: '2025-01-04', status: 'SUCCESS', heartbeatSecondsAgo: 0})
      const live = async (day: string) => isLive(db, day, STALE_AFTER)
      expect(await live('2025-01-01')).to.equal(true)
      expect(await live('2025-01-02')).to.equal(true)
      expect(await live('2025-01-03')).to.equal(false)
      expect(await live('2025-01-04')).to.equal(false)
      expect(await live('2025-01-05')).to.equal(false)
    })
  })
})
