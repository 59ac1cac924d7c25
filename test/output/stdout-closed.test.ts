/**
 * `process … | head -1`: stdout's reader goes away before the day is all written (EPIPE). The run
 * must not crash, must record what is true (SUCCESS when the day is whole in its --output-dir
 * file; ERROR, to be fetched again, when the events reached nowhere whole), say so in one line,
 * and start no further day of a range. Also: the hint after a stopped range starts at the first
 * day not done and keeps the flags.
 */
import {mkdtempSync, readFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {gunzipSync} from 'node:zlib'

import {expect} from 'chai'
import type {Kysely} from 'kysely'

import {findDay} from '../../src/lib/db/audit-log-repository.js'
import type {Database} from '../../src/lib/db/schema.js'
import {dayFilePath} from '../../src/lib/output/day-file.js'
import {rerunCommand} from '../../src/lib/processing/rerun.js'
import type {RangeDayResult} from '../../src/lib/processing/run-range.js'
import {generateEvents} from '../fake-heroku/events.js'
import type {FakeHeroku} from '../fake-heroku/server.js'
import {expectNoCrash, runAndCloseStdout} from '../support/cli.js'
import {describeOnEngines} from '../support/db.js'
import {useJobSuite} from '../support/job-suite.js'

/** Far more than a pipe holds (64 KB), so the writer is still writing when the reader leaves. */
const EVENTS = 3000

describeOnEngines('stdout closed by its reader (process … | head -1)', function (engine) {
  this.timeout(60_000)
  let fake: FakeHeroku
  let db: Kysely<Database>
  let env: NodeJS.ProcessEnv
  const days = ['2025-03-10', '2025-03-11', '2025-03-12']

  useJobSuite((suite) => ({fake, db, env} = suite), {engine: engine.name})

  beforeEach(() => {
    for (const day of days) fake.setEvents(day, generateEvents(day, EVENTS))
  })

  it('without a day file: the day is ERROR (not delivered, fetched again), one clear line, no crash, exit 1', async () => {
    const result = await runAndCloseStdout(['process', '--date', days[0], '--format', 'json'], env)
    expectNoCrash(result)
    expect(result.firstChunk.length).to.be.greaterThan(0)
    expect(result.code, result.stderr).to.equal(1)
    expect(result.stderr).to.match(new RegExp(`${days[0]} ERROR after .*: stdout was closed by its reader \\(EPIPE\\) before the day's ${EVENTS} events were all written, and no --output-dir holds them: not delivered, so the day will be fetched again`))
    const row = await findDay(db, days[0])
    expect(row?.status).to.equal('ERROR')
    expect(row?.error_message).to.match(/^stdout was closed by its reader/)
  })

  it('with a day file: the day is whole in the file, so SUCCESS, with a warning that stdout missed part of it, exit 0', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'audit-logger-epipe-'))
    const result = await runAndCloseStdout(['process', '--date', days[0], '--output-dir', dir], env)
    expectNoCrash(result)
    expect(result.code, result.stderr).to.equal(0)
    expect(result.stderr).to.match(new RegExp(`WARN .*${days[0]} SUCCESS: ${EVENTS} events .*; stdout was closed by its reader before all were written there: the whole day is in the file`))
    expect(await findDay(db, days[0])).to.include({status: 'SUCCESS', events_count: EVENTS})
    const lines = gunzipSync(readFileSync(dayFilePath(dir, days[0]))).toString().split('\n').filter(Boolean)
    expect(lines).to.have.length(EVENTS)
  })

  it('in a range: no further day starts, and the hint names the first day not done with the same flags', async () => {
    const result = await runAndCloseStdout(['process', '--from', days[0], '--to', days[2], '--format', 'json', '--force', '--stale-after', '30'], env)
    expectNoCrash(result)
    expect(result.code, result.stderr).to.equal(1)
    expect(fake.requestsForDay(days[1]), 'no later day fetched').to.have.length(0)
    expect(await findDay(db, days[1])).to.equal(undefined)
    expect(result.stderr).to.match(/ERROR .*\[1\/3\] 2025-03-10 ERROR: stdout was closed by its reader/)
    expect(result.stderr).to.include(
      'Stopped: stdout was closed by its reader, so 2 day(s) were not started. Run again with stdout read to the end: audit-logger process --from 2025-03-10 --to 2025-03-12 --force --format json --stale-after 30',
    )
  })
})

describe('the hint to run a stopped range again', () => {
  const result = (day: string, outcome: RangeDayResult['outcome']): RangeDayResult => ({day, outcome, events: 0, pages: 0, durationMs: 0})
  const flags = {mode: 'range' as const, to: '2025-05-13', force: false, format: 'text' as const}

  it('starts at the first day not done (a FAILED day before the days not started), not after it', () => {
    const results = [result('2025-05-10', 'success'), result('2025-05-11', 'done'), result('2025-05-12', 'failed'), result('2025-05-13', 'not-started')]
    expect(rerunCommand('audit-logger', flags, results)).to.equal('audit-logger process --from 2025-05-12 --to 2025-05-13')
  })

  it('keeps --force, --format, --output-dir (quoted for the shell), --stale-after and --verbose', () => {
    const results = [result('2025-05-12', 'error'), result('2025-05-13', 'not-started')]
    expect(rerunCommand('audit-logger', {...flags, force: true, format: 'json', outputDir: "/data/it's here", staleAfterMinutes: 30, verbose: true}, results)).to.equal(
      "audit-logger process --from 2025-05-12 --to 2025-05-13 --force --format json --output-dir '/data/it'\\''s here' --stale-after 30 --verbose",
    )
  })

  it('repeats a catch-up as a catch-up, with its --days', () => {
    expect(rerunCommand('audit-logger', {...flags, mode: 'catch-up', days: 30}, [result('2025-05-12', 'not-started')])).to.equal(
      'audit-logger process --catch-up --days 30 (the next scheduled catch-up does it too)',
    )
  })
})
