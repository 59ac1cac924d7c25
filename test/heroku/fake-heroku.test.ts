import {spawn} from 'node:child_process'
import {fileURLToPath} from 'node:url'

import {expect} from 'chai'

import {generateEvents, isValidDay, pastDays} from '../fake-heroku/events.js'
import {RATE_LIMIT_BODY, startFakeHeroku} from '../fake-heroku/server.js'
import type {AuditEvent, FakeHeroku} from '../fake-heroku/server.js'

const ACCEPT = 'application/vnd.heroku+json; version=3'
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const BIG_DAY = '2025-03-01'
const SMALL_DAY = '2025-03-02'

interface GetOptions {
  token?: string | null
  accept?: string | null
  range?: string
  method?: string
  signal?: AbortSignal
}

/** A request as audit-logger makes it, with each header overridable (null leaves it out). */
function get(fake: FakeHeroku, pathAndQuery: string, opts: GetOptions = {}): Promise<Response> {
  const headers: Record<string, string> = {}
  const token = opts.token === undefined ? fake.token : opts.token
  if (token !== null) headers.Authorization = `Bearer ${token}`
  const accept = opts.accept === undefined ? ACCEPT : opts.accept
  if (accept !== null) headers.Accept = accept
  if (opts.range !== undefined) headers.Range = opts.range
  return fetch(fake.url + pathAndQuery, {method: opts.method ?? 'GET', headers, signal: opts.signal})
}

const eventsPath = (day: string, extra = '') => `/enterprise-accounts/acme/events?day=${day}${extra}`

async function expectError(response: Response, status: number, id: string): Promise<void> {
  expect(response.status).to.equal(status)
  expect(response.headers.get('content-type')).to.equal('application/json')
  expect(response.headers.get('request-id')).to.match(UUID)
  expect(response.headers.get('ratelimit-remaining')).to.match(/^\d+$/)
  const body = (await response.json()) as {id: string; message: string}
  expect(body.id).to.equal(id)
  expect(body.message).to.be.a('string').with.length.greaterThan(0)
}

async function expectRejects(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise
  } catch (error) {
    return error as Error
  }
  throw new Error('expected a rejection')
}

describe('fake Heroku audit-trail API', function () {
  const bigDay = generateEvents(BIG_DAY, 2500)
  const smallDay = generateEvents(SMALL_DAY, 40, {seed: 7})
  let fake: FakeHeroku

  before(async function () {
    fake = await startFakeHeroku({events: {[BIG_DAY]: bigDay, [SMALL_DAY]: smallDay}})
  })
  afterEach(function () {
    fake.reset()
    fake.setRateLimitRemaining(4500)
  })
  after(async function () {
    await fake.close()
  })

  describe('generateEvents', function () {
    it('is deterministic, sorted, and unique across days', function () {
      expect(generateEvents(BIG_DAY, 2500)).to.deep.equal(bigDay)
      const ids = new Set([...bigDay, ...generateEvents(SMALL_DAY, 2500)].map(e => e.id))
      expect(ids.size).to.equal(5000)
      for (const event of bigDay) {
        expect(event.id).to.match(UUID)
        expect(event.created_at.startsWith(`${BIG_DAY}T`)).to.equal(true)
      }
      const times = bigDay.map(e => e.created_at)
      expect(times).to.deep.equal([...times].sort())
      expect(generateEvents(BIG_DAY, 10, {seed: 2})).to.not.deep.equal(generateEvents(BIG_DAY, 10))
    })

    it('includes events without an app and without an actor', function () {
      const team = bigDay.find(e => e.type === 'team_membership' && e.action === 'create')
      expect(team).to.not.equal(undefined)
      expect(team).to.not.have.property('app')
      expect(bigDay.some(e => e.actor === null)).to.equal(true)
      expect(bigDay.some(e => e.type === 'applink_connection')).to.equal(true)
      expect(bigDay.find(e => e.actor)?.actor?.email).to.match(/^[a-z]+@example\.com$/)
    })

    it('refuses a day that is not on the calendar', function () {
      expect(() => generateEvents('2025-02-30', 1)).to.throw(RangeError)
      expect(() => generateEvents('0099-02-29', 1)).to.throw(RangeError)
    })

    it('takes the days of years 1 to 99 as they are (not as 1901 to 1999)', function () {
      for (const day of ['0001-01-01', '0004-02-29', '0099-12-31']) {
        expect(isValidDay(day), day).to.equal(true)
        expect(generateEvents(day, 2)[0].created_at.slice(0, 10), day).to.equal(day)
      }
    })
  })

  describe('requests and errors', function () {
    it('answers a bare array with the standard headers and records the request', async function () {
      const response = await get(fake, eventsPath(SMALL_DAY, '&order=asc'))
      expect(response.status).to.equal(200)
      expect(response.headers.get('request-id')).to.match(UUID)
      expect(response.headers.get('ratelimit-remaining')).to.equal('4499')
      expect(response.headers.get('content-type')).to.equal('application/json')
      expect(response.headers.get('next-range')).to.equal(null)
      expect(await response.json()).to.deep.equal(JSON.parse(JSON.stringify(smallDay)))

      expect(fake.requests).to.have.length(1)
      const [recorded] = fake.requests
      expect(recorded).to.include({method: 'GET', path: '/enterprise-accounts/acme/events', day: SMALL_DAY})
      expect(recorded.query).to.deep.equal({day: SMALL_DAY, order: 'asc'})
      expect(recorded.headers.authorization).to.equal(`Bearer ${fake.token}`)
      expect(fake.requestsForDay(SMALL_DAY)).to.have.length(1)
      expect(fake.requestsForDay(BIG_DAY)).to.have.length(0)
    })

    it('401s a missing or wrong token with the unauthorized body', async function () {
      const wrong = await get(fake, eventsPath(SMALL_DAY), {token: 'HRKU-wrong'})
      expect(wrong.status).to.equal(401)
      expect(await wrong.json()).to.deep.equal({id: 'unauthorized', message: 'Invalid credentials provided.'})
      await expectError(await get(fake, eventsPath(SMALL_DAY), {token: null}), 401, 'unauthorized')
    })

    it('406s a wrong or missing Accept, and takes version=3.audit-trail', async function () {
      await expectError(await get(fake, eventsPath(SMALL_DAY), {accept: 'application/json'}), 406, 'not_acceptable')
      await expectError(await get(fake, eventsPath(SMALL_DAY), {accept: null}), 406, 'not_acceptable')
      const auditTrail = await get(fake, eventsPath(SMALL_DAY), {accept: 'application/vnd.heroku+json; version=3.audit-trail'})
      expect(auditTrail.status).to.equal(200)
    })

    it('404s an unknown account or route, finds the account by its URL-encoded id', async function () {
      await expectError(await get(fake, `/enterprise-accounts/nope/events?day=${SMALL_DAY}`), 404, 'not_found')
      await expectError(await get(fake, '/apps'), 404, 'not_found')
      await expectError(await get(fake, eventsPath(SMALL_DAY), {method: 'POST'}), 405, 'method_not_allowed')
      const byId = await get(fake, `/enterprise-accounts/${encodeURIComponent('00000000-0000-4000-8000-000000000001')}/events?day=${SMALL_DAY}`)
      expect(byId.status).to.equal(200)
      expect(await byId.json()).to.have.length(40)
    })

    it('422s impossible days and unknown orders, answers [] for a day without events', async function () {
      for (const day of ['2025-02-30', '2025-13-01', 'yesterday', '']) {
        await expectError(await get(fake, eventsPath(encodeURIComponent(day))), 422, 'invalid_params')
      }
      await expectError(await get(fake, eventsPath(SMALL_DAY, '&order=sideways')), 422, 'invalid_params')
      const empty = await get(fake, eventsPath('2024-02-29'))
      expect(empty.status).to.equal(200)
      expect(await empty.json()).to.deep.equal([])
    })

    it('filters by type, action and actor email, exactly', async function () {
      const expected = bigDay.filter(e => e.type === 'app' && e.action === 'create').map(e => e.id)
      expect(expected.length).to.be.greaterThan(10)
      const response = await get(fake, eventsPath(BIG_DAY, '&type=app&action=create'), {range: 'id ..; max=1000;'})
      expect(response.status).to.equal(200)
      expect(((await response.json()) as AuditEvent[]).map(e => e.id)).to.deep.equal(expected)

      const actor = 'alice@example.com'
      const byActor = (await (await get(fake, eventsPath(SMALL_DAY, `&actor=${encodeURIComponent(actor)}`))).json()) as AuditEvent[]
      expect(byActor.map(e => e.id)).to.deep.equal(smallDay.filter(e => e.actor?.email === actor).map(e => e.id))
      const nothing = await get(fake, eventsPath(SMALL_DAY, '&type=ap'))
      expect(await nothing.json()).to.deep.equal([])
    })
  })

  describe('paging', function () {
    it('pages 2,500 events through Next-Range: 206, 206, then 200', async function () {
      const statuses: number[] = []
      const ids: string[] = []
      let range: string | null = 'id ..; max=1000;'
      while (range !== null) {
        const response = await get(fake, eventsPath(BIG_DAY, '&order=asc'), {range})
        statuses.push(response.status)
        const page = (await response.json()) as AuditEvent[]
        ids.push(...page.map(e => e.id))
        expect(response.headers.get('content-range')).to.equal(`id ${page[0].id}..${page[page.length - 1].id}; max=1000`)
        range = response.headers.get('next-range')
        expect(range === null).to.equal(response.status === 200)
      }
      expect(statuses).to.deep.equal([206, 206, 200])
      expect(ids).to.deep.equal(bigDay.map(e => e.id))
      expect(new Set(ids).size).to.equal(2500)
      expect(fake.requestsForDay(BIG_DAY).map(r => r.range)).to.have.length(3)
    })

    it('pages 200 by default and clamps max to 1000', async function () {
      const first = await get(fake, eventsPath(BIG_DAY))
      expect(first.status).to.equal(206)
      expect(await first.json()).to.have.length(200)
      const clamped = await get(fake, eventsPath(BIG_DAY), {range: 'id ..; max=5000;'})
      expect(await clamped.json()).to.have.length(1000)
    })

    it('orders desc, paging included', async function () {
      const first = await get(fake, eventsPath(BIG_DAY, '&order=desc'), {range: 'id ..; max=1000;'})
      const second = await get(fake, eventsPath(BIG_DAY, '&order=desc'), {range: first.headers.get('next-range')!})
      const ids = [...((await first.json()) as AuditEvent[]), ...((await second.json()) as AuditEvent[])].map(e => e.id)
      expect(ids).to.deep.equal(bigDay.map(e => e.id).reverse().slice(0, 2000))
    })

    it('416s a garbage Range or an unknown starting id', async function () {
      for (const range of ['bytes=0-100', 'id ..; max=lots;', 'id ..; max=0;', 'id ]nope..; max=10;']) {
        await expectError(await get(fake, eventsPath(BIG_DAY), {range}), 416, 'requested_range_not_satisfiable')
      }
    })

    it('answers everything in one 200 when paging is off', async function () {
      const flat = await startFakeHeroku({events: {[BIG_DAY]: bigDay}, paging: false})
      try {
        const response = await get(flat, eventsPath(BIG_DAY), {range: 'id ..; max=1000;'})
        expect(response.status).to.equal(200)
        expect(response.headers.get('next-range')).to.equal(null)
        expect(await response.json()).to.have.length(2500)
      } finally {
        await flat.close()
      }
    })
  })

  describe('rate limit', function () {
    it('counts down and then 429s with the reference body', async function () {
      fake.setRateLimitRemaining(2)
      expect((await get(fake, eventsPath(SMALL_DAY))).headers.get('ratelimit-remaining')).to.equal('1')
      expect((await get(fake, eventsPath(SMALL_DAY))).headers.get('ratelimit-remaining')).to.equal('0')
      const limited = await get(fake, eventsPath(SMALL_DAY))
      expect(limited.status).to.equal(429)
      expect(limited.headers.get('ratelimit-remaining')).to.equal('0')
      expect(await limited.text()).to.equal(RATE_LIMIT_BODY)
      expect(RATE_LIMIT_BODY).to.equal(
        '{"id":"rate_limit","message":"Your account reached the API rate limit\\nPlease wait a few minutes before making new requests","url":"https://devcenter.heroku.com/articles/platform-api-reference#rate-limits"}',
      )
    })
  })

  describe('scripted faults', function () {
    it('answers scripted statuses in order, then normally; Retry-After and extra headers are sent', async function () {
      fake.script([
        {kind: 'status', status: 429, retryAfter: '3'},
        {kind: 'status', status: 503, headers: {'X-Heroku-Warning': 'degraded'}},
        {kind: 'status', status: 500, id: 'boom', message: 'it broke'},
      ])
      const limited = await get(fake, eventsPath(SMALL_DAY))
      expect(limited.headers.get('retry-after')).to.equal('3')
      expect(await limited.text()).to.equal(RATE_LIMIT_BODY)
      const unavailable = await get(fake, eventsPath(SMALL_DAY))
      expect(unavailable.headers.get('x-heroku-warning')).to.equal('degraded')
      await expectError(unavailable, 503, 'service_unavailable')
      const custom = await get(fake, eventsPath(SMALL_DAY))
      expect(custom.status).to.equal(500)
      expect(await custom.json()).to.deep.equal({id: 'boom', message: 'it broke'})
      expect((await get(fake, eventsPath(SMALL_DAY))).status).to.equal(200)
      expect(fake.requests).to.have.length(4)
    })

    it('keeps day-scoped faults for requests of that day', async function () {
      fake.script([{kind: 'status', status: 502}], {day: BIG_DAY})
      expect((await get(fake, eventsPath(SMALL_DAY))).status).to.equal(200)
      await expectError(await get(fake, eventsPath(BIG_DAY)), 502, 'bad_gateway')
      expect((await get(fake, eventsPath(BIG_DAY))).status).to.equal(206)
    })

    it('delays, then answers normally', async function () {
      fake.script([{kind: 'delay', ms: 150}])
      const started = Date.now()
      const response = await get(fake, eventsPath(SMALL_DAY))
      expect(response.status).to.equal(200)
      expect(Date.now() - started).to.be.at.least(140)
    })

    it('hangs without answering', async function () {
      fake.script([{kind: 'hang'}])
      const error = await expectRejects(get(fake, eventsPath(SMALL_DAY), {signal: AbortSignal.timeout(200)}))
      expect(error.name).to.equal('TimeoutError')
      expect(fake.requests).to.have.length(1)
    })

    it('sends headers and part of the body, then stalls', async function () {
      fake.script([{kind: 'hang-body'}])
      const response = await get(fake, eventsPath(SMALL_DAY), {signal: AbortSignal.timeout(300)})
      expect(response.status).to.equal(200)
      const error = await expectRejects(response.text())
      expect(error.name).to.equal('TimeoutError')
    })

    it('cuts the body short of its Content-Length', async function () {
      fake.script([{kind: 'cut-body'}])
      const response = await get(fake, eventsPath(SMALL_DAY))
      expect(response.status).to.equal(200)
      await expectRejects(response.text())
    })

    it('resets the connection', async function () {
      fake.script([{kind: 'reset'}])
      const error = await expectRejects(get(fake, eventsPath(SMALL_DAY)))
      expect(error).to.be.instanceOf(TypeError) // fetch's "fetch failed", the cause being the reset
      expect(fake.requests).to.have.length(1) // not silently retried by the client
    })

    it('sends complete but truncated JSON', async function () {
      fake.script([{kind: 'truncated-json'}])
      const response = await get(fake, eventsPath(SMALL_DAY))
      expect(response.status).to.equal(200)
      const text = await response.text()
      expect(text.length).to.be.greaterThan(100)
      expect(() => JSON.parse(text)).to.throw(SyntaxError)
    })

    it('wraps the events in an object instead of a bare array', async function () {
      fake.script([{kind: 'not-array'}])
      const body = (await (await get(fake, eventsPath(SMALL_DAY))).json()) as {events: AuditEvent[]}
      expect(Array.isArray(body)).to.equal(false)
      expect(body.events).to.have.length(40)
    })

    it('repeats the request Range as Next-Range', async function () {
      const range = 'id ..; max=1000;'
      fake.script([{kind: 'repeat-next-range'}, {kind: 'repeat-next-range'}])
      for (let i = 0; i < 2; i++) {
        const response = await get(fake, eventsPath(BIG_DAY), {range})
        expect(response.status).to.equal(206)
        expect(response.headers.get('next-range')).to.equal(range)
        expect(await response.json()).to.have.length(1000)
      }
    })
  })

  describe('close()', function () {
    it('returns promptly with a hanging request open', async function () {
      const closing = await startFakeHeroku()
      closing.script([{kind: 'hang'}])
      const pending = expectRejects(get(closing, eventsPath(SMALL_DAY)))
      while (closing.requests.length === 0) await new Promise(resolve => setTimeout(resolve, 5))
      const started = Date.now()
      await closing.close()
      expect(Date.now() - started).to.be.below(500)
      await pending
    })
  })
})

describe('the fake started by hand (npm run fake-api)', function () {
  this.timeout(30_000)

  it('pastDays: whole days before today, oldest first, across a month end', () => {
    expect(pastDays(3, Date.parse('2026-03-01T00:00:00Z'))).to.deep.equal(['2026-02-26', '2026-02-27', '2026-02-28'])
    expect(pastDays(1, Date.parse('2026-12-02T23:59:59Z'))).to.deep.equal(['2026-12-01'])
  })

  it('serves days ending yesterday, never today, and says how it pages', async () => {
    const child = spawn(process.execPath, ['--import=tsx', fileURLToPath(new URL('../fake-heroku/cli.ts', import.meta.url)), '--port', '0', '--days', '2', '--events-per-day', '3'], {stdio: ['ignore', 'pipe', 'pipe']})
    try {
      let banner = ''
      child.stdout.setEncoding('utf8')
      for await (const chunk of child.stdout) {
        banner += chunk as string
        if (banner.includes('Ctrl-C')) break
      }

      const yesterday = new Date(Date.now() - 86_400_000).toISOString().slice(0, 10)
      const before = new Date(Date.now() - 2 * 86_400_000).toISOString().slice(0, 10)
      expect(banner).to.include(`6 events over ${before}..${yesterday} (UTC; today is never served`)
      expect(banner).to.include('pages of the size a request asks for (Range max=N; audit-logger asks for 1000), at most 1000; 200 when it names none')
      const url = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(banner)?.[1]
      const today = new Date().toISOString().slice(0, 10)
      const answer = await fetch(`${url}/enterprise-accounts/acme/events?day=${today}`, {headers: {Authorization: 'Bearer HRKU-fake-token-0000000000000000000000000000', Accept: 'application/vnd.heroku+json; version=3'}})
      const body = (await answer.json()) as unknown[]
      expect(answer.status).to.be.oneOf([200, 206])
      expect(body, 'no events today').to.deep.equal([])
    } finally {
      child.kill()
    }
  })
})
