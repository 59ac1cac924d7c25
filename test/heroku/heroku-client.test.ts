/**
 * The Heroku audit-trail client against the loopback fake (scenarios 11, 12, 13, 14 and 19).
 *
 * Every request goes over real HTTP. Only `sleep` (and `random`/`now` where a test says so) are
 * injected: the recording sleep returns at once, so backoff, jitter and Retry-After are proven by
 * the waits the client asked for rather than by waiting them out.
 */
import {randomUUID} from 'node:crypto'

import {expect} from 'chai'

import {createAuditClient} from '../../src/lib/heroku/client.js'
import type {AuditClient, AuditClientOptions, ClientNotice} from '../../src/lib/heroku/client.js'
import {HerokuApiError} from '../../src/lib/heroku/errors.js'
import type {AuditPage} from '../../src/lib/heroku/types.js'
import {registerSecret} from '../../src/lib/secrets.js'
import {generateEvents} from '../fake-heroku/events.js'
import {DEFAULT_ACCOUNTS, startFakeHeroku} from '../fake-heroku/server.js'
import type {AuditEvent, FakeHeroku, FakeHerokuOptions, Fault} from '../fake-heroku/server.js'

const BIG_DAY = '2025-03-01' // 2,500 events: three pages of 1000
const SMALL_DAY = '2025-03-02' // 40 events: one page
const EMPTY_DAY = '2025-03-03' // no events at all

const bigDay = generateEvents(BIG_DAY, 2500)
const smallDay = generateEvents(SMALL_DAY, 40, {seed: 7})
const ids = (events: {id: string}[]) => events.map((event) => event.id)

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

// --- harness ---------------------------------------------------------------------------------

/** One fake per describe; every test starts with no recorded requests, no queued faults and a full pool. */
function useFakeHeroku(opts: FakeHerokuOptions = {}): {fake: FakeHeroku} {
  const holder = {} as {fake: FakeHeroku}
  before(async function () {
    holder.fake = await startFakeHeroku({events: {[BIG_DAY]: bigDay, [SMALL_DAY]: smallDay}, ...opts})
  })
  beforeEach(function () {
    holder.fake.reset()
    holder.fake.setRateLimitRemaining(4500)
  })
  after(async function () {
    await holder.fake?.close()
  })
  return holder
}

interface Harness {
  client: AuditClient
  /** Every wait the client asked for, in ms, in order. */
  waits: number[]
  notices: ClientNotice[]
}

/**
 * A client for the fake with a recording sleep, fixed jitter (random 0.5) and small delays:
 * backoff waits are then 75, 150, 300… ms. `overrides` win; `sleep: undefined` restores the real sleep.
 */
function clientFor(fake: FakeHeroku, overrides: Partial<AuditClientOptions> = {}): Harness {
  const waits: number[] = []
  const notices: ClientNotice[] = []
  const client = createAuditClient({
    apiUrl: fake.url,
    token: fake.token,
    accountId: 'acme',
    maxAttempts: 3,
    baseDelayMs: 100,
    maxDelayMs: 1000,
    attemptTimeoutMs: 5000,
    random: () => 0.5,
    sleep: async (ms) => {
      waits.push(ms)
    },
    onNotice: (notice) => notices.push(notice),
    ...overrides,
  })
  return {client, waits, notices}
}

async function fetchAll(client: AuditClient, day: string, signal?: AbortSignal): Promise<AuditPage[]> {
  const pages: AuditPage[] = []
  for await (const page of client.fetchDay(day, {signal})) pages.push(page)
  return pages
}

/** The HerokuApiError fetching `day` ends with; fails the test if it succeeds or throws anything else. */
async function fetchFailure(client: AuditClient, day: string, signal?: AbortSignal): Promise<HerokuApiError> {
  try {
    await fetchAll(client, day, signal)
  } catch (error) {
    expect(error).to.be.instanceOf(HerokuApiError)
    return error as HerokuApiError
  }

  expect.fail(`expected fetching ${day} to fail`)
}

async function until(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const giveUp = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > giveUp) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

const times = (n: number, fault: Fault): Fault[] => Array.from({length: n}, () => fault)

// A fault that answers normally, to let the requests before a scripted fault through.
const PASS: Fault = {kind: 'delay', ms: 0}

// --- tests -----------------------------------------------------------------------------------

describe('Heroku audit client', function () {
  describe('request shape', function () {
    const server = useFakeHeroku({accounts: [...DEFAULT_ACCOUNTS, 'Acme Corp/EU']})

    it('asks for one day, oldest first, with the documented headers and a first Range of 1000', async function () {
      const {client} = clientFor(server.fake, {userAgent: 'audit-logger/9.9.9'})
      const pages = await fetchAll(client, SMALL_DAY)

      expect(ids(pages.flatMap((page) => page.events))).to.deep.equal(ids(smallDay))
      expect(server.fake.requests).to.have.length(1)
      const [request] = server.fake.requests
      expect(request.method).to.equal('GET')
      expect(request.path).to.equal('/enterprise-accounts/acme/events')
      // No filter parameters at all when none are configured.
      expect(request.query).to.deep.equal({day: SMALL_DAY, order: 'asc'})
      expect(request.headers.authorization).to.equal(`Bearer ${server.fake.token}`)
      expect(request.headers.accept).to.equal('application/vnd.heroku+json; version=3')
      expect(request.headers['user-agent']).to.equal('audit-logger/9.9.9')
      expect(request.range).to.equal('id ..; max=1000;')
    })

    it('sends an audit-logger User-Agent by default', async function () {
      const {client} = clientFor(server.fake)
      await fetchAll(client, EMPTY_DAY)
      expect(server.fake.requests[0].headers['user-agent']).to.match(/^audit-logger\b/)
    })

    it('URL-encodes the account name in the path', async function () {
      const {client} = clientFor(server.fake, {accountId: 'Acme Corp/EU'})
      await fetchAll(client, SMALL_DAY)
      expect(server.fake.requests[0].path).to.equal('/enterprise-accounts/Acme%20Corp%2FEU/events')
    })

    it('maps the filters to type, action and actor (the email)', async function () {
      const filters = {type: 'app', action: 'create', actorEmail: 'alice@example.com'}
      const {client} = clientFor(server.fake, {filters})
      const events = (await fetchAll(client, BIG_DAY)).flatMap((page) => page.events)

      expect(server.fake.requests[0].query).to.deep.equal({
        day: BIG_DAY,
        order: 'asc',
        type: 'app',
        action: 'create',
        actor: 'alice@example.com',
      })
      // The fake filters exactly as Heroku does, so the parameters must have been understood.
      const expected = bigDay.filter((e) => e.type === 'app' && e.action === 'create' && e.actor?.email === 'alice@example.com')
      expect(expected).to.not.be.empty
      expect(ids(events)).to.deep.equal(ids(expected))
    })

    it('sends the apiVersion override in the Accept header', async function () {
      const {client} = clientFor(server.fake, {apiVersion: '3.audit-trail'})
      await fetchAll(client, SMALL_DAY)
      expect(server.fake.requests[0].headers.accept).to.equal('application/vnd.heroku+json; version=3.audit-trail')
    })

    it('asks for pageSize events per page', async function () {
      const {client} = clientFor(server.fake, {pageSize: 250})
      const pages = await fetchAll(client, BIG_DAY)
      expect(server.fake.requests[0].range).to.equal('id ..; max=250;')
      expect(pages).to.have.length(10)
    })
  })

  describe('paging (scenario 12)', function () {
    const server = useFakeHeroku()

    it('follows Next-Range through 206s: 2,500 events in 3 pages, each id once and in order', async function () {
      const {client} = clientFor(server.fake)
      const pages = await fetchAll(client, BIG_DAY)

      expect(pages.map((page) => page.number)).to.deep.equal([1, 2, 3])
      expect(pages.map((page) => page.events.length)).to.deep.equal([1000, 1000, 500])
      const received = ids(pages.flatMap((page) => page.events))
      expect(new Set(received).size).to.equal(2500)
      expect(received).to.deep.equal(ids(bigDay))

      // Each later request carries the previous response's Next-Range as its Range, verbatim.
      expect(server.fake.requests.map((r) => r.range)).to.deep.equal([
        'id ..; max=1000;',
        `id ]${pages[0].events.at(-1)?.id}..; max=1000;`,
        `id ]${pages[1].events.at(-1)?.id}..; max=1000;`,
      ])
      for (const page of pages) expect(page.requestId).to.match(UUID)
    })

    it('takes an empty day as one page of no events', async function () {
      const {client} = clientFor(server.fake)
      const pages = await fetchAll(client, EMPTY_DAY)
      expect(pages).to.have.length(1)
      expect(pages[0].events).to.deep.equal([])
      expect(server.fake.requests).to.have.length(1)
    })

    it('stops with a paging error when the first response repeats its own Range', async function () {
      server.fake.script([{kind: 'repeat-next-range'}])
      const {client} = clientFor(server.fake)
      const error = await fetchFailure(client, BIG_DAY)

      expect(error.kind).to.equal('paging')
      expect(error.message).to.match(/repeated the paging range after page 1 of 2025-03-01/)
      expect(server.fake.requests).to.have.length(1)
    })

    it('stops with a paging error when a later page repeats its Range', async function () {
      server.fake.script([PASS, {kind: 'repeat-next-range'}])
      const {client} = clientFor(server.fake)
      const error = await fetchFailure(client, BIG_DAY)

      expect(error.kind).to.equal('paging')
      expect(error.message).to.include(`Request-Id ${error.details.requestId}`)
      expect(server.fake.requests).to.have.length(2)
    })

    it('answers a 416 to its Range by asking once more without one, and follows what comes', async function () {
      server.fake.script([{kind: 'status', status: 416}])
      const {client, notices} = clientFor(server.fake)
      const pages = await fetchAll(client, BIG_DAY)

      expect(ids(pages.flatMap((page) => page.events))).to.deep.equal(ids(bigDay))
      // Without a Range the fake pages by its own default of 200, and the client follows its Next-Range.
      expect(server.fake.requests.slice(0, 3).map((r) => r.range)).to.deep.equal(['id ..; max=1000;', undefined, `id ]${bigDay[199].id}..; max=200;`])
      expect(notices).to.have.length(1)
      expect(notices[0]).to.include({kind: 'retry', waitMs: 0})
      expect(notices[0]).to.have.property('reason').that.matches(/416 requested_range_not_satisfiable.*the API refused the paging Range.*asking once more without a Range header/)
    })

    it('fails with the 416 when the request without a Range is refused too, after two requests', async function () {
      server.fake.script([{kind: 'status', status: 416}, {kind: 'status', status: 416}])
      const {client, waits} = clientFor(server.fake)
      const error = await fetchFailure(client, SMALL_DAY)

      expect(error.kind).to.equal('http')
      expect(error.details).to.include({status: 416, errorId: 'requested_range_not_satisfiable'})
      expect(error.message).to.match(/the API refused the paging Range/)
      expect(server.fake.requests.map((r) => r.range)).to.deep.equal(['id ..; max=1000;', undefined])
      expect(waits).to.deep.equal([])
    })

    describe('against an API that never pages', function () {
      const unpaged = useFakeHeroku({paging: false})

      it('takes a single 200 as the whole day', async function () {
        const {client} = clientFor(unpaged.fake)
        const pages = await fetchAll(client, BIG_DAY)
        expect(pages).to.have.length(1)
        expect(ids(pages[0].events)).to.deep.equal(ids(bigDay))
        expect(unpaged.fake.requests).to.have.length(1)
      })
    })
  })

  describe('429 and Retry-After (scenario 11)', function () {
    const server = useFakeHeroku()

    it('waits the Retry-After seconds, then retries and succeeds', async function () {
      server.fake.script([{kind: 'status', status: 429, retryAfter: '2'}])
      const {client, waits, notices} = clientFor(server.fake)
      const pages = await fetchAll(client, SMALL_DAY)

      expect(ids(pages[0].events)).to.deep.equal(ids(smallDay))
      expect(waits).to.deep.equal([2000])
      expect(server.fake.requests).to.have.length(2)
      expect(notices).to.have.length(1)
      expect(notices[0]).to.include({kind: 'retry', attempt: 1, waitMs: 2000})
      expect(notices[0]).to.have.property('reason').that.matches(/429 rate_limit/)
    })

    it('backs off exponentially when an empty pool answers 429 without Retry-After', async function () {
      server.fake.setRateLimitRemaining(0)
      const waits: number[] = []
      const {client} = clientFor(server.fake, {
        sleep: async (ms) => {
          waits.push(ms)
          // The pool refills during the second wait.
          if (waits.length === 2) server.fake.setRateLimitRemaining(4500)
        },
      })
      const pages = await fetchAll(client, SMALL_DAY)

      expect(pages[0].events).to.have.length(40)
      expect(waits).to.deep.equal([75, 150])
      expect(server.fake.requests).to.have.length(3)
    })

    it('reads a Retry-After given as an HTTP date against the injected clock', async function () {
      const now = Date.parse('2025-03-04T12:00:00Z')
      server.fake.script([{kind: 'status', status: 429, retryAfter: new Date(now + 7000).toUTCString()}])
      const {client, waits} = clientFor(server.fake, {now: () => now})
      await fetchAll(client, SMALL_DAY)
      expect(waits).to.deep.equal([7000])
    })

    it('fails at once with wait-too-long when Retry-After exceeds the cap, without sleeping it out', async function () {
      server.fake.script([{kind: 'status', status: 429, retryAfter: '3600'}])
      const {client, waits, notices} = clientFor(server.fake)
      const error = await fetchFailure(client, SMALL_DAY)

      expect(error.kind).to.equal('wait-too-long')
      expect(error.message).to.include('3600 s').and.include('120 s')
      expect(error.details).to.include({status: 429, errorId: 'rate_limit', attempts: 1})
      expect(waits).to.deep.equal([])
      expect(notices).to.deep.equal([])
      expect(server.fake.requests).to.have.length(1)
    })

    it('fails with wait-too-long for an HTTP-date Retry-After beyond the cap too', async function () {
      const now = Date.parse('2025-03-04T12:00:00Z')
      server.fake.script([{kind: 'status', status: 429, retryAfter: new Date(now + 3_600_000).toUTCString()}])
      const {client, waits} = clientFor(server.fake, {now: () => now})
      const error = await fetchFailure(client, SMALL_DAY)

      expect(error.kind).to.equal('wait-too-long')
      expect(error.message).to.include('3600 s')
      expect(waits).to.deep.equal([])
      expect(server.fake.requests).to.have.length(1)
    })

    it('waits exactly the cap, but not one second more', async function () {
      server.fake.script([{kind: 'status', status: 429, retryAfter: '5'}])
      const atCap = clientFor(server.fake, {retryAfterCapMs: 5000})
      await fetchAll(atCap.client, SMALL_DAY)
      expect(atCap.waits).to.deep.equal([5000])

      server.fake.script([{kind: 'status', status: 429, retryAfter: '6'}])
      const overCap = clientFor(server.fake, {retryAfterCapMs: 5000})
      expect((await fetchFailure(overCap.client, SMALL_DAY)).kind).to.equal('wait-too-long')
      expect(overCap.waits).to.deep.equal([])
    })

    it('fails without waiting when the wait would overrun the total timeout', async function () {
      server.fake.script([{kind: 'status', status: 429, retryAfter: '60'}])
      const {client, waits} = clientFor(server.fake, {totalTimeoutMs: 10_000})
      const error = await fetchFailure(client, SMALL_DAY)

      expect(error.message).to.match(/no time left to retry within the total timeout of 10 s/)
      expect(waits).to.deep.equal([])
      expect(server.fake.requests).to.have.length(1)
    })
  })

  describe('backoff and jitter', function () {
    const server = useFakeHeroku()

    /** The waits before attempts 2…5 of a request that fails four times with 503. */
    async function waitsWith(random: () => number): Promise<number[]> {
      server.fake.reset()
      server.fake.script(times(4, {kind: 'status', status: 503}))
      const {client, waits} = clientFor(server.fake, {maxAttempts: 5, baseDelayMs: 100, maxDelayMs: 500, random})
      await fetchAll(client, SMALL_DAY)
      return waits
    }

    it('doubles the ceiling each attempt up to maxDelayMs, waiting between half of it and all of it', async function () {
      // ceilings 100, 200, 400, 500 (capped); wait = ceiling/2 + random × ceiling/2
      expect(await waitsWith(() => 0)).to.deep.equal([50, 100, 200, 250])
      expect(await waitsWith(() => 0.5)).to.deep.equal([75, 150, 300, 375])
      expect(await waitsWith(() => 0.999)).to.deep.equal([100, 200, 400, 500])
    })

    it('spreads the waits with the random source, so clients retrying together do not collide', async function () {
      const values = [0.1, 0.9, 0.3, 0.7]
      const varied = await waitsWith(() => values.shift() ?? 0)
      const fixed = await waitsWith(() => 0.5)
      expect(varied).to.deep.equal([55, 190, 260, 425])
      expect(varied).to.not.deep.equal(fixed)
    })
  })

  describe('retry matrix (scenario 13)', function () {
    const server = useFakeHeroku()

    const transient: {name: string; fault: Fault; kind: HerokuApiError['kind']; status?: number; errorId?: string}[] = [
      {name: '500', fault: {kind: 'status', status: 500}, kind: 'http', status: 500, errorId: 'internal_server_error'},
      {name: '502', fault: {kind: 'status', status: 502}, kind: 'http', status: 502, errorId: 'bad_gateway'},
      {name: '503', fault: {kind: 'status', status: 503}, kind: 'http', status: 503, errorId: 'service_unavailable'},
      {name: '504', fault: {kind: 'status', status: 504}, kind: 'http', status: 504, errorId: 'gateway_timeout'},
      {name: 'a connection reset', fault: {kind: 'reset'}, kind: 'network'},
      {name: 'a socket that never answers', fault: {kind: 'hang'}, kind: 'timeout'},
      {name: 'a body that stalls half-way', fault: {kind: 'hang-body'}, kind: 'timeout'},
      {name: 'a body cut short by a closed socket', fault: {kind: 'cut-body'}, kind: 'network'},
    ]

    for (const {name, fault, kind, status, errorId} of transient) {
      it(`retries ${name} with backoff up to maxAttempts, then fails (${kind})`, async function () {
        server.fake.script(times(3, fault))
        const {client, waits, notices} = clientFor(server.fake, {maxAttempts: 3, attemptTimeoutMs: 200})
        const error = await fetchFailure(client, SMALL_DAY)

        expect(error.kind).to.equal(kind)
        expect(error.details.attempts).to.equal(3)
        expect(error.message).to.match(/gave up after 3 attempts/)
        expect(server.fake.requests).to.have.length(3)
        expect(waits).to.deep.equal([75, 150])
        expect(notices.map((n) => n.kind)).to.deep.equal(['retry', 'retry'])
        if (status !== undefined) {
          expect(error.details).to.include({status, errorId})
          expect(error.message).to.include(`${status} ${errorId}`).and.include('Heroku had a server error')
          expect(error.details.requestId).to.match(UUID)
          expect(error.message).to.include(`Request-Id ${error.details.requestId}`)
        }
        if (kind === 'timeout') expect(error.message).to.include('within 0.2 s')
        if (kind === 'network') expect(error.message).to.match(/could not reach the Heroku API at 127\.0\.0\.1:\d+: \S+/)
      })
    }

    it('succeeds when the faults clear before the last attempt', async function () {
      server.fake.script([{kind: 'status', status: 503}, {kind: 'reset'}, {kind: 'hang'}, {kind: 'cut-body'}])
      const {client, waits} = clientFor(server.fake, {maxAttempts: 5, attemptTimeoutMs: 200})
      const pages = await fetchAll(client, SMALL_DAY)

      expect(ids(pages[0].events)).to.deep.equal(ids(smallDay))
      expect(server.fake.requests).to.have.length(5)
      expect(waits).to.deep.equal([75, 150, 300, 600])
    })

    it('retries a failed later page from that page, not from the start', async function () {
      server.fake.script([PASS, {kind: 'status', status: 502}])
      const {client} = clientFor(server.fake)
      const pages = await fetchAll(client, BIG_DAY)

      expect(ids(pages.flatMap((page) => page.events))).to.deep.equal(ids(bigDay))
      const ranges = server.fake.requests.map((r) => r.range)
      expect(ranges).to.have.length(4)
      expect(ranges[2]).to.equal(ranges[1])
    })

    const permanent: {status: number; errorId: string; advice: RegExp}[] = [
      {status: 400, errorId: 'bad_request', advice: /refused as malformed/},
      {status: 401, errorId: 'unauthorized', advice: /API token is missing, invalid or expired/},
      {status: 402, errorId: 'delinquent', advice: /delinquent: settle its billing/},
      {status: 403, errorId: 'forbidden', advice: /must be an Enterprise Admin/},
      {status: 404, errorId: 'not_found', advice: /HEROKU_ACCOUNT_ID is wrong or not an enterprise account/},
      {status: 406, errorId: 'not_acceptable', advice: /Accept header/},
      {status: 422, errorId: 'invalid_params', advice: /request parameters/},
    ]

    for (const {status, errorId, advice} of permanent) {
      it(`does not retry ${status} ${errorId}, and says why with the Request-Id`, async function () {
        const requestId = `req-${status}-${randomUUID()}`
        server.fake.script([{kind: 'status', status, headers: {'Request-Id': requestId}}])
        const {client, waits, notices} = clientFor(server.fake)
        const error = await fetchFailure(client, SMALL_DAY)

        expect(error.kind).to.equal('http')
        expect(error.details).to.include({status, errorId, requestId})
        expect(error.message).to.include(`Heroku API answered ${status} ${errorId}`)
        expect(error.message).to.include(`Request-Id ${requestId}`)
        expect(error.message).to.match(advice)
        expect(server.fake.requests).to.have.length(1)
        expect(waits).to.deep.equal([])
        expect(notices).to.deep.equal([])
      })
    }

    it('fails a wrong token with the real 401, once', async function () {
      const {client} = clientFor(server.fake, {token: 'HRKU-not-the-right-token-000000000000000000'})
      const error = await fetchFailure(client, SMALL_DAY)

      expect(error.details).to.include({status: 401, errorId: 'unauthorized'})
      expect(error.details.requestId).to.match(UUID)
      expect(error.message).to.include('HEROKU_API_TOKEN').and.include(`Request-Id ${error.details.requestId}`)
      expect(server.fake.requests).to.have.length(1)
    })

    it('fails an unknown account with the real 404, once', async function () {
      const {client} = clientFor(server.fake, {accountId: 'no-such-account'})
      const error = await fetchFailure(client, SMALL_DAY)

      expect(error.details).to.include({status: 404, errorId: 'not_found'})
      expect(error.message).to.match(/HEROKU_ACCOUNT_ID is wrong or not an enterprise account/)
      expect(server.fake.requests).to.have.length(1)
    })

    it('fails an unknown API version with the real 406, once', async function () {
      const {client} = clientFor(server.fake, {apiVersion: '2'})
      const error = await fetchFailure(client, SMALL_DAY)

      expect(server.fake.requests[0].headers.accept).to.equal('application/vnd.heroku+json; version=2')
      expect(error.details).to.include({status: 406, errorId: 'not_acceptable'})
      expect(server.fake.requests).to.have.length(1)
    })

    it('fails a day the API refuses with the real 422, once', async function () {
      const {client} = clientFor(server.fake)
      const error = await fetchFailure(client, '2025-02-30')

      expect(error.details).to.include({status: 422, errorId: 'invalid_params'})
      expect(error.message).to.include('2025-02-30')
      expect(server.fake.requests).to.have.length(1)
    })
  })

  describe('timeouts and cancellation', function () {
    const server = useFakeHeroku()

    it('gives up at the total timeout, long before maxAttempts attempt timeouts', async function () {
      server.fake.script(times(20, {kind: 'hang'}))
      const {client} = clientFor(server.fake, {maxAttempts: 20, attemptTimeoutMs: 200, totalTimeoutMs: 500, baseDelayMs: 1})
      const started = Date.now()
      const error = await fetchFailure(client, SMALL_DAY)

      expect(error.kind).to.equal('timeout')
      expect(error.message).to.match(/total timeout of 0\.5 s/)
      // 500 ms holds at most three 200 ms attempts; 20 would take 4 s.
      expect(server.fake.requests.length).to.be.within(1, 4)
      expect(Date.now() - started).to.be.below(5000)
    })

    it('gives up at the total timeout while a body stalls', async function () {
      server.fake.script([{kind: 'hang-body'}])
      const {client} = clientFor(server.fake, {attemptTimeoutMs: 60_000, totalTimeoutMs: 300})
      const error = await fetchFailure(client, SMALL_DAY)

      expect(error.kind).to.equal('timeout')
      expect(error.message).to.match(/total timeout of 0\.3 s/)
      expect(server.fake.requests).to.have.length(1)
    })

    it('cuts a rate-limit pause short at the total timeout', async function () {
      // A pause far longer than the total timeout, slept for real: only the total timer can end it.
      this.timeout(10_000)
      server.fake.setRateLimitRemaining(10)
      const {client} = clientFor(server.fake, {sleep: undefined, lowRatePaceMs: 60_000, totalTimeoutMs: 300})
      const started = Date.now()
      const error = await fetchFailure(client, BIG_DAY)

      expect(error.kind).to.equal('timeout')
      expect(error.message).to.match(/total timeout of 0\.3 s/)
      expect(server.fake.requests).to.have.length(1)
      expect(Date.now() - started).to.be.below(5000)
    })

    it('rejects with aborted as soon as the signal aborts during a hanging request', async function () {
      server.fake.script([{kind: 'hang'}])
      const {client, waits} = clientFor(server.fake, {attemptTimeoutMs: 60_000, totalTimeoutMs: 120_000})
      const cancel = new AbortController()
      const started = Date.now()
      const failing = fetchFailure(client, SMALL_DAY, cancel.signal)
      await until(() => server.fake.requests.length === 1, 'the request to arrive')
      cancel.abort()
      const error = await failing

      expect(error.kind).to.equal('aborted')
      expect(error.message).to.equal('fetching 2025-03-02 was cancelled')
      expect(server.fake.requests).to.have.length(1)
      expect(waits).to.deep.equal([])
      expect(Date.now() - started).to.be.below(5000)
    })

    it('rejects with aborted when the signal aborts during a real backoff sleep', async function () {
      server.fake.script([{kind: 'status', status: 503}])
      const cancel = new AbortController()
      const {client} = clientFor(server.fake, {
        sleep: undefined, // the real, abortable sleep
        baseDelayMs: 60_000,
        maxDelayMs: 60_000,
        // Abort a little after the minute-long wait has begun.
        onNotice: (notice) => {
          if (notice.kind === 'retry') setTimeout(() => cancel.abort(), 20)
        },
      })
      const started = Date.now()
      const error = await fetchFailure(client, SMALL_DAY, cancel.signal)

      expect(error.kind).to.equal('aborted')
      expect(server.fake.requests).to.have.length(1)
      expect(Date.now() - started).to.be.below(5000)
    })

    it('makes no request when the signal is already aborted', async function () {
      const {client} = clientFor(server.fake)
      const error = await fetchFailure(client, SMALL_DAY, AbortSignal.abort())

      expect(error.kind).to.equal('aborted')
      expect(server.fake.requests).to.have.length(0)
    })
  })

  describe('rate-limit slow-down', function () {
    const server = useFakeHeroku()

    it('pauses lowRatePaceMs before each request once RateLimit-Remaining is at or below lowRateLimit', async function () {
      server.fake.setRateLimitRemaining(50)
      const {client, waits, notices} = clientFor(server.fake, {lowRateLimit: 100, lowRatePaceMs: 250})
      const pages = await fetchAll(client, BIG_DAY)

      expect(pages.map((page) => page.rateLimitRemaining)).to.deep.equal([49, 48, 47])
      expect(waits).to.deep.equal([250, 250])
      expect(notices).to.deep.equal([
        {kind: 'slow-down', waitMs: 250, rateLimitRemaining: 49},
        {kind: 'slow-down', waitMs: 250, rateLimitRemaining: 48},
      ])
    })

    it('starts pausing exactly at lowRateLimit', async function () {
      // Responses say 101, then 100, then 99: only the request after "100" is paced.
      server.fake.setRateLimitRemaining(102)
      const {client, waits, notices} = clientFor(server.fake, {lowRateLimit: 100, lowRatePaceMs: 250})
      await fetchAll(client, BIG_DAY)

      expect(waits).to.deep.equal([250])
      expect(notices).to.deep.equal([{kind: 'slow-down', waitMs: 250, rateLimitRemaining: 100}])
    })

    it('does not pause while plenty remains', async function () {
      const {client, waits, notices} = clientFor(server.fake)
      const pages = await fetchAll(client, BIG_DAY)

      expect(pages).to.have.length(3)
      expect(waits).to.deep.equal([])
      expect(notices).to.deep.equal([])
    })
  })

  describe('broken bodies (scenario 14)', function () {
    const server = useFakeHeroku()
    const BAD_DAY = '2025-03-09'

    it('fails truncated JSON as malformed, without retrying', async function () {
      server.fake.script([{kind: 'truncated-json'}])
      const {client, waits} = clientFor(server.fake)
      const error = await fetchFailure(client, SMALL_DAY)

      expect(error.kind).to.equal('malformed')
      expect(error.message).to.match(/malformed response for page 1 of 2025-03-02 .*the body is not valid JSON/)
      expect(error.message).to.include(`Request-Id ${error.details.requestId}`)
      expect(server.fake.requests).to.have.length(1)
      expect(waits).to.deep.equal([])
    })

    it('fails an object instead of an array as malformed, without retrying', async function () {
      server.fake.script([{kind: 'not-array'}])
      const {client} = clientFor(server.fake)
      const error = await fetchFailure(client, SMALL_DAY)

      expect(error.kind).to.equal('malformed')
      expect(error.message).to.match(/expected a JSON array of events, got object/)
      expect(server.fake.requests).to.have.length(1)
    })

    it('fails an event without an id as malformed', async function () {
      const [first, second, third] = generateEvents(BAD_DAY, 3)
      const withoutId: Partial<AuditEvent> = {...second}
      delete withoutId.id
      server.fake.setEvents(BAD_DAY, [first, withoutId as AuditEvent, third])
      const {client} = clientFor(server.fake)
      const error = await fetchFailure(client, BAD_DAY)

      expect(error.kind).to.equal('malformed')
      expect(error.message).to.match(/event 2 lacks an id/)
      expect(server.fake.requests).to.have.length(1)
    })
  })

  describe('secrets (scenario 19)', function () {
    const SENTINEL = `HRKU-SENTINEL-${randomUUID()}-${randomUUID()}`
    const WRONG_SENTINEL = `HRKU-SENTINEL-WRONG-${randomUUID()}-${randomUUID()}`
    const server = useFakeHeroku({token: SENTINEL})

    /** Everything a failure could show an operator: the error in every form, and every notice. */
    function shown(error: HerokuApiError, notices: ClientNotice[]): string {
      return [error.message, String(error), error.stack, JSON.stringify(error.details), JSON.stringify(notices)].join('\n')
    }

    const paths: {name: string; faults?: Fault[]; day?: string; options?: Partial<AuditClientOptions>; kind: HerokuApiError['kind']}[] = [
      {name: '401 from a wrong token', options: {token: WRONG_SENTINEL}, kind: 'http'},
      {name: '401 for the right token', faults: [{kind: 'status', status: 401}], kind: 'http'},
      {name: '403', faults: [{kind: 'status', status: 403}], kind: 'http'},
      {name: '500 until attempts run out', faults: times(3, {kind: 'status', status: 500}), kind: 'http'},
      {name: 'connection resets', faults: times(3, {kind: 'reset'}), kind: 'network'},
      {name: 'cut bodies', faults: times(3, {kind: 'cut-body'}), kind: 'network'},
      {name: 'attempt timeouts', faults: times(3, {kind: 'hang'}), kind: 'timeout'},
      {name: 'the total timeout', faults: times(3, {kind: 'hang'}), options: {totalTimeoutMs: 300}, kind: 'timeout'},
      {name: 'truncated JSON', faults: [{kind: 'truncated-json'}], kind: 'malformed'},
      {name: 'an object body', faults: [{kind: 'not-array'}], kind: 'malformed'},
      {name: 'a Retry-After beyond the cap', faults: [{kind: 'status', status: 429, retryAfter: '3600'}], kind: 'wait-too-long'},
      {name: 'a repeating Next-Range', faults: [{kind: 'repeat-next-range'}], day: BIG_DAY, kind: 'paging'},
      {name: 'an unknown account', options: {accountId: 'no-such-account'}, kind: 'http'},
    ]

    for (const {name, faults = [], day = SMALL_DAY, options = {}, kind} of paths) {
      it(`keeps the token out of the error and notices on ${name}`, async function () {
        server.fake.script(faults)
        const {client, notices} = clientFor(server.fake, {attemptTimeoutMs: 200, ...options})
        const error = await fetchFailure(client, day)

        expect(error.kind).to.equal(kind)
        const text = shown(error, notices)
        expect(text).to.not.include(SENTINEL)
        expect(text).to.not.include(WRONG_SENTINEL)
        // Nor any recognisable part of it.
        expect(text).to.not.include('SENTINEL')
      })
    }

    it('keeps the token out of the error on cancellation', async function () {
      server.fake.script([{kind: 'hang'}])
      const {client, notices} = clientFor(server.fake, {attemptTimeoutMs: 60_000})
      const cancel = new AbortController()
      const failing = fetchFailure(client, SMALL_DAY, cancel.signal)
      await until(() => server.fake.requests.length === 1, 'the request to arrive')
      cancel.abort()
      const error = await failing

      expect(error.kind).to.equal('aborted')
      expect(shown(error, notices)).to.not.include('SENTINEL')
    })

    describe('when a server or proxy echoes the token back', function () {
      const ECHOED = `HRKU-ECHOED-SENTINEL-${randomUUID()}-${randomUUID()}`
      const echoing = useFakeHeroku({token: ECHOED})
      // In production config.ts registers HEROKU_API_TOKEN; the client relies on that.
      before(function () {
        registerSecret(ECHOED)
      })

      it('redacts it from error messages, retry notices and warnings', async function () {
        const echo: Fault = {
          kind: 'status',
          status: 500,
          message: `upstream refused Authorization: Bearer ${ECHOED}`,
          headers: {'X-Heroku-Warning': `token ${ECHOED} is deprecated`},
        }
        echoing.fake.script(times(3, echo))
        const {client, notices} = clientFor(echoing.fake)
        const error = await fetchFailure(client, SMALL_DAY)

        const text = shown(error, notices)
        expect(notices.map((n) => n.kind)).to.include.members(['warning', 'retry'])
        expect(text).to.not.include(ECHOED)
        expect(error.message).to.include('Bearer [redacted]')
      })
    })
  })
})
