/**
 * A hostile or broken API server (issue 10), against a real loopback server (test/support/hostile-api.ts)
 * and, where the whole run matters (stderr, exit code, memory, signals), the built CLI as a real
 * process, on each engine (the run's PostgreSQL database, or a data directory of the suite's own).
 * Every fault here hung a run, exhausted its memory, wrote an event twice or forged a line on main.
 */
import {mkdtempSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {setFlagsFromString} from 'node:v8'
import {runInNewContext} from 'node:vm'
import {gunzipSync} from 'node:zlib'

import {expect} from 'chai'
import type {Kysely} from 'kysely'

import {findDay} from '../../src/lib/db/audit-log-repository.js'
import type {Database} from '../../src/lib/db/schema.js'
import {type AuditClientOptions, createAuditClient} from '../../src/lib/heroku/client.js'
import {HerokuApiError, QUOTE_LONG, QUOTE_SHORT, quoted} from '../../src/lib/heroku/errors.js'
import type {AuditPage} from '../../src/lib/heroku/types.js'
import {eventsDigest} from '../../src/lib/processing/events-digest.js'
import {registerSecret} from '../../src/lib/secrets.js'
import {type CliResult, cliEnv, startCli} from '../support/cli.js'
import {clearLog, describeOnEngines} from '../support/db.js'
import {waitForRun} from '../support/helpers.js'
import {type JobSuite, openSuiteDatabase} from '../support/job-suite.js'
import {
  type HostileApi,
  endlessPages,
  errorAnswer,
  eventJson,
  gzipBomb,
  hugePage,
  idOf,
  json,
  pages,
  refusingRange,
  stallAfterHeaders,
  startHostileApi,
} from '../support/hostile-api.js'

const DAY = '2025-06-10'
const MiB = 1024 * 1024
const GC_OFTEN = fileURLToPath(new URL('../support/gc-often.mjs', import.meta.url))
const PEAK_RSS = fileURLToPath(new URL('../support/peak-rss.mjs', import.meta.url))

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u0008\u000B-\u001F\u007F-\u009F]/

/** The run's result, or a failure (after killing it) if it is still running after `ms`: a bound, not a speed test. */
async function finishes(run: ReturnType<typeof startCli>, ms: number): Promise<CliResult> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      run.kill('SIGKILL')
      reject(new Error(`the run was still going after ${ms / 1000} s`))
    }, ms)
  })
  try {
    return await Promise.race([run.result, late])
  } finally {
    clearTimeout(timer)
  }
}

function jsonArray(day: string, numbers: number[]): string {
  return `[${numbers.map((n) => eventJson(day, n)).join(',')}]`
}

async function fetchAll(api: HostileApi, overrides: Partial<AuditClientOptions> = {}, signal?: AbortSignal): Promise<AuditPage[]> {
  const client = createAuditClient({apiUrl: api.url, token: api.token, accountId: 'acme', maxAttempts: 1, attemptTimeoutMs: 5000, ...overrides})
  const all: AuditPage[] = []
  for await (const page of client.fetchDay(DAY, {signal})) all.push(page)
  return all
}

async function failureOf(work: Promise<unknown>): Promise<HerokuApiError> {
  try {
    await work
  } catch (error) {
    expect(error).to.be.instanceOf(HerokuApiError)
    return error as HerokuApiError
  }

  return expect.fail('expected the fetch to fail')
}

describe('a hostile API server, against the client', function () {
  let api: HostileApi

  before(async () => {
    api = await startHostileApi()
  })
  after(async () => api.close())
  beforeEach(() => api.reset())

  describe('a body that stalls after the headers', () => {
    /** A full garbage collection, as a long-running process gets: on main it lost the abort of a body read. */
    const gc = (() => {
      setFlagsFromString('--expose-gc')
      return runInNewContext('gc') as () => void
    })()

    async function stalledWhileCollecting(overrides: Partial<AuditClientOptions>, signal?: AbortSignal): Promise<HerokuApiError> {
      api.behaviour = stallAfterHeaders()
      const collecting = setInterval(gc, 50)
      try {
        return await failureOf(fetchAll(api, overrides, signal))
      } finally {
        clearInterval(collecting)
      }
    }

    it('is cut by the total timeout, whatever the garbage collector does', async function () {
      this.timeout(20_000)
      const error = await stalledWhileCollecting({attemptTimeoutMs: 60_000, totalTimeoutMs: 500})
      expect(error.kind).to.equal('timeout')
      expect(error.message).to.match(/total timeout of 0\.5 s/)
    })

    it('is cut by the attempt timeout, and retried', async function () {
      this.timeout(20_000)
      const error = await stalledWhileCollecting({attemptTimeoutMs: 300, maxAttempts: 2, baseDelayMs: 1})
      expect(error.kind).to.equal('timeout')
      expect(error.message).to.match(/did not answer page 1 of 2025-06-10 within 0\.3 s \(gave up after 2 attempts\)/)
      expect(api.requests).to.have.length(2)
    })

    it("is cut by the caller's signal", async function () {
      this.timeout(20_000)
      const cancel = new AbortController()
      setTimeout(() => cancel.abort(), 300)
      const error = await stalledWhileCollecting({attemptTimeoutMs: 60_000}, cancel.signal)
      expect(error.kind).to.equal('aborted')
    })
  })

  describe('size', () => {
    it('stops reading a page at maxPageBytes of decoded bytes, gzip undone, and fails the day (limit)', async () => {
      api.behaviour = await gzipBomb(8 * MiB)
      const error = await failureOf(fetchAll(api, {maxPageBytes: 2 * MiB}))
      expect(error.kind).to.equal('limit')
      expect(error.message).to.equal(
        'Heroku API sent more than 2 MiB for page 1 of 2025-06-10 (Request-Id hostile-request); stopped reading it: a real page of 1000 events is about 1 MB (if this day really is that big, raise HEROKU_API_MAX_PAGE_BYTES)',
      )
    })

    it('takes a page just under the cap', async () => {
      const text = jsonArray(DAY, [1, 2, 3])
      api.behaviour = json(text)
      const [page] = await fetchAll(api, {maxPageBytes: text.length})
      expect(page.events.map((event) => event.id)).to.deep.equal([idOf(1), idOf(2), idOf(3)])
    })

    it('refuses a paging page with more events than asked for (malformed: the server ignores max)', async () => {
      api.behaviour = pages(DAY, [[1, 2, 3, 4, 5], [6]])
      const error = await failureOf(fetchAll(api, {pageSize: 4}))
      expect(error.kind).to.equal('malformed')
      expect(error.message).to.match(/sent 5 events on page 1 of 2025-06-10, more than the 4 a page holds, and said more were to come/)
    })

    it('takes a last page (a 200) of any count within the byte cap: the API may not page at all', async () => {
      api.behaviour = json(jsonArray(DAY, [1, 2, 3, 4, 5]))
      const [page] = await fetchAll(api, {pageSize: 4})
      expect(page.events).to.have.length(5)
    })
  })

  it('stops a server that invents a new Next-Range forever at maxPages, naming the cap', async () => {
    api.behaviour = endlessPages(DAY)
    const error = await failureOf(fetchAll(api, {maxPages: 5}))
    expect(error.kind).to.equal('limit')
    expect(error.message).to.match(/^Heroku API still had more after 5 pages of 2025-06-10, the most one day may take \(5000 events at 1000 a page\)/)
    expect(api.requests, 'not one request more').to.have.length(5)
  })

  describe('416 to our Range', () => {
    it('asks once more without a Range, and takes a plain 200 array as the whole day', async () => {
      api.behaviour = refusingRange(json(jsonArray(DAY, [1, 2])))
      const all = await fetchAll(api)
      expect(all.flatMap((page) => page.events.map((event) => event.id))).to.deep.equal([idOf(1), idOf(2)])
      expect(api.requests.map((request) => request.range)).to.deep.equal(['id ..; max=1000;', undefined])
    })

    it('fails as before when the request without a Range is refused too', async () => {
      api.behaviour = errorAnswer(416, {id: 'requested_range_not_satisfiable', message: 'no'})
      const error = await failureOf(fetchAll(api))
      expect(error.kind).to.equal('http')
      expect(error.details.status).to.equal(416)
      expect(api.requests.map((request) => request.range)).to.deep.equal(['id ..; max=1000;', undefined])
    })
  })

  describe('what is quoted from the server', () => {
    it('is flat and bounded: error id, message and Request-Id', async () => {
      const forged = '\n ERROR 2024-01-01 FORGED LINE\r\n\u001B[32m✔ all good'
      api.behaviour = errorAnswer(400, {id: `${forged}${'i'.repeat(5000)}`, message: `${forged}${'m'.repeat(5000)}`}, {'Request-Id': `r${'q'.repeat(8000)}`})
      const error = await failureOf(fetchAll(api))
      expect(error.message).not.to.match(CONTROL)
      expect(error.message).not.to.include('\n')
      expect(error.message).to.include('\\x1B[32m')
      expect(error.message.length).to.be.below(QUOTE_SHORT * 2 + QUOTE_LONG + 200)
      expect(error.details.errorId!.length).to.be.at.most(QUOTE_SHORT)
      expect(error.details.requestId!.length).to.be.at.most(QUOTE_SHORT)
    })

    it('never leaves part of a secret behind where it cuts', () => {
      const secret = 'HRKU-quoted-secret-0123456789abcdef'
      registerSecret(secret)
      for (let at = 0; at < 3000; at += 7) {
        const text = `${' '.repeat(at)}${secret}${'z'.repeat(5000)}`
        const out = quoted(text, QUOTE_SHORT)
        expect(out.length).to.be.at.most(QUOTE_SHORT)
        expect(out).not.to.match(/HRKU-q/)
      }
    })
  })
})

describeOnEngines('a hostile API server, against real runs (bin/run.js)', function (engine) {
  this.timeout(90_000)
  let api: HostileApi
  let db: Kysely<Database>
  let dbVars: JobSuite['dbVars']
  let tmp: string

  before(async () => {
    api = await startHostileApi()
    ;({db, dbVars} = await openSuiteDatabase({engine: engine.name}))
  })
  after(async () => {
    await api.close()
    await db.destroy()
  })
  beforeEach(async () => {
    api.reset()
    await clearLog(db)
    tmp = mkdtempSync(join(tmpdir(), 'audit-logger-hostile-'))
  })
  afterEach(() => rmSync(tmp, {recursive: true, force: true}))

  function env(vars: Record<string, string> = {}): NodeJS.ProcessEnv {
    return cliEnv({...dbVars, HEROKU_API_URL: api.url, HEROKU_API_TOKEN: api.token, HEROKU_ACCOUNT_ID: 'acme', ...vars})
  }

  /** A run whose peak memory is measured (peakRss() once it has exited). */
  function measured(vars: Record<string, string> = {}) {
    const file = join(tmp, 'peak-rss')
    return {env: env({NODE_OPTIONS: `--import=${PEAK_RSS}`, PEAK_RSS_FILE: file, ...vars}), peakRss: () => Number(readFileSync(file, 'utf8'))}
  }

  describe('a body that stalls after the headers (garbage collected every 100 ms)', () => {
    const collecting = {NODE_OPTIONS: `--import=${GC_OFTEN}`}

    it('HEROKU_API_TIMEOUT cuts the body read: the run ends FAILED, instead of waiting out five minutes', async () => {
      api.behaviour = stallAfterHeaders()
      const run = startCli(['process', '--date', DAY], env({...collecting, HEROKU_API_TIMEOUT: '2', HEROKU_API_MAX_ATTEMPTS: '2'}))
      const result = await finishes(run, 45_000)
      expect(result.code, result.stderr).to.equal(1)
      expect(result.stderr).to.match(/2025-06-10 FAILED after .*did not answer page 1 of 2025-06-10 within 2 s \(gave up after 2 attempts\)/)
      expect(await findDay(db, DAY)).to.include({status: 'FAILED'})
      expect(api.requests).to.have.length(2)
    })

    it('SIGTERM mid-body: the run exits within seconds and the day is FAILED, not left PROCESSING', async () => {
      api.behaviour = stallAfterHeaders()
      const run = startCli(['process', '--date', DAY], env({...collecting, HEROKU_API_TIMEOUT: '120'}))
      // The run holds an embedded directory until it exits, so only the server's row can be seen meanwhile;
      // there, as everywhere, the day is claimed before it is asked for.
      const claimed = engine.name === 'postgres' ? async () => (await findDay(db, DAY))?.status === 'PROCESSING' : async () => true
      await waitForRun('the request and a PROCESSING row', run, async () => api.requests.length === 1 && (await claimed()))
      // Long enough for the headers to arrive and a few collections to run.
      await new Promise((resolve) => setTimeout(resolve, 1000))
      run.kill('SIGTERM')
      const result = await finishes(run, 15_000)
      expect(result.code, result.stderr).to.equal(1)
      expect(await findDay(db, DAY)).to.include({status: 'FAILED', error_message: `fetching ${DAY} was cancelled`})
    })
  })

  describe('no page is bigger than HEROKU_API_MAX_PAGE_BYTES (default 32 MiB), and memory stays bounded', () => {
    it('a gzip bomb (256 MiB of JSON, 256 KB on the wire): FAILED with one line, read no further than the cap', async () => {
      api.behaviour = await gzipBomb(256 * MiB)
      const {env: bombEnv, peakRss} = measured()
      const result = await finishes(startCli(['process', '--date', DAY], bombEnv), 60_000)
      expect(result.code, result.stderr).to.equal(1)
      const line = `Heroku API sent more than 32 MiB for page 1 of ${DAY} (Request-Id hostile-request); stopped reading it`
      expect(result.stderr).to.include(line)
      expect((await findDay(db, DAY))?.error_message).to.match(new RegExp(`^${line.replaceAll(/[()]/g, '\\$&')}`))
      expect((await findDay(db, DAY))?.status).to.equal('FAILED')
      // An empty run takes ~115 MB and the cap 32 MiB more; reading the bomb took well over 700 MB.
      expect(peakRss(), 'peak RSS').to.be.below(400 * MiB)
    })

    it('a huge plain page (40,000 events of 1 KB): FAILED with one line, memory bounded', async () => {
      api.behaviour = hugePage(DAY, 40_000, 1024)
      const {env: hugeEnv, peakRss} = measured()
      const result = await finishes(startCli(['process', '--date', DAY], hugeEnv), 60_000)
      expect(result.code, result.stderr).to.equal(1)
      expect(result.stderr).to.include(`Heroku API sent more than 32 MiB for page 1 of ${DAY}`)
      expect((await findDay(db, DAY))?.status).to.equal('FAILED')
      expect(peakRss(), 'peak RSS').to.be.below(400 * MiB)
    })

    it('HEROKU_API_MAX_PAGE_BYTES raises the cap', async () => {
      api.behaviour = hugePage(DAY, 2000, 1024)
      const result = await finishes(startCli(['process', '--date', DAY], env({HEROKU_API_MAX_PAGE_BYTES: String(MiB)})), 60_000)
      expect(result.code, result.stderr).to.equal(1)
      expect(result.stderr).to.include(`Heroku API sent more than 1 MiB for page 1 of ${DAY}`)

      const again = await finishes(startCli(['process', '--date', DAY], env({HEROKU_API_MAX_PAGE_BYTES: String(4 * MiB)})), 60_000)
      expect(again.code, again.stderr).to.equal(0)
      expect(await findDay(db, DAY)).to.include({status: 'SUCCESS', events_count: 2000})
    })
  })

  it('a Next-Range invented forever: FAILED after 1000 pages, naming the cap, and not one request more', async () => {
    api.behaviour = endlessPages(DAY)
    const result = await finishes(startCli(['process', '--date', DAY], env()), 60_000)
    expect(result.code, result.stderr).to.equal(1)
    expect(result.stderr).to.match(/2025-06-10 FAILED after .*Heroku API still had more after 1000 pages of 2025-06-10, the most one day may take \(1000000 events at 1000 a page\)/)
    expect(api.requests).to.have.length(1000)
    expect(result.stdout, 'no partial day').to.equal('')
  })

  it('the same ids on two pages (and twice on one) are written, counted and digested once', async () => {
    api.behaviour = pages(DAY, [[1, 2, 3], [3, 4, 4, 1], [5, 2]])
    const result = await finishes(startCli(['process', '--date', DAY, '--output-dir', tmp], env()), 30_000)
    expect(result.code, result.stderr).to.equal(0)
    const unique = [1, 2, 3, 4, 5].map(idOf)
    expect(result.stdout.split('\n').filter(Boolean).map((line) => /id=(\S+)$/.exec(line)?.[1])).to.deep.equal(unique)
    const file = gunzipSync(readFileSync(join(tmp, `${DAY}.ndjson.gz`))).toString()
    expect(file.split('\n').filter(Boolean).map((line) => (JSON.parse(line) as {id: string}).id)).to.deep.equal(unique)
    expect(await findDay(db, DAY)).to.include({status: 'SUCCESS', events_count: 5, events_digest: eventsDigest(unique)})
    expect(result.stderr).to.include(`${DAY}: the API sent 4 event(s) whose id it had already sent that day; each id is written and counted once`)
  })

  it('416 to our Range: the day is asked for once more without one and ends SUCCESS', async () => {
    api.behaviour = refusingRange(json(jsonArray(DAY, [1, 2, 3])))
    const result = await finishes(startCli(['process', '--date', DAY, '--format', 'json'], env()), 30_000)
    expect(result.code, result.stderr).to.equal(0)
    expect(result.stdout.split('\n').filter(Boolean)).to.have.length(3)
    expect(await findDay(db, DAY)).to.include({status: 'SUCCESS', events_count: 3})
    expect(api.requests.map((request) => request.range)).to.deep.equal(['id ..; max=1000;', undefined])
  })

  describe('what the server says is quoted flat and short, on stderr and in the record', () => {
    const forged = '\n ERROR 2024-01-01 FORGED LINE\r\n\u001B[32m✔ all good'

    function expectFlat(result: CliResult, message: string | null | undefined): void {
      expect(result.stderr).not.to.match(CONTROL)
      expect(result.stderr).not.to.match(/^\s*ERROR 2024-01-01 FORGED LINE/m)
      expect(result.stderr).not.to.match(/^\s*✔ all good/m)
      expect(message).to.be.a('string')
      expect(message).not.to.match(CONTROL)
      expect(message).not.to.include('\n')
      expect(message!.length).to.be.below(1000)
    }

    it('an error id that forges lines', async () => {
      api.behaviour = errorAnswer(400, {id: forged, message: 'refused'})
      const result = await finishes(startCli(['process', '--date', DAY], env()), 30_000)
      expect(result.code, result.stderr).to.equal(1)
      const row = await findDay(db, DAY)
      expect(row?.status).to.equal('FAILED')
      expectFlat(result, row?.error_message)
      expect(row?.error_message).to.include('Heroku API answered 400 ERROR 2024-01-01 FORGED LINE \\x1B[32m✔ all good: refused')
    })

    it('a 60,000-character error id: quoted cut to 100 characters', async () => {
      api.behaviour = errorAnswer(400, {id: `${forged}${'x'.repeat(60_000)}`, message: 'refused'})
      const result = await finishes(startCli(['process', '--date', DAY], env()), 20_000)
      expect(result.code, result.stderr).to.equal(1)
      const row = await findDay(db, DAY)
      expectFlat(result, row?.error_message)
      expect(row?.error_message).to.match(/^Heroku API answered 400 ERROR 2024-01-01 FORGED LINE \\x1B\[32m✔ all goodx+…: refused; the request was refused as malformed; Request-Id hostile-request$/)
      expect(/answered 400 (.*): refused/.exec(row!.error_message!)?.[1]).to.have.length(QUOTE_SHORT)
    })

    it('a 200,000-character error id: the run completes promptly (the body is past the 64 KiB read of an error: the status speaks alone)', async () => {
      api.behaviour = errorAnswer(400, {id: `${forged}${'x'.repeat(200_000)}`, message: 'refused'})
      // On main the logger alone took 48 s over this line, with no heartbeat meanwhile.
      const result = await finishes(startCli(['process', '--date', DAY], env()), 20_000)
      expect(result.code, result.stderr).to.equal(1)
      const row = await findDay(db, DAY)
      expectFlat(result, row?.error_message)
      expect(row?.error_message).to.equal('Heroku API answered 400; the request was refused as malformed; Request-Id hostile-request')
    })
  })
})
