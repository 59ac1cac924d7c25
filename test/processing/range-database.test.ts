/**
 * A range whose database goes away: once a day fails for want of it, one probe decides whether the
 * range stops (the database is gone: every further day would fail after a connection timeout) or
 * goes on (a blip: a dropped connection the pool has already replaced).
 */
import {expect} from 'chai'
import type {Kysely} from 'kysely'

import type {Database} from '../../src/lib/db/schema.js'
import type {AuditClient} from '../../src/lib/heroku/client.js'
import type {DayResult, processDay} from '../../src/lib/processing/process-day.js'
import {renderRangeSummary, runRange} from '../../src/lib/processing/run-range.js'
import {CaptureStream, captureLogger} from '../support/capture.js'

const DAYS = ['2025-02-01', '2025-02-02', '2025-02-03', '2025-02-04']

/** A day job that loses the database on the second day. */
const job = (async (_deps, options): Promise<DayResult> => {
  if (options.day === DAYS[1]) {
    return {day: options.day, outcome: 'error', events: 0, pages: 1, durationMs: 5, databaseUnreachable: true, message: 'lost the database: Connection terminated unexpectedly'}
  }

  return {day: options.day, outcome: 'success', events: 3, pages: 1, durationMs: 5}
}) as typeof processDay

function range(probeDatabase: () => Promise<void>) {
  const probes: string[] = []
  const done = runRange(
    {
      db: {} as Kysely<Database>,
      client: {} as AuditClient,
      output: new CaptureStream(),
      logger: captureLogger(),
      processDay: job,
      probeDatabase: async () => {
        probes.push('probe')
        await probeDatabase()
      },
    },
    {days: DAYS, format: 'json', force: false, staleAfterMinutes: 15, heartbeatIntervalMs: 1000, rateLimitReserve: 0},
  )
  return {done, probes}
}

describe('a range and a lost database', () => {
  it('stops once the probe finds the database gone: the rest not started, exit 1, and says so', async () => {
    const {done, probes} = range(async () => Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:5432')))
    const result = await done
    expect(probes).to.have.length(1)
    expect(result.results.map((r) => r.outcome)).to.deep.equal(['success', 'error', 'not-started', 'not-started'])
    expect(result.stopped).to.deep.equal({reason: 'database', daysLeft: 2, message: 'connect ECONNREFUSED 127.0.0.1:5432'})
    expect(result.exitCode).to.equal(1)
    const summary = renderRangeSummary(result, {rerun: 'audit-logger process --from 2025-02-03 --to 2025-02-04'})
    expect(summary).to.match(/2025-02-03 +not started .*the database cannot be reached/)
    expect(summary).to.include('Stopped: the database cannot be reached (connect ECONNREFUSED 127.0.0.1:5432), so 2 day(s) were not started. Run again once it is back: audit-logger process --from 2025-02-03 --to 2025-02-04')
  })

  it('goes on when the probe finds the database back (a dropped connection, replaced)', async () => {
    const {done, probes} = range(async () => {})
    const result = await done
    expect(probes).to.have.length(1)
    expect(result.results.map((r) => r.outcome)).to.deep.equal(['success', 'error', 'success', 'success'])
    expect(result.stopped).to.equal(undefined)
    expect(result.exitCode).to.equal(1)
  })
})
