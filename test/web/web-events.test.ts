/**
 * The status page's events views and JSON API (/events, /events/:id, /api/events,
 * /api/events.ndjson) through app.inject, against the real event store on both engines.
 */
import {expect} from 'chai'
import type {FastifyInstance, LightMyRequestResponse} from 'fastify'
import type {Kysely, KyselyPlugin} from 'kysely'

import {type WebConfig, loadWebConfig} from '../../src/lib/config.js'
import {createDb} from '../../src/lib/db/connection.js'
import type {Database} from '../../src/lib/db/schema.js'
import {foldJsonText, prettyJson} from '../../src/lib/events/event-json.js'
import type {AuditEvent} from '../../src/lib/heroku/types.js'
import {type AppDeps, buildApp} from '../../src/lib/web/app.js'
import {decodeCursor, encodeCursor} from '../../src/lib/web/event-cursor.js'
import {eventHref} from '../../src/lib/web/event-view.js'
import {ndjsonLines} from '../../src/lib/web/event-routes.js'
import {isLocalClient, isLoopbackAddress} from '../../src/lib/web/security.js'
import type {VersionInfo} from '../../src/lib/web/version.js'
import {captureLogger} from '../support/capture.js'
import {clearLog, describeOnEngines, insertRecord} from '../support/db.js'
import {sampleEvent, seedEvents} from '../support/event-seed.js'

const AUTH = {username: 'ops', password: 'events-test-password'}
const AUTHORIZED = {authorization: `Basic ${Buffer.from(`${AUTH.username}:${AUTH.password}`).toString('base64')}`}
const VERSION = {version: 'test', commit: 'unknown', commitShort: 'unknown'} as VersionInfo

const DAY1 = '2025-09-27'
const DAY2 = '2025-09-28'
const DAY3 = '2025-09-29'

const hostileApp = sampleEvent(DAY2, 10, {id: 'xss-1', app: {id: 'app-x', name: '<script>alert(1)</script>'}, actor: {email: "o'brien+ops&co@example.com"}})
const controlActor = sampleEvent(DAY2, 11, {id: 'ctl-1', actor: {email: 'evil\u001B[2K@example.com'}, app: {name: '\u202Egpj.exe'}})
const longId = sampleEvent(DAY2, 12, {id: `long-${'x'.repeat(195)}`})
const oddId = sampleEvent(DAY2, 13, {id: 'a/b?c#d%e f&é'})
// As the API might send it: pretty-printed, with a number no double holds.
const PRETTY = `{
    "id": "pretty-1",
    "type": "app", "action": "update",
    "created_at": "2025-09-28T11:00:00Z",
    "actor": {"email": "user1@example.com"},
    "data": {"big": 12345678901234567890}
  }`
const DAY2_PAGE = `[${JSON.stringify(hostileApp)}, ${PRETTY}, ${JSON.stringify(controlActor)}, ${JSON.stringify(longId)}, ${JSON.stringify(oddId)}]`
const day1Events = [1, 2, 3].map((n) => sampleEvent(DAY1, n))
const day3Events = [5, 6].map((n) => sampleEvent(DAY3, n))

/** Every seeded id, newest first: by day, then created_at, then id. */
const NEWEST_FIRST = ['2025-09-29-0006', '2025-09-29-0005', 'pretty-1', oddId.id, longId.id, 'ctl-1', 'xss-1', '2025-09-27-0003', '2025-09-27-0002', '2025-09-27-0001']

/** What Handlebars writes for these characters, read back. */
function unescapeHtml(text: string): string {
  const entities: Record<string, string> = {'&amp;': '&', '&lt;': '<', '&gt;': '>', '&quot;': '"', '&#x27;': "'", '&#x60;': '`', '&#x3D;': '='}
  return text.replaceAll(/&(?:amp|lt|gt|quot|#x27|#x60|#x3D);/g, (entity) => entities[entity])
}

/** The hrefs of a page's links whose tag contains `marker`, as a browser reads them. */
function hrefs(html: string, marker = ''): string[] {
  return [...html.matchAll(/<a [^>]*>/g)].filter((m) => m[0].includes(marker)).map((m) => unescapeHtml(/href="([^"]*)"/.exec(m[0])![1]))
}

/** The event ids a list page links to, in order. */
const listedIds = (html: string) => hrefs(html, 'class="event-link"').map((href) => decodeURIComponent(href.slice('/events/'.length)))

describeOnEngines('events views', (engine) => {
  let db: Kysely<Database>
  const opened: FastifyInstance[] = []

  before(async () => {
    db = await engine.open()
  })

  after(() => db.destroy())

  beforeEach(async () => {
    await clearLog(db)
    await seedEvents(db, DAY1, day1Events)
    await seedEvents(db, DAY2, DAY2_PAGE)
    await seedEvents(db, DAY3, day3Events)
  })

  afterEach(async () => {
    for (const instance of opened.splice(0)) await instance.close()
  })

  async function app(config: Partial<WebConfig> = {}, deps: Partial<AppDeps> = {}): Promise<FastifyInstance> {
    const instance = await buildApp({
      db,
      config: {auth: AUTH, port: 0, staleAfterMinutes: 15, onDyno: false, ...config},
      version: VERSION,
      logger: captureLogger(),
      ...deps,
    })
    opened.push(instance)
    return instance
  }

  const get = async (url: string, instance?: FastifyInstance) => (instance ?? (await app())).inject({url, headers: AUTHORIZED})

  describe('/events', () => {
    it('lists every event newest first: created_at in UTC, type.action, actor, app, IP, and a link to the event', async () => {
      const response = await get('/events')
      expect(response.statusCode).to.equal(200)
      expect(listedIds(response.body)).to.deep.equal(NEWEST_FIRST)
      const row = response.body.slice(response.body.indexOf('<tr>', response.body.indexOf('<tbody>')), response.body.indexOf('</tr>', response.body.indexOf('<tbody>')))
      for (const cell of ['2025-09-29 00:06:00 UTC', '<td>addon.create</td>', '>user2@example.com</a>', '>app-1</a>', '>192.0.2.6</a>', 'href="/events/2025-09-29-0006"']) {
        expect(row).to.include(cell)
      }
    })

    it('links an actor, app or IP to the search for it, URL-encoded, and each link finds exactly its events', async () => {
      const instance = await app()
      const html = (await get('/events', instance)).body
      expect(html).to.include('href="/events?actor&#x3D;o%27brien%2Bops%26co%40example.com"')
      const actorLink = hrefs(html).find((href) => href.includes('brien'))!
      expect(listedIds((await get(actorLink, instance)).body)).to.deep.equal(['xss-1'])
      const appLink = hrefs(html).find((href) => href.includes('script'))!
      expect(appLink).to.equal('/events?app=%3Cscript%3Ealert%281%29%3C%2Fscript%3E')
      expect(listedIds((await get(appLink, instance)).body)).to.deep.equal(['xss-1'])
      const ipLink = hrefs(html).find((href) => href === '/events?ip=192.0.2.6')!
      expect(listedIds((await get(ipLink, instance)).body)).to.deep.equal(['2025-09-29-0006', oddId.id])
      // A value no search can take as written (a control character) is shown escaped, not linked.
      expect(html).to.include('evil\\x1B[2K@example.com')
      expect(html).to.include('\\u202Egpj.exe')
      expect(html).not.to.include('\u001B')
      expect(html).not.to.include('\u202E')
      expect(hrefs(html).some((href) => href.includes('evil'))).to.equal(false)
    })

    it('filters by actor, type, action, app, ip and days, combined, and keeps them in the form', async () => {
      const instance = await app()
      const cases: Array<[string, string[]]> = [
        ['actor=user1@example.com', ['2025-09-29-0005', 'pretty-1', oddId.id, '2025-09-27-0001']],
        ['type=addon', ['2025-09-29-0006', longId.id, '2025-09-27-0003']],
        ['action=update', ['pretty-1']],
        ['app=app-2', [longId.id, '2025-09-27-0002']],
        ['ip=192.0.2.5', ['2025-09-29-0005', longId.id]],
        [`from=${DAY2}&to=${DAY2}`, NEWEST_FIRST.slice(2, 7)],
        [`from=${DAY3}`, NEWEST_FIRST.slice(0, 2)],
        [`to=${DAY1}`, NEWEST_FIRST.slice(7)],
        [`type=app&action=destroy&from=${DAY1}&to=${DAY2}`, [oddId.id, 'ctl-1', '2025-09-27-0001']],
        ['actor=&type=&app=', NEWEST_FIRST],
        ['actor=nobody@example.com', []],
      ]
      for (const [query, ids] of cases) expect(listedIds((await get(`/events?${query}`, instance)).body), query).to.deep.equal(ids)
      const form = (await get(`/events?actor=user1@example.com&type=app&from=${DAY1}`, instance)).body
      expect(form).to.include('name="actor" value="user1@example.com"')
      expect(form).to.include('name="type" value="app"')
      expect(form).to.include(`name="from" value="${DAY1}"`)
      expect((await get('/events?actor=nobody@example.com', instance)).body).to.include('No events match.')
    })

    it('pages by an opaque cursor: older pages to the end, no repeats and no gaps, and a link back to the newest', async () => {
      const instance = await app()
      const seen: string[] = []
      let url: string | undefined = '/events?size=3'
      let pages = 0
      while (url) {
        const html: string = (await get(url, instance)).body
        seen.push(...listedIds(html))
        if (pages++ > 0) expect(hrefs(html, 'rel="first"')).to.deep.equal(['/events?size=3'])
        else expect(hrefs(html, 'rel="first"')).to.deep.equal([])
        url = hrefs(html, 'rel="next"')[0]
        if (url) expect(url).to.match(/^\/events\?size=3&cursor=[\w-]+$/)
      }

      expect(pages).to.equal(4)
      expect(seen).to.deep.equal(NEWEST_FIRST)
      const filtered = (await get('/events?type=app&size=2', instance)).body
      expect(hrefs(filtered, 'rel="next"')[0]).to.match(/^\/events\?type=app&size=2&cursor=/)
    })

    const badPages = [
      '/events?from=2025-02-30',
      '/events?to=0000-01-01',
      `/events?from=${DAY3}&to=${DAY1}`,
      '/events?type=app%20create',
      '/events?action=%3Cscript%3E',
      '/events?actor=a%1B%5B2K@example.com',
      `/events?ip=${'1'.repeat(300)}`,
      `/events?app=${'a'.repeat(1001)}`,
      '/events?actor=a@example.com&actor=b@example.com',
      '/events?size=0',
      '/events?size=201',
      '/events?size=ten',
      '/events?cursor=not%20a%20cursor',
      `/events?cursor=${Buffer.from('{"day":"2025-09-28"}').toString('base64url')}`,
      `/events?cursor=${Buffer.from('["2025-02-30","2025-09-28T00:00:00.000Z","x"]').toString('base64url')}`,
      `/events?cursor=${Buffer.from('["2025-09-28","2025-09-28T00:00:00Z","x"]').toString('base64url')}`,
      `/events?cursor=${Buffer.from('["2025-09-28","2025-09-28T00:00:00.000Z",""]').toString('base64url')}`,
      `/events?cursor=${encodeCursor({day: DAY2, createdAt: new Date('2025-09-28T00:00:00Z'), id: 'x'})}A`,
      `/events?cursor=${'A'.repeat(5000)}`,
    ]
    it('answers a bad filter, size or cursor with a 400 page saying what is wrong, never a 500', async () => {
      const instance = await app()
      for (const url of badPages) {
        const response = await get(url, instance)
        expect(response.statusCode, url).to.equal(400)
        expect(response.headers['content-type'], url).to.match(/text\/html/)
        expect(response.body, url).to.match(/Bad request: /)
        expect(response.body, url).not.to.match(/at .*\.(js|ts):\d+/)
      }

      expect(unescapeHtml((await get('/events?from=2025-02-30', instance)).body)).to.include('Bad request: from "2025-02-30" is not a calendar day')
      expect((await get('/events?cursor=nope', instance)).body).to.include('cursor is not one this server gave out')
    })
  })

  describe('/events/:id', () => {
    it('shows the whole event pretty-printed and escaped, its day (linked), when it was collected, and its search columns', async () => {
      const response = await get('/events/pretty-1')
      expect(response.statusCode).to.equal(200)
      const pre = /<pre class="event-json">([\s\S]*?)<\/pre>/.exec(response.body)?.[1]
      expect(unescapeHtml(pre!)).to.equal(JSON.stringify(JSON.parse(PRETTY), null, 2))
      expect(hrefs(response.body)).to.include.members([`/logs/${DAY2}`, `/events?from=${DAY2}&to=${DAY2}`, '/events?actor=user1%40example.com'])
      expect(response.body).to.match(/at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\./)
      for (const column of ['id', 'created_at', 'type', 'action', 'actor_email', 'actor_id', 'app_name', 'app_id', 'owner_email', 'team_name', 'ip_address', 'account']) {
        expect(response.body).to.include(`<th scope="row">${column}</th>`)
      }

      expect(response.body).to.include('2025-09-28 11:00:00 UTC')
    })

    it('opens every listed event through its link, odd and long ids included', async () => {
      const instance = await app()
      const links = hrefs((await get('/events', instance)).body, 'class="event-link"')
      expect(links).to.include(`/events/${encodeURIComponent(oddId.id)}`)
      for (const link of links) {
        const response = await get(link, instance)
        expect(response.statusCode, link).to.equal(200)
        const shown = unescapeHtml(/<pre class="event-json">([\s\S]*?)<\/pre>/.exec(response.body)![1])
        expect(JSON.parse(shown).id, link).to.equal(decodeURIComponent(link.slice('/events/'.length)))
      }
    })

    it('answers 404 for an unknown id, 400 for one too long or holding a control character', async () => {
      const instance = await app()
      const unknown = await get('/events/no-such-event', instance)
      expect(unknown.statusCode).to.equal(404)
      expect(unknown.body).to.include('No event with id no-such-event is stored.')
      for (const url of [`/events/${'x'.repeat(257)}`, `/events/${'%C3%A9'.repeat(257)}`, `/events/${'y'.repeat(16_000)}`, '/events/a%1Bb', '/events/a%0Ab', '/events/a%E2%80%AEb']) {
        const response = await get(url, instance)
        expect(response.statusCode, url.slice(0, 40)).to.equal(400)
        expect(response.body).to.include('Bad request')
      }

      expect((await get(`/events/${'x'.repeat(256)}`, instance)).statusCode).to.equal(404)
      // Beyond what a request line may hold anyway (16 KiB), the router answers before the route.
      expect((await get(`/events/${'y'.repeat(20_000)}`, instance)).statusCode).to.equal(414)
    })
  })

  it("links a day's page to that day's events", async () => {
    await insertRecord(db, {day: DAY2, status: 'SUCCESS', events: 5})
    const html = (await get(`/logs/${DAY2}`)).body
    expect(hrefs(html)).to.include(`/events?from=${DAY2}&to=${DAY2}`)
  })

  it('links the main page to the events', async () => {
    expect(hrefs((await get('/')).body)).to.include('/events')
  })

  it('escapes everything from an event: <script> in an app name shows as text, under a strict CSP', async () => {
    const instance = await app()
    for (const url of ['/events', '/events/xss-1', '/events?app=%3Cscript%3Ealert%281%29%3C%2Fscript%3E']) {
      const response = await get(url, instance)
      expect(response.statusCode, url).to.equal(200)
      expect(response.body, url).not.to.include('<script>alert')
      expect(response.body, url).to.include('&lt;script&gt;alert(1)&lt;/script&gt;')
      expect(response.body.match(/<script[^>]*>/g), url).to.deep.equal(['<script src="/static/app.js" defer>'])
      expect(response.body, url).not.to.match(/ on[a-z]+="/)
      const csp = String(response.headers['content-security-policy'])
      expect(csp).to.include("script-src 'self'").and.include("style-src 'self'").and.not.include('unsafe-inline')
    }
  })

  describe('GET /api/events', () => {
    it('answers {events, next}: newest first, each event the API’s own JSON, big numbers and all', async () => {
      const response = await get('/api/events')
      expect(response.statusCode).to.equal(200)
      expect(response.headers['content-type']).to.match(/^application\/json/)
      const body = response.json()
      expect(Object.keys(body)).to.deep.equal(['events', 'next'])
      expect(body.events.map((event: AuditEvent) => event.id)).to.deep.equal(NEWEST_FIRST)
      expect(body.next).to.equal(null)
      const sent = [...day3Events].reverse().concat(JSON.parse(PRETTY), oddId, longId, controlActor, hostileApp, ...[...day1Events].reverse())
      expect(body.events).to.deep.equal(sent)
      // Embedded as stored, not parsed and serialized again: the number keeps every digit.
      expect(response.body).to.include(foldJsonText(PRETTY))
      expect(response.body).to.include('"big": 12345678901234567890')
    })

    it('filters like the page and pages with cursor=<next>', async () => {
      const instance = await app()
      const first = (await get('/api/events?type=app&size=2', instance)).json()
      expect(first.events.map((e: AuditEvent) => e.id)).to.deep.equal(['2025-09-29-0005', 'pretty-1'])
      expect(first.next).to.be.a('string')
      const second = (await get(`/api/events?type=app&size=2&cursor=${first.next}`, instance)).json()
      expect(second.events.map((e: AuditEvent) => e.id)).to.deep.equal([oddId.id, 'ctl-1'])
    })

    it('pages with no repeats and no gaps while days are stored between the reads', async () => {
      const instance = await app()
      const seen: string[] = []
      let next: string | null = null
      let reads = 0
      do {
        const body: {events: AuditEvent[]; next: string | null} = (await get(`/api/events?size=3${next ? `&cursor=${next}` : ''}`, instance)).json()
        seen.push(...body.events.map((event) => event.id))
        next = body.next
        if (++reads === 1) {
          // A newer day (a run finishing now) and an older one (a backfill) arrive between two reads.
          await seedEvents(db, '2025-09-30', [sampleEvent('2025-09-30', 1)])
          await seedEvents(db, '2025-08-15', [sampleEvent('2025-08-15', 1), sampleEvent('2025-08-15', 2)])
        }
      } while (next)
      expect(seen, 'every event there at the start, once, in order; the older day after them; the newer day before the first page, so not seen').to.deep.equal([
        ...NEWEST_FIRST,
        '2025-08-15-0002',
        '2025-08-15-0001',
      ])
    })

    it('answers bad parameters with a 400 JSON error', async () => {
      const instance = await app()
      const urls = ['/api/events?from=2025-02-30', '/api/events?type=a%20b', '/api/events?size=0', '/api/events?size=500', '/api/events?cursor=%25%25', `/api/events?cursor=${Buffer.from('[1,2,3]').toString('base64url')}`, '/api/events.ndjson?to=yesterday', '/api/events.ndjson?ip=%1B']
      for (const url of urls) {
        const response = await get(url, instance)
        expect(response.statusCode, url).to.equal(400)
        expect(response.headers['content-type'], url).to.match(/^application\/json/)
        expect(response.json().error, url).to.match(/^Bad request: /)
      }
    })
  })

  describe('GET /api/events.ndjson', () => {
    it('streams every match newest first, one stored event per line (a pretty-printed one folded)', async () => {
      const instance = await app()
      const response = await get('/api/events.ndjson', instance)
      expect(response.statusCode).to.equal(200)
      expect(response.headers['content-type']).to.match(/^application\/x-ndjson/)
      expect(response.headers['cache-control']).to.equal('no-store')
      const lines = response.body.split('\n')
      expect(lines.pop()).to.equal('')
      expect(lines.map((line) => JSON.parse(line).id)).to.deep.equal(NEWEST_FIRST)
      expect(lines[2]).to.equal(foldJsonText(PRETTY))
      expect(lines[2]).to.include('12345678901234567890')
      expect(lines).to.include(JSON.stringify(hostileApp))
      const filtered = await get(`/api/events.ndjson?from=${DAY1}&to=${DAY1}&action=destroy`, instance)
      expect(filtered.body).to.equal(`${JSON.stringify(day1Events[2])}\n${JSON.stringify(day1Events[0])}\n`)
      expect((await get('/api/events.ndjson?actor=nobody@example.com', instance)).body).to.equal('')
    })

    it('streams a store bigger than one read, all of it', async () => {
      const many = Array.from({length: 1200}, (_, n) => sampleEvent('2025-07-01', n))
      await seedEvents(db, '2025-07-01', many)
      const response = await get('/api/events.ndjson?from=2025-07-01&to=2025-07-01')
      const ids = response.body.trimEnd().split('\n').map((line) => JSON.parse(line).id)
      expect(ids).to.deep.equal(many.map((event) => event.id).reverse())
    })

    it('reads the store only as fast as the lines are taken', async () => {
      await seedEvents(db, '2025-07-01', Array.from({length: 3000}, (_, n) => sampleEvent('2025-07-01', n)))
      /** The store, counting the queries made through it. */
      function counted() {
        const counter = {queries: 0, db}
        const plugin: KyselyPlugin = {
          transformQuery: (args) => {
            counter.queries++
            return args.node
          },
          transformResult: async (args) => args.result,
        }
        counter.db = db.withPlugin(plugin)
        return counter
      }

      const partly = counted()
      const lines = await ndjsonLines(partly.db, {from: '2025-07-01', to: '2025-07-01'}, 50)
      expect(partly.queries, 'the first read happens before the answer starts').to.equal(1)
      // One chunk taken, then the client goes away; the read in flight ends before 'close'.
      const chunk = await new Promise((resolve) => lines.once('data', resolve))
      lines.pause()
      expect(String(chunk).split('\n').length).to.be.greaterThan(1)
      const closed = new Promise((resolve) => lines.once('close', resolve))
      lines.destroy()
      await closed
      expect(partly.queries, 'one chunk and the stream’s read-ahead: a few reads of 50, not the 60 of all').to.be.at.most(12)

      const whole = counted()
      let total = 0
      for await (const chunk of await ndjsonLines(whole.db, {from: '2025-07-01', to: '2025-07-01'}, 50)) total += String(chunk).split('\n').length - 1
      expect(total).to.equal(3000)
      expect(whole.queries).to.equal(60)
    })
  })

  describe('who may see events', () => {
    const ROUTES = ['/events', '/events/xss-1', '/api/events', '/api/events.ndjson']
    const from = (instance: FastifyInstance, url: string, remoteAddress: string, headers: Record<string, string> = {}) => instance.inject({url, remoteAddress, headers})

    it('with credentials: everyone signed in, on a dyno or not, and nobody else', async () => {
      for (const onDyno of [false, true]) {
        const instance = await app({onDyno})
        for (const url of ROUTES) {
          expect((await from(instance, url, '127.0.0.1')).statusCode, `${url} without credentials`).to.equal(401)
          expect((await from(instance, url, '203.0.113.9', AUTHORIZED)).statusCode, `${url} signed in, onDyno ${onDyno}`).to.equal(200)
        }
      }
    })

    it('without credentials, off a dyno: only loopback clients, judged by the socket, not by X-Forwarded-For', async () => {
      const instance = await app({auth: undefined})
      const allowed: Array<[string, Record<string, string>]> = [
        ['127.0.0.1', {}],
        ['127.9.8.7', {}],
        ['::1', {}],
        ['::ffff:127.0.0.1', {}],
        ['127.0.0.1', {'x-forwarded-for': '127.0.0.1, ::1'}],
      ]
      const refused: Array<[string, Record<string, string>]> = [
        ['192.0.2.10', {}],
        ['10.0.0.1', {}],
        ['::ffff:192.0.2.10', {}],
        ['2001:db8::1', {}],
        ['203.0.113.9', {'x-forwarded-for': '127.0.0.1'}], // spoofed
        ['127.0.0.1', {'x-forwarded-for': '203.0.113.9'}], // a proxy or tunnel on this machine, for someone else
        ['127.0.0.1', {'x-forwarded-for': '127.0.0.1, 203.0.113.9'}],
        ['127.0.0.1', {'x-forwarded-for': 'unknown'}],
      ]
      for (const url of ROUTES) {
        for (const [address, headers] of allowed) expect((await from(instance, url, address, headers)).statusCode, `${url} from ${address} ${JSON.stringify(headers)}`).to.equal(200)
        for (const [address, headers] of refused) {
          const response = await from(instance, url, address, headers)
          expect(response.statusCode, `${url} from ${address} ${JSON.stringify(headers)}`).to.equal(403)
          expect(response.body).to.include('only on this machine')
          expect(response.headers['cache-control']).to.equal('no-store')
        }
      }

      expect((await instance.inject({method: 'HEAD', url: '/events', remoteAddress: '192.0.2.10'})).statusCode).to.equal(403)
      // The processing log keeps its read-only behaviour for everyone.
      for (const url of ['/', '/api/logs', `/logs/${DAY2}`]) expect((await from(instance, url, '192.0.2.10')).statusCode, url).to.be.oneOf([200, 404])
    })

    it('without credentials, on a dyno: 403 for everyone, saying to set the credentials', async () => {
      const instance = await app({auth: undefined, onDyno: true})
      for (const url of ROUTES) {
        const response = await from(instance, url, '127.0.0.1')
        expect(response.statusCode, url).to.equal(403)
        expect(response.body).to.include('set STATUS_PAGE_USERNAME and STATUS_PAGE_PASSWORD')
      }

      expect((await instance.inject({url: '/api/events', remoteAddress: '127.0.0.1'})).json().error).to.match(/on a dyno they need sign-in/)
      expect((await from(instance, '/', '192.0.2.10')).statusCode).to.equal(200)
    })

    it('reads DYNO into onDyno', () => {
      expect(loadWebConfig({DYNO: 'web.1'}).onDyno).to.equal(true)
      expect(loadWebConfig({}).onDyno).to.equal(false)
      expect(loadWebConfig({DYNO: ''}).onDyno).to.equal(false)
    })
  })

  it('says the store is off when EVENT_STORE=off, rather than showing nothing', async () => {
    const instance = await app({}, {store: {enabled: false}})
    for (const url of ['/events', '/events/xss-1', '/api/events', '/api/events.ndjson', '/events?from=2025-02-30']) {
      const response = await get(url, instance)
      expect(response.statusCode, url).to.equal(404)
      expect(unescapeHtml(response.body), url).to.include('The event store is off (EVENT_STORE=off)')
      expect(response.body, url).not.to.include('xss-1')
    }

    expect((await get('/api/events', instance)).json().error).to.match(/^The event store is off/)
  })

  it('marks every events answer no-store: pages, JSON, the stream, and the errors', async () => {
    const instance = await app()
    const local = await app({auth: undefined})
    const answers: Record<string, LightMyRequestResponse> = {
      'the list': await get('/events', instance),
      'an event': await get('/events/xss-1', instance),
      'an unknown event (404)': await get('/events/nope', instance),
      'a bad search (400)': await get('/events?from=nope', instance),
      'the JSON': await get('/api/events', instance),
      'the stream': await get('/api/events.ndjson', instance),
      'not signed in (401)': await instance.inject({url: '/api/events.ndjson'}),
      'not local (403)': await local.inject({url: '/events', remoteAddress: '192.0.2.1'}),
    }
    for (const [what, response] of Object.entries(answers)) expect(response.headers['cache-control'], what).to.equal('no-store')
  })
})

describe('events views: the pieces', () => {
  it('answers 503 when the database cannot be reached, the stream included, naming no secret', async () => {
    const unreachable = createDb({url: 'postgres://u:Sentinel-Events-Pass@127.0.0.1:1/x', ssl: 'disable'})
    const instance = await buildApp({db: unreachable, config: {port: 0, staleAfterMinutes: 15, onDyno: false}, version: VERSION, logger: captureLogger()})
    try {
      for (const url of ['/events', '/events/x', '/api/events', '/api/events.ndjson']) {
        const response = await instance.inject({url})
        expect(response.statusCode, url).to.equal(503)
        expect(response.body, url).to.include('The database cannot be reached right now')
        expect(response.body, url).not.to.include('Sentinel')
      }

      expect((await instance.inject({url: '/api/events.ndjson'})).json().statusCode).to.equal(503)
    } finally {
      await instance.close()
      await unreachable.destroy()
    }
  })

  it('links an event only where a browser can ask for it', () => {
    expect(eventHref('a/b?c#d%e')).to.equal('/events/a%2Fb%3Fc%23d%25e')
    expect(eventHref('...')).to.equal('/events/...')
    for (const id of ['.', '..', 'a\u001Bb', 'a\u202Eb', 'x'.repeat(257), '']) expect(eventHref(id), JSON.stringify(id)).to.equal(undefined)
  })

  it('tells loopback addresses from the rest', () => {
    for (const address of ['127.0.0.1', '127.255.255.254', '::1', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1', '::ffff:7f00:1']) expect(isLoopbackAddress(address), address).to.equal(true)
    for (const address of ['128.0.0.1', '::2', '::ffff:10.0.0.1', 'localhost', '', undefined, '127.0.0.1:80', ' 127.0.0.1']) expect(isLoopbackAddress(address), String(address)).to.equal(false)
    expect(isLocalClient('127.0.0.1', undefined)).to.equal(true)
    expect(isLocalClient('127.0.0.1', ['::1', '127.0.0.2, 127.0.0.3'])).to.equal(true)
    expect(isLocalClient('127.0.0.1', '')).to.equal(false)
    expect(isLocalClient(undefined, undefined)).to.equal(false)
  })

  it('hands out cursors that come back as the same position, and takes no other', () => {
    const cursor = {day: '0001-01-01', createdAt: new Date('0001-01-01T00:00:00.123Z'), id: 'é/\ud800"\\'}
    expect(decodeCursor(encodeCursor(cursor))).to.deep.equal(cursor)
    const long = {day: '2025-09-28', createdAt: new Date('2025-09-28T10:00:00Z'), id: '\u2028'.repeat(256)}
    expect(decodeCursor(encodeCursor(long))).to.deep.equal(long)
    const valid = encodeCursor(cursor)
    for (const bad of ['', '!', `${valid}=`, `${valid.slice(0, -1)}`, Buffer.from([0xff, 0xfe, 0x5b]).toString('base64url'), Buffer.from('["2025-09-28","2025-09-28T10:00:00.000Z","a\\u0000b"]').toString('base64url'), Buffer.from(`["2025-09-28","2025-09-28T10:00:00.000Z","${'x'.repeat(257)}"]`).toString('base64url'), Buffer.from('["2025-09-28","2025-09-31T10:00:00.000Z","x"]').toString('base64url'), Buffer.from('["2025-09-28","2025-09-28T10:00:00.000Z","x",1]').toString('base64url')]) {
      expect(decodeCursor(bad), bad).to.equal(undefined)
    }
  })

  it('folds a pretty-printed event to one line and pretty-prints one for reading, meaning the same', () => {
    expect(foldJsonText(PRETTY)).to.equal('{"id": "pretty-1","type": "app", "action": "update","created_at": "2025-09-28T11:00:00Z","actor": {"email": "user1@example.com"},"data": {"big": 12345678901234567890}}')
    expect(JSON.parse(foldJsonText('{\r\n\t"a": "x y",\r\n  "b": [1,\n2]\n}'))).to.deep.equal({a: 'x y', b: [1, 2]})
    expect(foldJsonText('{"a":1}')).to.equal('{"a":1}')
    const tricky = '{"a":"\\u0000\\ud800","b":"\u202E\u2028\u0085x"}'
    const pretty = prettyJson(tricky)!
    expect(pretty).to.equal('{\n  "a": "\\u0000\\ud800",\n  "b": "\\u202e\\u2028\\u0085x"\n}')
    expect(JSON.parse(pretty)).to.deep.equal(JSON.parse(tricky))
    expect(prettyJson('{"a":')).to.equal(undefined)
  })
})
