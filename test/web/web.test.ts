import {expect} from 'chai'
import type {FastifyInstance} from 'fastify'
import type {Kysely} from 'kysely'

import {loadWebConfig} from '../../src/lib/config.js'
import {findDay} from '../../src/lib/db/audit-log-repository.js'
import {ownChangesOnly} from '../../src/lib/db/change-feed.js'
import {createDb} from '../../src/lib/db/connection.js'
import type {Database} from '../../src/lib/db/schema.js'
import {UsageError} from '../../src/lib/errors.js'
import {type AppDeps, buildApp} from '../../src/lib/web/app.js'
import {checkBasicAuth, createCsrf} from '../../src/lib/web/security.js'
import type {VersionInfo} from '../../src/lib/web/version.js'
import {captureLogger} from '../support/capture.js'
import {clearLog, insertRecord, openTestDb, snapshot} from '../support/db.js'

const NOW = new Date('2025-10-01T12:00:00Z')
const AUTH = {username: 'ops', password: 'correct horse battery staple'}
const VERSION: VersionInfo = {
  version: '9.9.9',
  commit: '0123456789abcdef0123456789abcdef01234567',
  commitShort: '0123456',
  release: 'v42',
  releaseCreatedAt: '2025-09-30T10:00:00Z',
  builtAt: '2025-09-30T09:58:00Z',
  stack: 'heroku-24',
  appName: 'audit-logger-prod',
  dynoId: 'web.1-abc',
}

const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`
const AUTHORIZED = {authorization: basic(AUTH.username, AUTH.password)}

describe('status page (app.inject against a real database)', () => {
  let db: Kysely<Database>

  before(() => {
    db = openTestDb(process.env.TEST_DATABASE_URL!)
  })

  after(async () => {
    await db.destroy()
  })

  beforeEach(async () => {
    await clearLog(db)
  })

  async function app(overrides: Partial<AppDeps> = {}, auth: typeof AUTH | null = AUTH): Promise<FastifyInstance> {
    const instance = await buildApp({
      db,
      config: {auth: auth ?? undefined, port: 0, staleAfterMinutes: 15},
      version: VERSION,
      logger: captureLogger(),
      now: () => NOW,
      ...overrides,
    })
    after(() => instance.close())
    return instance
  }

  const post = (instance: FastifyInstance, form: string) =>
    instance.inject({method: 'POST', url: '/delete', headers: {...AUTHORIZED, 'content-type': 'application/x-www-form-urlencoded'}, payload: form})

  async function seed() {
    await insertRecord(db, {day: '2025-09-26', status: 'SUCCESS', events: 10, durationSeconds: 3})
    await insertRecord(db, {day: '2025-09-27', status: 'FAILED', error: 'Heroku API answered 503'})
    await insertRecord(db, {day: '2025-09-28', status: 'SUCCESS', events: 30, durationSeconds: 2})
    await insertRecord(db, {day: '2025-09-29', status: 'ERROR', error: 'malformed response'})
    await insertRecord(db, {day: '2025-09-30', status: 'PROCESSING', heartbeatSecondsAgo: 5, claimToken: '11111111-2222-4333-8444-555555555555'})
  }

  describe('the log', () => {
    it('shows records newest first with color-coded statuses, times in UTC, and the summary', async () => {
      await seed()
      const response = await (await app()).inject({url: '/', headers: AUTHORIZED})
      expect(response.statusCode).to.equal(200)
      const html = response.body
      const order = ['2025-09-30', '2025-09-29', '2025-09-28', '2025-09-27', '2025-09-26'].map((d) => html.indexOf(`>${d}</a>`))
      expect(order.every((position, i) => position > 0 && (i === 0 || position > order[i - 1]))).to.equal(true)
      expect(html).to.include('class="status status-failed">FAILED<')
      expect(html).to.include('class="status status-processing">PROCESSING<')
      expect(html).to.match(/\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC/)
      expect(html).to.match(/<span class="value">5<\/span><span class="label">records/)
      expect(html).to.match(/<span class="value">2<\/span><span class="label">successful days · 40\.0 %/)
      expect(html).to.match(/<span class="value">2<\/span><span class="label">failed days · 40\.0 %/)
      expect(html).to.match(/<span class="value">1<\/span><span class="label">in progress/)
      expect(html).to.match(/<span class="value">40<\/span><span class="label">events · 20\.0 per successful day/)
    })

    it('filters by status and date range, kept in the query string', async () => {
      await seed()
      const instance = await app()
      const failed = await instance.inject({url: '/?status=FAILED', headers: AUTHORIZED})
      expect(failed.body).to.include('>2025-09-27</a>')
      expect(failed.body).not.to.include('>2025-09-26</a>')
      expect(failed.body).to.include('<option value="FAILED" selected>')

      const range = await instance.inject({url: '/?from=2025-09-27&to=2025-09-28&size=1', headers: AUTHORIZED})
      expect(range.body).to.include('>2025-09-28</a>')
      expect(range.body).not.to.include('>2025-09-27</a>')
      // The summary covers the filtered range: 2 records, 1 success.
      expect(range.body).to.match(/<span class="value">2<\/span><span class="label">records/)
      // Handlebars escapes "=" too; a browser reads it back as the same link.
      expect(range.body).to.include('href="/?from&#x3D;2025-09-27&amp;to&#x3D;2025-09-28&amp;page&#x3D;2&amp;size&#x3D;1"')
    })

    it('pages on the server, with newer/older links and an empty page past the end', async () => {
      await seed()
      const instance = await app()
      const first = await instance.inject({url: '/?size=2', headers: AUTHORIZED})
      expect(first.body).to.include('1–2 of 5 · page 1 of 3')
      expect(first.body).to.include('rel="next"')
      expect(first.body).not.to.include('rel="prev"')
      const last = await instance.inject({url: '/?size=2&page=3', headers: AUTHORIZED})
      expect(last.body).to.include('5–5 of 5 · page 3 of 3')
      expect(last.body).to.include('>2025-09-26</a>')
      const beyond = await instance.inject({url: '/?size=2&page=9', headers: AUTHORIZED})
      expect(beyond.statusCode).to.equal(200)
      expect(beyond.body).to.include('No records match.')
    })

    it('shows the last 90 days with missing days marked, each linking to its day', async () => {
      await seed()
      const html = (await (await app()).inject({url: '/', headers: AUTHORIZED})).body
      const cells = html.match(/class="day day-[a-z]+(?: day-[a-z]+)? wd-\d" href="\/logs\/\d{4}-\d\d-\d\d"/g) ?? []
      expect(cells).to.have.length(90)
      expect(html).to.include('85 without a record')
      expect(html).to.include('class="day day-success day-unsettled wd-5" href="/logs/2025-09-26" title="2025-09-26: SUCCESS, not yet settled"')
      expect(html).to.include('href="/logs/2025-09-25" title="2025-09-25: MISSING"')
      expect(html).to.include('title="2025-07-03: MISSING"')
      expect(html).not.to.include('href="/logs/2025-10-01"')
    })

    it('shows the version information in a collapsible panel', async () => {
      const html = (await (await app()).inject({url: '/', headers: AUTHORIZED})).body
      expect(html).to.include('<details class="version">')
      for (const value of ['0123456', VERSION.commit, 'v42', 'heroku-24', 'audit-logger-prod', 'web.1-abc', '2025-09-30T09:58:00Z']) {
        expect(html).to.include(value)
      }
    })

    it("shows a day's every column, and a 404 page for a day without a record", async () => {
      await seed()
      const instance = await app()
      const day = await instance.inject({url: '/logs/2025-09-30', headers: AUTHORIZED})
      expect(day.statusCode).to.equal(200)
      for (const column of ['claim_token', 'heartbeat_at', 'started_at', 'finished_at', 'attempts', 'created_at', 'updated_at']) {
        expect(day.body).to.include(`<th scope="row">${column}</th>`)
      }

      expect(day.body).to.include('11111111-2222-4333-8444-555555555555')
      const none = await instance.inject({url: '/logs/2025-01-01', headers: AUTHORIZED})
      expect(none.statusCode).to.equal(404)
      expect(none.body).to.include('No record for 2025-01-01')
    })
  })

  describe('bad input is a 400, never a 500 (scenario 18)', () => {
    const pages = ['/?status=BOGUS', '/?from=2025-02-30', '/?to=2025-13-01', '/?from=yesterday', '/?from=2025-09-28&to=2025-09-01', '/?page=0', '/?page=abc', '/?size=100000', '/logs/2025-02-30', '/logs/not-a-date', '/delete?date=2025-02-30', '/logs/0000-01-01', '/delete?date=0000-01-01', '/?from=0000-01-01', '/?to=0000-12-31']
    for (const url of pages) {
      it(`GET ${url} → 400 page`, async () => {
        const response = await (await app()).inject({url, headers: AUTHORIZED})
        expect(response.statusCode).to.equal(400)
        expect(response.headers['content-type']).to.match(/text\/html/)
        expect(response.body).to.include('Bad request')
        expect(response.body).not.to.match(/at .*\.(js|ts):\d+/)
      })
    }

    for (const url of ['/api/logs?status=nope', '/api/logs?from=2025-02-30', '/api/logs/2025-02-30', '/api/logs?size=-1', '/api/logs/0000-01-01', '/api/logs?from=0000-01-01', '/api/logs?to=0000-01-01']) {
      it(`GET ${url} → 400 JSON`, async () => {
        const response = await (await app()).inject({url, headers: AUTHORIZED})
        expect(response.statusCode).to.equal(400)
        expect(response.json()).to.have.property('error').that.matches(/Bad request/)
      })
    }

    it('answers year 0 with a 400 on the read-only page too, where no sign-in stands before it', async () => {
      const instance = await app({}, null)
      for (const url of ['/logs/0000-01-01', '/api/logs/0000-01-01', '/?from=0000-01-01', '/api/logs?to=0000-01-01']) {
        expect((await instance.inject({url})).statusCode, url).to.equal(400)
      }
    })

    it('answers an unknown route with a 404 page', async () => {
      const response = await (await app()).inject({url: '/nope', headers: AUTHORIZED})
      expect(response.statusCode).to.equal(404)
    })
  })

  describe('JSON API', () => {
    it('GET /api/logs pages and filters like the page', async () => {
      await seed()
      const response = await (await app()).inject({url: '/api/logs?status=SUCCESS&size=1&page=2', headers: AUTHORIZED})
      expect(response.statusCode).to.equal(200)
      const body = response.json()
      expect(body).to.include({page: 2, size: 1, total: 2, pages: 2})
      expect(body.records).to.have.length(1)
      expect(body.records[0]).to.include({date: '2025-09-26', status: 'SUCCESS', events: 10, attempts: 1})
      expect(body.records[0].durationSeconds).to.be.closeTo(3, 0.5)
      expect(body.summary).to.include({total: 5, successful: 2})
      expect(body.yesterday).to.deep.equal({day: '2025-09-30', status: 'PROCESSING', done: false})
    })

    it('reports the missing days of the filtered range (at most up to yesterday)', async () => {
      await seed()
      const body = (await (await app()).inject({url: '/api/logs?from=2025-09-24&to=2025-10-05', headers: AUTHORIZED})).json()
      expect(body.missing).to.deep.equal({from: '2025-09-24', to: '2025-09-30', days: ['2025-09-24', '2025-09-25']})
    })

    it('shows the digest of a SUCCESS day', async () => {
      await seed()
      await db.updateTable('audit_events_log').set({events_digest: 'ab'.repeat(32)}).where('process_date', '=', '2025-09-28').execute()
      const instance = await app()
      expect((await instance.inject({url: '/api/logs/2025-09-28', headers: AUTHORIZED})).json().digest).to.equal('ab'.repeat(32))
      expect((await instance.inject({url: '/logs/2025-09-28', headers: AUTHORIZED})).body).to.include(`<code>${'ab'.repeat(32)}</code>`)
    })

    it('GET /api/logs/:date gives one record, or 404', async () => {
      await seed()
      const instance = await app()
      const found = await instance.inject({url: '/api/logs/2025-09-27', headers: AUTHORIZED})
      expect(found.json()).to.include({date: '2025-09-27', status: 'FAILED', error: 'Heroku API answered 503'})
      const missing = await instance.inject({url: '/api/logs/2025-01-01', headers: AUTHORIZED})
      expect(missing.statusCode).to.equal(404)
      expect(missing.json().error).to.match(/No record for 2025-01-01/)
    })
  })

  describe('/healthz', () => {
    it('answers 200 without auth, with the latest SUCCESS date', async () => {
      await seed()
      const response = await (await app()).inject({url: '/healthz'})
      expect(response.statusCode).to.equal(200)
      expect(response.json()).to.deep.include({ok: true, database: 'reachable', latestSuccess: '2025-09-28'})
    })

    it('reports yesterday and the missing days of the last 30', async () => {
      await seed()
      const body = (await (await app()).inject({url: '/healthz'})).json()
      expect(body.yesterday).to.deep.equal({day: '2025-09-30', status: 'PROCESSING', done: false})
      expect(body.missing.from).to.equal('2025-09-01')
      expect(body.missing.to).to.equal('2025-09-30')
      expect(body.missing.days).to.have.length(25)
      expect(body.missing.days).to.include('2025-09-25')
      expect(body.missing.days).not.to.include('2025-09-26')
    })

    describe('HEALTH_REQUIRE_YESTERDAY_AFTER', () => {
      const at = (iso: string) => () => new Date(iso)
      const withHour = async (hour: number, now: () => Date) =>
        buildApp({db, config: {port: 0, staleAfterMinutes: 15, requireYesterdayAfterHour: hour}, version: VERSION, logger: captureLogger(), now})

      it('answers 503 once the hour has passed and yesterday is not SUCCESS', async () => {
        await seed()
        const late = await withHour(6, at('2025-10-01T06:00:00Z'))
        const response = await late.inject({url: '/healthz'})
        expect(response.statusCode).to.equal(503)
        expect(response.json()).to.include({ok: false, database: 'reachable'})
        expect(response.json().reason).to.equal('yesterday (2025-09-30) is PROCESSING, not SUCCESS, after 06:00 UTC')
        await late.close()
      })

      it('answers 200 before the hour, and after it once yesterday is SUCCESS', async () => {
        await seed()
        const early = await withHour(6, at('2025-10-01T05:59:59Z'))
        expect((await early.inject({url: '/healthz'})).statusCode).to.equal(200)
        await early.close()
        const nextDay = await withHour(6, at('2025-09-29T07:00:00Z'))
        const response = await nextDay.inject({url: '/healthz'})
        expect(response.statusCode).to.equal(200)
        expect(response.json().yesterday).to.deep.equal({day: '2025-09-28', status: 'SUCCESS', done: true})
        await nextDay.close()
      })

      it('moves on with the clock at once, though answers are kept: the hour and yesterday are part of the key', async () => {
        await seed()
        await insertRecord(db, {day: '2025-10-01', status: 'SUCCESS'})
        let now = new Date('2025-10-01T05:59:59.500Z')
        const instance = await app({config: {port: 0, staleAfterMinutes: 15, requireYesterdayAfterHour: 6}, changes: ownChangesOnly(), now: () => now})
        expect((await instance.inject({url: '/healthz'})).statusCode, 'before the hour').to.equal(200)
        now = new Date('2025-10-01T06:00:00.000Z')
        const late = await instance.inject({url: '/healthz'})
        expect(late.statusCode, 'half a second later, past the hour').to.equal(503)
        expect(late.json().reason).to.equal('yesterday (2025-09-30) is PROCESSING, not SUCCESS, after 06:00 UTC')
        now = new Date('2025-10-02T06:00:00.000Z')
        const nextDay = await instance.inject({url: '/healthz'})
        expect(nextDay.statusCode, 'the next day').to.equal(200)
        expect(nextDay.json().yesterday).to.deep.equal({day: '2025-10-01', status: 'SUCCESS', done: true})
      })

      it('is read from the environment as an hour 0..23', () => {
        expect(loadWebConfig({HEALTH_REQUIRE_YESTERDAY_AFTER: '6'}).requireYesterdayAfterHour).to.equal(6)
        expect(loadWebConfig({}).requireYesterdayAfterHour).to.equal(undefined)
        expect(() => loadWebConfig({HEALTH_REQUIRE_YESTERDAY_AFTER: '24'})).to.throw(UsageError, /HEALTH_REQUIRE_YESTERDAY_AFTER/)
      })
    })

    it('answers 503 when the database is unreachable, naming no secret', async () => {
      const unreachable = createDb({url: 'postgres://u:Sentinel-Health-Pass@127.0.0.1:1/x', ssl: 'disable'})
      try {
        const response = await (await app({db: unreachable})).inject({url: '/healthz'})
        expect(response.statusCode).to.equal(503)
        expect(response.json()).to.deep.equal({ok: false, database: 'unreachable'})
        expect(response.body).not.to.include('Sentinel')
      } finally {
        await unreachable.destroy()
      }
    })
  })

  describe('basic auth (scenario 15)', () => {
    const routes: Array<{method: 'GET' | 'POST'; url: string}> = [
      {method: 'GET', url: '/'},
      {method: 'GET', url: '/?status=FAILED'},
      {method: 'GET', url: '/logs/2025-09-27'},
      {method: 'GET', url: '/api/logs'},
      {method: 'GET', url: '/api/logs/2025-09-27'},
      {method: 'GET', url: '/delete?date=2025-09-27'},
      {method: 'POST', url: '/delete'},
      {method: 'GET', url: '/static/app.css'},
      {method: 'GET', url: '/no-such-page'},
    ]
    const wrong: Array<[string, Record<string, string>]> = [
      ['no credentials', {}],
      ['a wrong password', {authorization: basic(AUTH.username, 'wrong')}],
      ['a wrong user', {authorization: basic('root', AUTH.password)}],
      ['a password prefix', {authorization: basic(AUTH.username, AUTH.password.slice(0, 5))}],
      ['a malformed header', {authorization: 'Basic !!!not-base64'}],
      ['no colon', {authorization: `Basic ${Buffer.from('opsonly').toString('base64')}`}],
      ['another scheme', {authorization: `Bearer ${AUTH.password}`}],
    ]

    it('answers 401 with WWW-Authenticate on every route without the right credentials', async () => {
      await seed()
      const instance = await app()
      for (const route of routes) {
        for (const [what, headers] of wrong) {
          const response = await instance.inject({...route, headers, payload: route.method === 'POST' ? 'date=2025-09-27' : undefined})
          expect(response.statusCode, `${route.method} ${route.url} with ${what}`).to.equal(401)
          expect(response.headers['www-authenticate']).to.equal('Basic realm="audit-logger", charset="UTF-8"')
        }
      }

      expect(await findDay(db, '2025-09-27')).not.to.equal(undefined)
    })

    it('lets the right credentials in', async () => {
      const instance = await app()
      for (const url of ['/', '/api/logs', '/static/app.css', '/static/app.js']) {
        expect((await instance.inject({url, headers: AUTHORIZED})).statusCode, url).to.equal(200)
      }
    })

    it('compares credentials of any length without throwing', () => {
      expect(checkBasicAuth(basic('o', 'p'), AUTH)).to.equal(false)
      expect(checkBasicAuth(basic(AUTH.username, `${AUTH.password}${'x'.repeat(500)}`), AUTH)).to.equal(false)
      expect(checkBasicAuth(basic(AUTH.username, AUTH.password), AUTH)).to.equal(true)
      expect(checkBasicAuth(basic(AUTH.username, 'pass:with:colons'), {username: 'ops', password: 'pass:with:colons'})).to.equal(true)
    })

    it('refuses to start half-configured, with one clear line', () => {
      for (const env of [{STATUS_PAGE_USERNAME: 'ops'}, {STATUS_PAGE_PASSWORD: 'secret-pass'}]) {
        expect(() => loadWebConfig(env)).to.throw(UsageError, /is not set but .* is/)
      }

      expect(loadWebConfig({}).auth).to.equal(undefined)
      expect(loadWebConfig({STATUS_PAGE_USERNAME: 'ops', STATUS_PAGE_PASSWORD: 'p4ss'}).auth).to.deep.equal({username: 'ops', password: 'p4ss'})
      expect(loadWebConfig({PORT: '8080'}).port).to.equal(8080)
      expect(() => loadWebConfig({PORT: 'eighty'})).to.throw(UsageError, /PORT/)
    })
  })

  describe('deleting (scenarios 7 and 16)', () => {
    async function confirmPage(instance: FastifyInstance, query: string) {
      const response = await instance.inject({url: `/delete?${query}`, headers: AUTHORIZED})
      expect(response.statusCode).to.equal(200)
      const token = /name="csrf" value="([^"]+)"/.exec(response.body)?.[1]
      expect(token).to.be.a('string')
      return {html: response.body, token: token!}
    }

    it('lists exactly what will go on a confirmation page that changes nothing', async () => {
      await seed()
      const before = await snapshot(db)
      const {html} = await confirmPage(await app(), 'date=2025-09-27&date=2025-09-29&date=2025-01-01')
      expect(html).to.include('Delete 2 record(s)?')
      expect(html).to.include('name="date" value="2025-09-27"')
      expect(html).to.include('name="date" value="2025-09-29"')
      expect(html).not.to.include('name="date" value="2025-09-28"')
      expect(html).to.include('No record for: 2025-01-01')
      expect(await snapshot(db), 'GET never changes anything').to.deep.equal(before)
    })

    it('refuses a POST with no token or a wrong one, then deletes with the right one', async () => {
      await seed()
      const instance = await app()
      const {token} = await confirmPage(instance, 'date=2025-09-27')
      expect((await post(instance, 'date=2025-09-27')).statusCode).to.equal(403)
      expect((await post(instance, `date=2025-09-27&csrf=${encodeURIComponent(token.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A')))}`)).statusCode).to.equal(403)
      const otherKeys = createCsrf({username: 'ops', password: 'another password'}).issue(['2025-09-27'])
      expect((await post(instance, `date=2025-09-27&csrf=${encodeURIComponent(otherKeys)}`)).statusCode).to.equal(403)
      expect(await findDay(db, '2025-09-27')).not.to.equal(undefined)

      const done = await post(instance, `date=2025-09-27&csrf=${encodeURIComponent(token)}`)
      expect(done.statusCode).to.equal(303)
      expect(done.headers.location).to.equal('/?deleted=1&kept=0&missing=0')
      expect(await findDay(db, '2025-09-27')).to.equal(undefined)
      const page = await instance.inject({url: done.headers.location as string, headers: AUTHORIZED})
      expect(page.body).to.include('Deleted 1 record.')
    })

    it('binds the token to the selection its page listed: no other, no more, no fewer', async () => {
      await seed()
      const instance = await app()
      const one = (await confirmPage(instance, 'date=2025-09-27')).token
      const two = (await confirmPage(instance, 'date=2025-09-29&date=2025-09-27&date=2025-01-01')).token
      const attempts = [
        `date=2025-09-27&date=2025-09-29&csrf=${encodeURIComponent(one)}`, // more than confirmed
        `date=2025-09-29&csrf=${encodeURIComponent(one)}`, // something else
        `date=2025-09-26&csrf=${encodeURIComponent(one)}`,
        `date=2025-09-29&csrf=${encodeURIComponent(two)}`, // less than confirmed
        `date=2025-09-27&date=2025-09-29&date=2025-01-01&csrf=${encodeURIComponent(two)}`, // plus a day the page did not list
      ]
      const before = await snapshot(db)
      for (const form of attempts) {
        const response = await post(instance, form)
        expect(response.statusCode, form).to.equal(403)
        expect(response.body).to.include('nothing was deleted')
      }

      expect(await snapshot(db), 'nothing deleted').to.deep.equal(before)
      // Order and repeats do not change a selection.
      const done = await post(instance, `date=2025-09-29&date=2025-09-27&date=2025-09-29&csrf=${encodeURIComponent(two)}`)
      expect(done.headers.location).to.equal('/?deleted=2&kept=0&missing=0')
      expect(await findDay(db, '2025-09-26'), 'the rest untouched').not.to.equal(undefined)
    })

    it('checks a token in constant time whatever the selection, and only for its own', () => {
      const csrf = createCsrf(AUTH)
      const token = csrf.issue(['2025-09-27', '2025-09-28'])
      expect(csrf.verify(token, ['2025-09-28', '2025-09-27', '2025-09-27'])).to.equal(true)
      expect(csrf.verify(token, ['2025-09-27'])).to.equal(false)
      expect(csrf.verify(token, ['2025-09-27', '2025-09-28', '2025-09-29'])).to.equal(false)
      expect(csrf.verify(token, [])).to.equal(false)
      expect(csrf.verify(`${token}x`, ['2025-09-27', '2025-09-28'])).to.equal(false)
      expect(csrf.verify(undefined, ['2025-09-27'])).to.equal(false)
      expect(createCsrf(AUTH).verify(token, ['2025-09-27', '2025-09-28']), 'another dyno with the same credentials').to.equal(true)
    })

    it('refuses year 0 in the posted form with a 400, whatever the token (scenario 18)', async () => {
      const token = createCsrf(AUTH).issue(['0000-01-01'])
      const response = await post(await app(), `date=0000-01-01&csrf=${encodeURIComponent(token)}`)
      expect(response.statusCode).to.equal(400)
      expect(response.body).to.include('Bad request')
    })

    it('refuses an expired token', async () => {
      await seed()
      const stale = createCsrf(AUTH, () => Date.now() - 2 * 60 * 60 * 1000).issue(['2025-09-27'])
      const response = await post(await app(), `date=2025-09-27&csrf=${encodeURIComponent(stale)}`)
      expect(response.statusCode).to.equal(403)
      expect(await findDay(db, '2025-09-27')).not.to.equal(undefined)
    })

    it('keeps a live PROCESSING record unless forced on the confirmation page', async () => {
      await seed()
      const instance = await app()
      const {html, token} = await confirmPage(instance, 'date=2025-09-30&date=2025-09-29')
      expect(html).to.include('name="force"')
      const kept = await post(instance, `date=2025-09-30&date=2025-09-29&csrf=${encodeURIComponent(token)}`)
      expect(kept.headers.location).to.equal('/?deleted=1&kept=1&missing=0')
      expect((await findDay(db, '2025-09-30'))?.status).to.equal('PROCESSING')
      const page = await instance.inject({url: kept.headers.location as string, headers: AUTHORIZED})
      expect(page.body).to.include('Kept 1 record still being processed')

      // Forcing it is a new selection, confirmed on its own page.
      const again = await confirmPage(instance, 'date=2025-09-30')
      const forced = await post(instance, `date=2025-09-30&force=on&csrf=${encodeURIComponent(again.token)}`)
      expect(forced.headers.location).to.equal('/?deleted=1&kept=0&missing=0')
      expect(await findDay(db, '2025-09-30')).to.equal(undefined)
    })

    it('is read-only without credentials: no delete controls, and delete routes answer 403', async () => {
      await seed()
      const instance = await app({}, null)
      const page = await instance.inject({url: '/'})
      expect(page.statusCode).to.equal(200)
      expect(page.body).not.to.include('Delete selected')
      expect(page.body).not.to.include('name="date"')
      expect(page.body).to.include('Read-only')
      expect((await instance.inject({url: '/delete?date=2025-09-27'})).statusCode).to.equal(403)
      const forged = createCsrf({username: 'x', password: 'y'}).issue(['2025-09-27'])
      const postResponse = await instance.inject({method: 'POST', url: '/delete', headers: {'content-type': 'application/x-www-form-urlencoded'}, payload: `date=2025-09-27&csrf=${forged}`})
      expect(postResponse.statusCode).to.equal(403)
      expect(await findDay(db, '2025-09-27')).not.to.equal(undefined)
    })
  })

  describe('Cache-Control', () => {
    it('is no-store on every dynamic answer: pages, JSON, health, errors, redirects; static files keep theirs', async () => {
      await seed()
      const instance = await app()
      const readOnly = await app({}, null)
      const confirm = await instance.inject({url: '/delete?date=2025-09-27', headers: AUTHORIZED})
      const token = /name="csrf" value="([^"]+)"/.exec(confirm.body)![1]
      const answers = {
        'the log': await instance.inject({url: '/', headers: AUTHORIZED}),
        'a day': await instance.inject({url: '/logs/2025-09-27', headers: AUTHORIZED}),
        'a day without a record (404)': await instance.inject({url: '/logs/2025-01-01', headers: AUTHORIZED}),
        'the confirmation page, with its token': confirm,
        'the API': await instance.inject({url: '/api/logs', headers: AUTHORIZED}),
        'a day in the API': await instance.inject({url: '/api/logs/2025-09-27', headers: AUTHORIZED}),
        '/healthz': await instance.inject({url: '/healthz'}),
        'a bad request (400)': await instance.inject({url: '/?page=0', headers: AUTHORIZED}),
        'a bad API request (400)': await instance.inject({url: '/api/logs?size=-1', headers: AUTHORIZED}),
        'an unknown route (404)': await instance.inject({url: '/nope', headers: AUTHORIZED}),
        'no credentials (401)': await instance.inject({url: '/'}),
        'no credentials for a static file (401)': await instance.inject({url: '/static/app.css'}),
        'a refused delete (403)': await post(instance, 'date=2025-09-27&csrf=nope'),
        'the delete, redirecting (303)': await post(instance, `date=2025-09-27&csrf=${encodeURIComponent(token)}`),
        'the read-only log': await readOnly.inject({url: '/'}),
        'the read-only delete (403)': await readOnly.inject({url: '/delete?date=2025-09-27'}),
      }
      for (const [what, response] of Object.entries(answers)) expect(response.headers['cache-control'], what).to.equal('no-store')
      expect(answers['the delete, redirecting (303)'].statusCode).to.equal(303)
      for (const file of ['/static/app.css', '/static/app.js']) {
        expect((await instance.inject({url: file, headers: AUTHORIZED})).headers['cache-control'], file).to.equal('public, max-age=3600')
      }
    })
  })

  describe('XSS (scenario 17)', () => {
    const payloads = ['<script>alert(1)</script>', '"><img src=x onerror=alert(1)>']

    it('escapes stored values on every page, under a CSP that forbids inline script', async () => {
      await insertRecord(db, {day: '2025-09-27', status: 'ERROR', error: payloads.join(' ')})
      const instance = await app()
      for (const url of ['/', '/logs/2025-09-27', '/delete?date=2025-09-27']) {
        const response = await instance.inject({url, headers: AUTHORIZED})
        expect(response.statusCode, url).to.equal(200)
        expect(response.body, url).not.to.include('<script>alert')
        expect(response.body, url).not.to.include('<img src=x')
        if (url !== '/delete?date=2025-09-27') expect(response.body, url).to.include('&lt;script&gt;alert(1)&lt;/script&gt;')
        const csp = String(response.headers['content-security-policy'])
        expect(csp).to.include("script-src 'self'")
        expect(csp).not.to.include('unsafe-inline')
      }

      const api = await instance.inject({url: '/api/logs/2025-09-27', headers: AUTHORIZED})
      expect(api.headers['content-type']).to.match(/application\/json/)
    })

    it('has no inline script in any page', async () => {
      await seed()
      const html = (await (await app()).inject({url: '/', headers: AUTHORIZED})).body
      const scripts = html.match(/<script[^>]*>/g) ?? []
      expect(scripts).to.deep.equal(['<script src="/static/app.js" defer>'])
      expect(html).not.to.match(/ on[a-z]+="/)
    })
  })
})
