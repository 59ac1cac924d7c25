/**
 * Ranges, catch-up planning, the rate budget, the digest, progress and the per-day file, as
 * library functions against a real PostgreSQL and the loopback fake of Heroku.
 */
import {existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {basename, join} from 'node:path'
import {gunzipSync} from 'node:zlib'

import {expect} from 'chai'
import type {Kysely} from 'kysely'

import {loadConfig} from '../../src/lib/config.js'
import {findDay} from '../../src/lib/db/audit-log-repository.js'
import type {Database} from '../../src/lib/db/schema.js'
import {MAX_RANGE_DAYS, addDays, daysBetween, parseProcessableRange, yesterdayUtc} from '../../src/lib/dates.js'
import {type AuditClientOptions, createAuditClient} from '../../src/lib/heroku/client.js'
import {type DayFile, dayFilePath, openDayFile} from '../../src/lib/output/day-file.js'
import {eventsDigest, shortDigest} from '../../src/lib/processing/events-digest.js'
import {catchUpWindow, planDays, renderPlan} from '../../src/lib/processing/plan.js'
import {processDay, type ProcessDayOptions} from '../../src/lib/processing/process-day.js'
import {lineProgress, renderBar, renderDayLine, terminalProgress} from '../../src/lib/processing/progress.js'
import {
  type RangeDayResult,
  minutesToRefill,
  rangeExitCode,
  renderRangeSummary,
  runRange,
  type RunRangeOptions,
} from '../../src/lib/processing/run-range.js'
import {CaptureStream, captureLogger} from '../support/capture.js'
import {describeOnEngines, insertRecord, snapshot} from '../support/db.js'
import {useJobSuite} from '../support/job-suite.js'
import {generateEvents} from '../fake-heroku/events.js'
import type {FakeHeroku, Fault} from '../fake-heroku/server.js'
import {usageErrorOf} from '../support/helpers.js'

const NOW = new Date('2025-10-01T12:00:00Z')

describe('date ranges', () => {
  it('walk month ends, year ends and leap days in UTC', () => {
    expect(daysBetween('2025-04-29', '2025-05-02')).to.deep.equal(['2025-04-29', '2025-04-30', '2025-05-01', '2025-05-02'])
    expect(daysBetween('2023-12-30', '2024-01-02')).to.deep.equal(['2023-12-30', '2023-12-31', '2024-01-01', '2024-01-02'])
    expect(daysBetween('2024-02-27', '2024-03-01')).to.deep.equal(['2024-02-27', '2024-02-28', '2024-02-29', '2024-03-01'])
    expect(daysBetween('2023-02-27', '2023-03-01')).to.deep.equal(['2023-02-27', '2023-02-28', '2023-03-01'])
    expect(daysBetween('2025-09-28', '2025-09-28')).to.deep.equal(['2025-09-28'])
    expect(daysBetween('2025-09-29', '2025-09-28')).to.deep.equal([])
    expect(daysBetween('2024-01-01', '2024-12-31')).to.have.length(366)
  })

  it('does not depend on the process time zone', () => {
    const saved = process.env.TZ
    process.env.TZ = 'America/Sao_Paulo'
    try {
      expect(daysBetween('2024-03-09', '2024-03-11')).to.deep.equal(['2024-03-09', '2024-03-10', '2024-03-11'])
      expect(addDays('2024-10-26', 2)).to.equal('2024-10-28')
    } finally {
      if (saved === undefined) delete process.env.TZ
      else process.env.TZ = saved
    }
  })

  it('validates --from/--to like --date, in order, and at most a year long', () => {
    expect(parseProcessableRange('2024-01-01', '2024-12-31', NOW)).to.deep.equal({from: '2024-01-01', to: '2024-12-31'})
    expect(usageErrorOf(() => parseProcessableRange('2024-02-30', '2024-03-01', NOW)).message).to.match(/^--from "2024-02-30" is not a real calendar date: February 2024 has 29 days/)
    expect(usageErrorOf(() => parseProcessableRange('2025-09-01', 'yesterday', NOW)).message).to.match(/^--to "yesterday" is not in YYYY-MM-DD form/)
    const today = usageErrorOf(() => parseProcessableRange('2025-09-01', '2025-10-01', NOW))
    expect(today.message).to.match(/^--to 2025-10-01 is today \(UTC\)/)
    expect(today.hint).to.equal('process a day before 2025-10-01, e.g. --to 2025-09-30')
    expect(usageErrorOf(() => parseProcessableRange('2025-10-05', '2025-10-06', NOW)).message).to.match(/^--from 2025-10-05 is in the future/)
    const reversed = usageErrorOf(() => parseProcessableRange('2025-09-10', '2025-09-01', NOW))
    expect(reversed.message).to.equal('--from 2025-09-10 is after --to 2025-09-01')
    expect(reversed.hint).to.equal('swap them: --from 2025-09-01 --to 2025-09-10')
    const long = usageErrorOf(() => parseProcessableRange('2024-01-01', '2025-01-01', NOW))
    expect(long.message).to.equal(`the range 2024-01-01..2025-01-01 has 367 days, more than the ${MAX_RANGE_DAYS} one run takes`)
    expect(long.hint).to.match(/--from 2024-01-01 --to 2024-12-31/)
  })

  it('puts the catch-up window at the N days that end yesterday', () => {
    expect(catchUpWindow(7, NOW)).to.deep.equal({from: '2025-09-24', to: '2025-09-30'})
    expect(catchUpWindow(1, NOW)).to.deep.equal({from: '2025-09-30', to: '2025-09-30'})
    expect(catchUpWindow(3, new Date('2024-03-01T00:00:00Z'))).to.deep.equal({from: '2024-02-27', to: '2024-02-29'})
  })
})

describe('range settings from the environment', () => {
  const base = {DATABASE_URL: 'postgres://u@127.0.0.1/x', HEROKU_API_TOKEN: 'HRKU-x', HEROKU_ACCOUNT_ID: 'acme'}

  it('reads CATCH_UP_DAYS, RATE_LIMIT_RESERVE and OUTPUT_DIR for process, leaving defaults to the command', () => {
    expect(loadConfig(base, {needsHeroku: true}).processing).to.deep.equal({catchUpDays: undefined, rateLimitReserve: undefined, outputDir: undefined, logLinesPerSecond: 0})
    const set = loadConfig({...base, CATCH_UP_DAYS: '14', RATE_LIMIT_RESERVE: '0', OUTPUT_DIR: ' /var/audit '}, {needsHeroku: true})
    expect(set.processing).to.deep.equal({catchUpDays: 14, rateLimitReserve: 0, outputDir: '/var/audit', logLinesPerSecond: 0})
    // Other commands neither need nor check them.
    expect(loadConfig({...base, CATCH_UP_DAYS: 'x'}).processing).to.equal(undefined)
  })

  it('refuses values out of range, naming the variable', () => {
    for (const [name, value] of [['CATCH_UP_DAYS', '0'], ['CATCH_UP_DAYS', '91'], ['RATE_LIMIT_RESERVE', '4501'], ['RATE_LIMIT_RESERVE', '-1']]) {
      const error = usageErrorOf(() => loadConfig({...base, [name]: value}, {needsHeroku: true}))
      expect(error.message, `${name}=${value}`).to.match(new RegExp(`^${name} "${value}" is not a whole number from`))
    }
  })
})

describe('the events digest', () => {
  it('is SHA-256 hex over the sorted ids joined by newlines, whatever their order', () => {
    // printf 'a\nb\nc' | sha256sum
    expect(eventsDigest(['c', 'a', 'b'])).to.equal('ea7fb08b7a2dc4619ffb7c7bb38d95a2047935fa165d71b12efd3852a2e6d0cc')
    expect(eventsDigest(['b', 'c', 'a'])).to.equal('ea7fb08b7a2dc4619ffb7c7bb38d95a2047935fa165d71b12efd3852a2e6d0cc')
    expect(eventsDigest([])).to.equal('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855')
    expect(eventsDigest(['a', 'b'])).not.to.equal(eventsDigest(['a', 'b', 'c']))
    expect(eventsDigest(['ab'])).not.to.equal(eventsDigest(['a', 'b']))
    expect(shortDigest(eventsDigest([]))).to.equal('e3b0c44298fc')
    expect(shortDigest(null)).to.equal('-')
  })
})

describe('progress', () => {
  const day = (outcome: RangeDayResult['outcome'], extra: Partial<RangeDayResult> = {}): RangeDayResult => ({
    day: '2025-09-01',
    outcome,
    events: 0,
    pages: 0,
    durationMs: 0,
    ...extra,
  })

  it('draws a terminal bar with day N of M', () => {
    expect(renderBar({total: 20, finished: 0, ok: 0, failed: 0, skipped: 0}, 10)).to.equal('[..........] 0/20  ok 0  failed 0  skipped 0')
    expect(renderBar({total: 20, finished: 10, current: '2025-09-11', ok: 8, failed: 1, skipped: 1}, 10)).to.equal(
      '[#####.....] 10/20  2025-09-11  ok 8  failed 1  skipped 1',
    )
    expect(renderBar({total: 3, finished: 3, ok: 3, failed: 0, skipped: 0}, 6)).to.match(/^\[######\] 3\/3/)
    expect(renderBar({total: 0, finished: 0, ok: 0, failed: 0, skipped: 0}, 4)).to.match(/^\[####\] 0\/0/)
  })

  it('redraws one line in place on a terminal, and keeps log lines off the bar', () => {
    const stream = new CaptureStream()
    const progress = terminalProgress(stream)
    const logged: string[] = []
    const logger = progress.wrap({...captureLogger(), warn: (m: string) => logged.push(`cleared=${stream.text.endsWith('\r\u001B[2K')} ${m}`)})
    progress.start(2)
    progress.dayStarted('2025-09-01')
    logger.warn('retrying')
    progress.dayFinished(day('success', {events: 3, pages: 1}))
    progress.dayStarted('2025-09-02')
    progress.dayFinished(day('failed', {day: '2025-09-02'}))
    expect(stream.text, 'one line until the end').not.to.include('\n')
    progress.stop()
    expect(stream.text.endsWith('\n')).to.equal(true)
    // Each frame starts with a carriage return and clears the line.
    const frames = stream.text.split('\r\u001B[2K').filter(Boolean)
    expect(frames.at(-1)).to.equal(`${renderBar({total: 2, finished: 2, ok: 1, failed: 1, skipped: 0})}\n`)
    // The bar was cleared just before the log line was written.
    expect(logged).to.deep.equal(['cleared=true retrying'])
    // …and redrawn right after it: bar, cleared, (the log line), the same bar again.
    const frame = renderBar({total: 2, finished: 0, current: '2025-09-01', ok: 0, failed: 0, skipped: 0})
    expect(stream.text).to.include(`${frame}\r\u001B[2K\r\u001B[2K${frame}`)
  })

  it('writes one plain line per finished day elsewhere', () => {
    const logger = captureLogger()
    const progress = lineProgress(logger)
    progress.start(3)
    progress.dayStarted('2025-09-01')
    progress.dayFinished(day('success', {events: 12, pages: 1, durationMs: 400, rateLimitRemaining: 4321}))
    progress.dayFinished(day('failed', {day: '2025-09-02', message: 'Heroku API answered 503'}))
    progress.dayFinished(day('done', {day: '2025-09-03', message: '2025-09-03 is already SUCCESS'}))
    progress.stop()
    expect(logger.lines).to.deep.equal([
      'info [1/3] 2025-09-01 SUCCESS: 12 events in 1 page, 0.4 s, RateLimit-Remaining 4321',
      'error [2/3] 2025-09-02 FAILED: Heroku API answered 503',
      'info [3/3] 2025-09-03 skipped (done): 2025-09-03 is already SUCCESS',
    ])
    expect(renderDayLine(day('success', {events: 2500, pages: 3, durationMs: 1500}), 1, 1)).to.equal('[1/1] 2025-09-01 SUCCESS: 2500 events in 3 pages, 1.5 s')
  })
})

describe('the day file', () => {
  let dir: string
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'audit-logger-day-file-'))
  })

  it('appears under its final name only when committed, complete', async () => {
    const file = await openDayFile(dir, '2025-09-28')
    await file.write('{"id":"a"}\n')
    await file.write('{"id":"b"}\n')
    expect(readdirSync(dir)).to.deep.equal([basename(file.tempPath)])
    expect(basename(file.tempPath)).to.match(new RegExp(`^\\.2025-09-28\\.ndjson\\.gz\\.tmp-${process.pid}-[0-9a-f]{16}$`))
    await file.commit()
    expect(readdirSync(dir)).to.deep.equal(['2025-09-28.ndjson.gz'])
    expect(gunzipSync(readFileSync(dayFilePath(dir, '2025-09-28'))).toString()).to.equal('{"id":"a"}\n{"id":"b"}\n')
  })

  it('removes the day’s leftovers from dead runs, and nothing of other days', async () => {
    writeFileSync(join(dir, '.2025-09-28.ndjson.gz.tmp-999999'), 'half a day')
    writeFileSync(join(dir, '.2025-09-29.ndjson.gz.tmp-999999'), 'another day, another run')
    writeFileSync(join(dir, '2025-09-27.ndjson.gz'), 'a finished day')
    const file = await openDayFile(dir, '2025-09-28')
    expect(readdirSync(dir).toSorted()).to.deep.equal([basename(file.tempPath), '.2025-09-29.ndjson.gz.tmp-999999', '2025-09-27.ndjson.gz'].toSorted())
    await file.discard()
  })

  it('leaves nothing behind when discarded, and replaces an older file when committed again', async () => {
    const first = await openDayFile(dir, '2025-09-28')
    await first.write('old\n')
    await first.commit()
    const dropped = await openDayFile(dir, '2025-09-28')
    await dropped.write('half a day\n')
    await dropped.discard()
    expect(readdirSync(dir)).to.deep.equal(['2025-09-28.ndjson.gz'])
    expect(gunzipSync(readFileSync(dayFilePath(dir, '2025-09-28'))).toString()).to.equal('old\n')
    const second = await openDayFile(join(dir, 'nested', 'deeper'), '2025-09-28')
    await second.write('new\n')
    await second.commit()
    expect(gunzipSync(readFileSync(dayFilePath(join(dir, 'nested', 'deeper'), '2025-09-28'))).toString()).to.equal('new\n')
  })
})

describeOnEngines('ranges against the fake API', (engine) => {
  let fake: FakeHeroku
  let db: Kysely<Database>

  useJobSuite((suite) => ({fake, db} = suite), {open: engine.open, rateLimitRemaining: 4500})

  function client(overrides: Partial<AuditClientOptions> = {}) {
    return createAuditClient({apiUrl: fake.url, token: fake.token, accountId: 'acme', baseDelayMs: 5, maxDelayMs: 20, attemptTimeoutMs: 2000, maxAttempts: 2, ...overrides})
  }

  function range(days: string[], options: Partial<RunRangeOptions> = {}, clientOptions: Partial<AuditClientOptions> = {}) {
    const output = new CaptureStream()
    const logger = captureLogger()
    const done = runRange(
      {db, client: client(clientOptions), output, logger, progress: lineProgress(logger)},
      {days, format: 'json', force: false, staleAfterMinutes: 15, heartbeatIntervalMs: 1000, rateLimitReserve: 500, ...options},
    )
    return {output, logger, done}
  }

  describe('runRange', () => {
    it('processes every day oldest first, across a year end and a leap day', async () => {
      const days = [...daysBetween('2023-12-30', '2024-01-02'), ...daysBetween('2024-02-27', '2024-03-01')]
      for (const day of days) fake.setEvents(day, generateEvents(day, 3))
      const {output, done} = range(days)
      const result = await done
      expect(result.exitCode).to.equal(0)
      expect(result.results.map((r) => [r.day, r.outcome])).to.deep.equal(days.map((d) => [d, 'success']))
      expect(fake.requests.map((r) => r.day), 'one request per day, in order').to.deep.equal(days)
      const written = output.lines().map((line) => (JSON.parse(line) as {id: string}).id)
      expect(written).to.deep.equal(days.flatMap((d) => generateEvents(d, 3).map((e) => e.id)))
      for (const day of days) {
        const row = await findDay(db, day)
        expect(row, day).to.include({status: 'SUCCESS', events_count: 3, events_digest: eventsDigest(generateEvents(day, 3).map((e) => e.id))})
      }
    })

    it('skips done days, leaves live ones alone, retries failed ones, and goes on after a failure', async () => {
      const days = daysBetween('2025-03-01', '2025-03-05')
      await insertRecord(db, {day: '2025-03-01', status: 'SUCCESS', events: 9})
      await insertRecord(db, {day: '2025-03-02', status: 'PROCESSING', heartbeatSecondsAgo: 2, claimToken: crypto.randomUUID()})
      await insertRecord(db, {day: '2025-03-03', status: 'FAILED', error: 'earlier outage'})
      // 03-04 fails for good (two tries), 03-05 still runs.
      fake.script([{kind: 'status', status: 503}, {kind: 'status', status: 503}], {day: '2025-03-04'})
      const {done, logger} = range(days)
      const result = await done
      expect(result.results.map((r) => r.outcome)).to.deep.equal(['done', 'busy', 'success', 'failed', 'success'])
      expect(result.exitCode).to.equal(1)
      expect(fake.requestsForDay('2025-03-01')).to.have.length(0)
      expect(fake.requestsForDay('2025-03-02')).to.have.length(0)
      expect(await findDay(db, '2025-03-03')).to.include({status: 'SUCCESS', attempts: 2})
      expect((await findDay(db, '2025-03-04'))?.status).to.equal('FAILED')
      expect((await findDay(db, '2025-03-05'))?.status).to.equal('SUCCESS')
      expect(logger.lines.filter((l) => /^\w+ \[\d\/5\]/.test(l))).to.have.length(5)
    })

    it('stops starting days once RateLimit-Remaining falls below the reserve, leaving the rest untouched', async () => {
      const days = daysBetween('2025-05-01', '2025-05-10')
      // Each request takes a token: the answers say 504, 503, 502, 501, 500, 499 — then no new day.
      fake.setRateLimitRemaining(505)
      const {done} = range(days)
      const result = await done
      expect(result.results.map((r) => r.outcome)).to.deep.equal([...Array(6).fill('success'), ...Array(4).fill('not-started')])
      expect(result.stopped).to.deep.equal({reason: 'budget', rateLimitRemaining: 499, reserve: 500, daysLeft: 4, retryInMinutes: 1})
      expect(result.exitCode, 'nothing failed').to.equal(0)
      expect(fake.requests).to.have.length(6)
      for (const day of days.slice(6)) expect(await findDay(db, day), `${day} has no record, not FAILED`).to.equal(undefined)
      const summary = renderRangeSummary(result, {rerun: 'audit-logger process --from 2025-05-07 --to 2025-05-10'})
      expect(summary).to.match(/2025-05-07 +not started +- +- +- +rate budget/)
      expect(summary).to.match(/10 day\(s\): 6 SUCCESS, 4 not started\./)
      expect(summary).to.include('RateLimit-Remaining 499 is below the reserve of 500, so 4 day(s) were not started')
      expect(summary).to.include('Run again in about 1 minute(s): audit-logger process --from 2025-05-07 --to 2025-05-10')
    })

    it('notices when other tools drain the pool mid-range', async () => {
      const days = daysBetween('2025-05-01', '2025-05-06')
      // After the second day, someone else spends most of the pool.
      const job: typeof processDay = async (deps, options) => {
        const result = await processDay(deps, options)
        if (options.day === '2025-05-02') fake.setRateLimitRemaining(101)
        return result
      }

      const logger = captureLogger()
      const result = await runRange(
        {db, client: client(), output: new CaptureStream(), logger, processDay: job},
        {days, format: 'json', force: false, staleAfterMinutes: 15, heartbeatIntervalMs: 1000, rateLimitReserve: 500},
      )
      expect(result.results.map((r) => r.outcome)).to.deep.equal(['success', 'success', 'success', 'not-started', 'not-started', 'not-started'])
      expect(result.stopped).to.include({reason: 'budget', rateLimitRemaining: 100, daysLeft: 3})
      expect(minutesToRefill(100, 500)).to.equal(6)
      expect(result.stopped).to.include({retryInMinutes: 6})
    })

    it('reads the pool from the first day itself: no request is spent just to probe it', async () => {
      fake.setRateLimitRemaining(300)
      const result = await range(daysBetween('2025-05-01', '2025-05-03')).done
      expect(result.results.map((r) => r.outcome)).to.deep.equal(['success', 'not-started', 'not-started'])
      expect(fake.requests.map((r) => r.day)).to.deep.equal(['2025-05-01'])
    })

    it('takes a day that ends on 429 as an empty pool, and starts no further day', async () => {
      fake.script([{kind: 'status', status: 429, retryAfter: '3600'}], {day: '2025-05-02'})
      const result = await range(daysBetween('2025-05-01', '2025-05-04')).done
      expect(result.results.map((r) => r.outcome)).to.deep.equal(['success', 'failed', 'not-started', 'not-started'])
      expect(result.results[1]).to.include({rateLimitRemaining: 0})
      expect(result.stopped).to.deep.equal({reason: 'budget', rateLimitRemaining: 0, reserve: 500, daysLeft: 2, retryInMinutes: 7})
      expect(result.exitCode, 'the 429 day failed').to.equal(1)
      expect(fake.requests.map((r) => r.day)).to.deep.equal(['2025-05-01', '2025-05-02'])
    })

    it('runs every day with the budget turned off (reserve 0)', async () => {
      fake.setRateLimitRemaining(10)
      const result = await range(daysBetween('2025-05-01', '2025-05-03'), {rateLimitReserve: 0}).done
      expect(result.results.map((r) => r.outcome)).to.deep.equal(['success', 'success', 'success'])
    })

    it('stops on a signal: the running day is FAILED, the rest untouched, exit 1', async () => {
      fake.script([{kind: 'hang'}], {day: '2025-05-02'})
      const cancel = new AbortController()
      const {done} = range(daysBetween('2025-05-01', '2025-05-04'), {signal: cancel.signal})
      const started = Date.now()
      while (fake.requestsForDay('2025-05-02').length === 0 && Date.now() - started < 5000) await new Promise((r) => setTimeout(r, 10))
      cancel.abort()
      const result = await done
      expect(result.results.map((r) => r.outcome)).to.deep.equal(['success', 'failed', 'not-started', 'not-started'])
      expect(result.stopped).to.deep.equal({reason: 'signal', daysLeft: 2})
      expect(result.exitCode).to.equal(1)
      expect(await findDay(db, '2025-05-03')).to.equal(undefined)
    })

    const accountWide: {name: string; fault?: Fault; client?: Partial<AuditClientOptions>; problem: string}[] = [
      {
        name: 'a wrong token (401)',
        client: {token: 'HRKU-not-the-right-token-000000000000000000'},
        problem: 'Heroku API answered 401 unauthorized: the API token is missing, invalid or expired: set HEROKU_API_TOKEN to a valid token',
      },
      {name: 'a delinquent account (402)', fault: {kind: 'status', status: 402}, problem: 'Heroku API answered 402 delinquent: the account is delinquent: settle its billing'},
      {name: 'a user who is not an Enterprise Admin (403)', fault: {kind: 'status', status: 403}, problem: "Heroku API answered 403 forbidden: the token's user must be an Enterprise Admin of the account"},
      {
        name: 'an unknown account (404)',
        client: {accountId: 'no-such-account'},
        problem: 'Heroku API answered 404 not_found: HEROKU_ACCOUNT_ID is wrong or not an enterprise account',
      },
    ]
    for (const {name, fault, client: clientOptions, problem} of accountWide) {
      it(`stops at the first day on ${name}: that day FAILED, the rest not started (no record), exit 1`, async () => {
        const days = daysBetween('2025-05-01', '2025-05-04')
        if (fault) fake.script([fault])
        const {done} = range(days, {}, clientOptions)
        const result = await done
        expect(result.results.map((r) => r.outcome)).to.deep.equal(['failed', 'not-started', 'not-started', 'not-started'])
        expect(result.stopped).to.deep.equal({reason: 'account', daysLeft: 3, day: '2025-05-01', problem})
        expect(result.exitCode).to.equal(1)
        expect(fake.requests, 'one request in all').to.have.length(1)
        expect((await findDay(db, '2025-05-01'))?.status).to.equal('FAILED')
        for (const day of days.slice(1)) expect(await findDay(db, day), day).to.equal(undefined)
        const summary = renderRangeSummary(result, {rerun: 'audit-logger process --from 2025-05-02 --to 2025-05-04'})
        expect(summary).to.match(/2025-05-02 +not started +- +- +- +the API refused the token or account/)
        expect(summary).to.include(
          `Stopped: ${problem}. That is about the account, not 2025-05-01: every other day would get the same answer, so 3 day(s) were not started (left without a record). ` +
            'Fix it, then run again: audit-logger process --from 2025-05-02 --to 2025-05-04',
        )
      })
    }

    it('goes on after an answer about one day (422), and after an account-wide one on the last day', async () => {
      fake.script([{kind: 'status', status: 422}], {day: '2025-05-01'})
      fake.script([{kind: 'status', status: 403}], {day: '2025-05-03'})
      const result = await range(daysBetween('2025-05-01', '2025-05-03')).done
      expect(result.results.map((r) => r.outcome)).to.deep.equal(['failed', 'success', 'failed'])
      expect(result.stopped).to.equal(undefined)
    })

    it('turns an exception of one day (e.g. the database) into that day’s ERROR and goes on', async () => {
      const job: typeof processDay = async (deps, options) => {
        if (options.day === '2025-05-01') throw new Error('connection terminated unexpectedly')
        return processDay(deps, options)
      }

      const result = await runRange(
        {db, client: client(), output: new CaptureStream(), logger: captureLogger(), processDay: job},
        {days: daysBetween('2025-05-01', '2025-05-02'), format: 'json', force: false, staleAfterMinutes: 15, heartbeatIntervalMs: 1000, rateLimitReserve: 500},
      )
      expect(result.results.map((r) => r.outcome)).to.deep.equal(['error', 'success'])
      expect(result.results[0].message).to.match(/connection terminated/)
      expect(result.exitCode).to.equal(1)
    })

    it('exit code: the worst outcome, a budget stop alone being 0', () => {
      const r = (outcome: RangeDayResult['outcome']): RangeDayResult => ({day: 'd', outcome, events: 0, pages: 0, durationMs: 0})
      const budget = {reason: 'budget', rateLimitRemaining: 1, reserve: 500, daysLeft: 1, retryInMinutes: 7} as const
      expect(rangeExitCode([r('success'), r('done'), r('busy')])).to.equal(0)
      expect(rangeExitCode([r('success'), r('not-started')], budget)).to.equal(0)
      expect(rangeExitCode([r('success'), r('lost'), r('not-started')], budget)).to.equal(1)
      expect(rangeExitCode([r('error'), r('success')])).to.equal(1)
      expect(rangeExitCode([r('success'), r('not-started')], {reason: 'signal', daysLeft: 1})).to.equal(1)
    })
  })

  describe('planDays (catch-up and dry-run)', () => {
    const planOptions = {force: false, staleAfterMinutes: 15, pageSize: 1000, maxAttemptsPerRequest: 5}

    it('catch-up: fetches missing, FAILED, ERROR and abandoned days; leaves done and live ones alone', async () => {
      const window = catchUpWindow(7)
      const [d1, d2, d3, d4, d5, d6, yesterday] = daysBetween(window.from, window.to)
      expect(yesterday).to.equal(yesterdayUtc())
      await insertRecord(db, {day: d1, status: 'SUCCESS', events: 2500})
      await insertRecord(db, {day: d2, status: 'FAILED'})
      await insertRecord(db, {day: d3, status: 'ERROR'})
      await insertRecord(db, {day: d4, status: 'PROCESSING', heartbeatSecondsAgo: 5})
      await insertRecord(db, {day: d5, status: 'PROCESSING', heartbeatSecondsAgo: 20 * 60})
      const before = await snapshot(db)

      const plan = await planDays(db, {mode: 'catch-up', ...window, ...planOptions})
      expect(plan.days.map((d) => [d.day, d.status, d.action])).to.deep.equal([
        [d1, 'SUCCESS', 'skip'],
        [d2, 'FAILED', 'fetch'],
        [d3, 'ERROR', 'fetch'],
        [d4, 'PROCESSING', 'skip'],
        [d5, 'PROCESSING', 'fetch'],
        [d6, 'MISSING', 'fetch'],
        [yesterday, 'MISSING', 'fetch'],
      ])
      expect(plan.attempt).to.deep.equal([d2, d3, d5, d6, yesterday])
      expect(plan.stateKnown).to.equal(true)
      // Five days, each as busy as the busiest recorded day (2500 events = 3 pages of 1000).
      expect(plan.api).to.deep.equal({minimum: 5, estimate: 15, assumedEventsPerDay: 2500, pageSize: 1000, maxAttemptsPerRequest: 5})
      expect(await snapshot(db), 'planning writes nothing').to.deep.equal(before)

      const text = renderPlan(plan)
      expect(text).to.match(/5 of 7 day\(s\) would be fetched/)
      expect(text).to.match(new RegExp(`${d4}  PROCESSING  skip: held by a live run`))
      expect(text).to.match(new RegExp(`${d5}  PROCESSING  fetch: take over a run with no heartbeat for 15 min`))
      expect(text).to.match(/API requests: at least 5 \(one per day\); about 15 if each day is as busy as the busiest recorded day \(2500 events; pages of 1000\)/)
      expect(text).to.match(/up to 5 tries per request/)
    })

    it('range: attempts every day; --force plans SUCCESS days too, estimated from their own counts', async () => {
      await insertRecord(db, {day: '2025-06-02', status: 'SUCCESS', events: 1500})
      const plain = await planDays(db, {mode: 'range', from: '2025-06-01', to: '2025-06-03', ...planOptions})
      expect(plain.attempt).to.deep.equal(['2025-06-01', '2025-06-02', '2025-06-03'])
      expect(plain.days.map((d) => d.action)).to.deep.equal(['fetch', 'skip', 'fetch'])
      const forced = await planDays(db, {mode: 'range', from: '2025-06-01', to: '2025-06-03', ...planOptions, force: true})
      expect(forced.days.map((d) => d.action)).to.deep.equal(['fetch', 'fetch', 'fetch'])
      expect(forced.api).to.include({minimum: 3, estimate: 6})
    })

    it('says how little it knows on an empty table', async () => {
      const plan = await planDays(db, {mode: 'range', from: '2025-06-01', to: '2025-06-02', ...planOptions})
      expect(plan.api).to.include({minimum: 2, estimate: 2, assumedEventsPerDay: 0})
      expect(renderPlan(plan)).to.match(/API requests: at least 2 \(one per day\); more for a day past 1000 events/)
    })
  })

  describe('processDay with an output directory', () => {
    const DAY = '2025-07-14'
    let dir: string

    beforeEach(() => {
      dir = mkdtempSync(join(tmpdir(), 'audit-logger-out-'))
      fake.setEvents(DAY, generateEvents(DAY, 2500))
    })

    function run(options: Partial<ProcessDayOptions> = {}, openFile?: (dir: string, day: string) => Promise<DayFile>) {
      const output = new CaptureStream()
      const done = processDay(
        {db, client: client(), output, logger: captureLogger(), openFile},
        {day: DAY, format: 'text', force: false, staleAfterMinutes: 15, heartbeatIntervalMs: 1000, outputDir: dir, ...options},
      )
      return {output, done}
    }

    function fileEvents(): Array<{id: string}> {
      return gunzipSync(readFileSync(dayFilePath(dir, DAY))).toString().split('\n').filter(Boolean).map((l) => JSON.parse(l) as {id: string})
    }

    it('writes the day as gzipped JSON lines whatever the stdout format, and stores its digest', async () => {
      const {output, done} = run()
      const result = await done
      expect(result).to.include({outcome: 'success', events: 2500, file: dayFilePath(dir, DAY)})
      expect(output.lines()[0]).to.match(/^created_at=/)
      expect(fileEvents()).to.deep.equal(generateEvents(DAY, 2500))
      expect(readdirSync(dir), 'no temporary file left').to.deep.equal([`${DAY}.ndjson.gz`])
      const digest = eventsDigest(fileEvents().map((e) => e.id))
      expect(result.digest).to.equal(digest)
      expect((await findDay(db, DAY))?.events_digest).to.equal(digest)
    })

    it('replaces the file when a forced run fetches the day again', async () => {
      await run().done
      fake.setEvents(DAY, generateEvents(DAY, 5, {seed: 2}))
      const again = await run({force: true}).done
      expect(again).to.include({outcome: 'success', events: 5})
      expect(fileEvents()).to.deep.equal(generateEvents(DAY, 5, {seed: 2}))
      expect(readdirSync(dir)).to.deep.equal([`${DAY}.ndjson.gz`])
      expect((await findDay(db, DAY))?.events_digest).to.equal(eventsDigest(generateEvents(DAY, 5, {seed: 2}).map((e) => e.id)))
    })

    it('leaves no file, final or temporary, when the day fails, and stores no digest', async () => {
      fake.script([{kind: 'delay', ms: 0}, {kind: 'status', status: 401}], {day: DAY})
      const result = await run().done
      expect(result.outcome).to.equal('failed')
      expect(readdirSync(dir)).to.deep.equal([])
      expect(await findDay(db, DAY)).to.include({status: 'FAILED', events_digest: null})
    })

    it('records ERROR, writes no event and no file, when the file cannot be written', async () => {
      const failing = async (d: string, day: string): Promise<DayFile> => {
        const file = await openDayFile(d, day)
        return {...file, write: async () => Promise.reject(new Error('ENOSPC: no space left on device')), discard: file.discard}
      }

      const {output, done} = run({}, failing)
      const result = await done
      expect(result.outcome).to.equal('error')
      expect(result.message).to.match(/ENOSPC/)
      expect(output.text).to.equal('')
      expect(existsSync(dayFilePath(dir, DAY))).to.equal(false)
      expect(readdirSync(dir)).to.deep.equal([])
      expect((await findDay(db, DAY))?.status).to.equal('ERROR')
    })

    it('clears the digest when a SUCCESS day is claimed again', async () => {
      await run().done
      fake.script([{kind: 'hang'}], {day: DAY})
      const cancel = new AbortController()
      const forced = run({force: true, signal: cancel.signal})
      const started = Date.now()
      while ((await findDay(db, DAY))?.status !== 'PROCESSING' && Date.now() - started < 5000) await new Promise((r) => setTimeout(r, 10))
      expect(await findDay(db, DAY)).to.include({status: 'PROCESSING', events_digest: null})
      cancel.abort()
      expect((await forced.done).outcome).to.equal('failed')
      expect(fileEvents(), 'the earlier complete file stays').to.have.length(2500)
    })
  })
})
