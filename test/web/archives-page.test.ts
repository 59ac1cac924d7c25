/**
 * What the status page shows of completeness: the months strip and the archives page, GET
 * /api/archives, each day's provenance (API, settled, archive, recovered) on its page and in
 * /api/logs/:date, and the calendar's settled / not yet settled SUCCESS days. Rows are seeded
 * with SQL, as the settle re-read and archives verify/import leave them, on both engines.
 */
import {expect} from 'chai'
import type {FastifyInstance} from 'fastify'
import type {Kysely} from 'kysely'

import type {ArchiveMonth} from '../../src/lib/db/archive-queries.js'
import type {Database} from '../../src/lib/db/schema.js'
import {buildApp} from '../../src/lib/web/app.js'
import type {VersionInfo} from '../../src/lib/web/version.js'
import {captureLogger} from '../support/capture.js'
import {CHECKSUM, markDay, seedMonth} from '../support/archive-seed.js'
import {describeOnEngines, insertRecord, useEngineDb} from '../support/db.js'

const NOW = new Date('2025-10-01T12:00:00Z')
const AUTH = {username: 'ops', password: 'archives-test-password'}
const AUTHORIZED = {authorization: `Basic ${Buffer.from(`${AUTH.username}:${AUTH.password}`).toString('base64')}`}
const VERSION = {version: 'test', commit: 'unknown', commitShort: 'unknown'} as VersionInfo
const HOSTILE = '<script>alert(1)</script>"\'&'
describeOnEngines('completeness on the status page', (engine) => {
  let db: Kysely<Database>
  const opened: FastifyInstance[] = []

  // Emptied before each test, audit_archives included (clearLog).
  useEngineDb(engine, (handle) => (db = handle))
  afterEach(async () => {
    for (const instance of opened.splice(0)) await instance.close()
  })

  /** A new app per request: the log page keeps the archive months for a few seconds. */
  async function get(url: string, headers: Record<string, string> = AUTHORIZED, config: {onDyno?: boolean; auth?: typeof AUTH} = {auth: AUTH}) {
    const instance = await buildApp({db, config: {auth: config.auth, port: 0, staleAfterMinutes: 15, onDyno: config.onDyno ?? false}, version: VERSION, logger: captureLogger(), now: () => NOW})
    opened.push(instance)
    return instance.inject({url, headers})
  }

  function section(html: string, start: string): string {
    const at = html.indexOf(start)
    expect(at, `no ${start}`).to.be.greaterThan(-1)
    return html.slice(at, html.indexOf('</section>', at))
  }

  describe('the months strip', () => {
    it('shows the 12 months up to yesterday’s, oldest first, each with its state in words and a class, linking to the month', async () => {
      await seedMonth(db, {month: '2025-09', status: 'consistent'})
      await seedMonth(db, {month: '2025-08', status: 'mismatch', detail: 'only in store: ev-1'})
      await seedMonth(db, {month: '2025-07', status: 'checksum-failed'})
      const response = await get('/')
      expect(response.statusCode).to.equal(200)
      const strip = section(response.body, '<section class="months-block"')
      const months = [...strip.matchAll(/<li class="month month-([a-z-]+)"><a href="\/archives#month-(\d{4}-\d\d)"/g)].map((m) => [m[2], m[1]])
      expect(months).to.have.length(12)
      expect(months[0]).to.deep.equal(['2024-10', 'not-verified'])
      expect(months.slice(-4)).to.deep.equal([
        ['2025-06', 'not-verified'],
        ['2025-07', 'checksum-failed'],
        ['2025-08', 'mismatch'],
        ['2025-09', 'consistent'],
      ])
      // Colour plus a word: each state is written out.
      expect(strip).to.include('<span class="month-name">2025-09</span> <span class="month-word">consistent</span>')
      expect(strip).to.include('<span class="month-name">2025-08</span> <span class="month-word">mismatch</span>')
      expect(strip).to.include('<span class="month-name">2025-07</span> <span class="month-word">checksum failed</span>')
      expect(strip).to.include('<span class="month-name">2025-06</span> <span class="month-word">not verified</span>')
      expect(strip).to.include('title="2025-09: consistent (verified 2025-10-01 03:00:00 UTC)"')
      expect(strip).to.include('href="/api/archives"')
    })

    it('says every month is not verified before any check', async () => {
      const strip = section((await get('/')).body, '<section class="months-block"')
      expect(strip.match(/class="month month-not-verified"/g)).to.have.length(12)
      expect(strip).not.to.match(/month-(consistent|mismatch|checksum-failed)/)
    })

    it('shows a status this version does not know as itself, escaped, with a neutral class', async () => {
      await seedMonth(db, {month: '2025-09', status: `odd${HOSTILE}`})
      const response = await get('/')
      const strip = section(response.body, '<section class="months-block"')
      expect(strip).to.include('class="month month-unknown"')
      expect(strip).to.include('<span class="month-word">odd&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#x27;&amp;</span>')
      expect(response.body).not.to.include('<script>alert(1)')
    })
  })

  describe('GET /api/archives and the archives page', () => {
    it('answers {"months": [...]}, newest first, every field as archives status --json has it', async () => {
      await seedMonth(db, {month: '2025-08', status: 'mismatch', verifiedAt: '2025-09-02T04:05:06Z', detail: 'only in store: ev-1, ev-2', counts: {archive_events: 10, days_compared: 31, matched: 8, only_in_store: 2}})
      await seedMonth(db, {month: '2025-09', status: 'consistent', counts: {archive_events: 7, days_compared: 5, matched: 5, recovered: 1, not_collected: 1, imported_days: 1, imported_events: 1}})
      const response = await get('/api/archives')
      expect(response.statusCode).to.equal(200)
      expect(response.headers['content-type']).to.match(/^application\/json/)
      expect(response.headers['cache-control']).to.equal('no-store')
      const {months} = response.json<{months: ArchiveMonth[]}>()
      expect(months.map((m) => m.month)).to.deep.equal(['2025-09', '2025-08'])
      expect(months[1]).to.deep.equal({
        month: '2025-08',
        status: 'mismatch',
        verified_at: '2025-09-02T04:05:06.000Z',
        checksum: CHECKSUM,
        archive_created_at: '2025-08-28T06:00:00.000Z',
        covered_to: '2025-08-28',
        size: 123_456_789_012,
        archive_events: 10,
        days_compared: 31,
        matched: 8,
        recovered: 0,
        only_in_store: 2,
        not_collected: 0,
        imported_days: 0,
        imported_events: 0,
        detail: 'only in store: ev-1, ev-2',
      })
      expect(months[0]).to.include({recovered: 1, not_collected: 1, imported_days: 1, imported_events: 1, detail: null})
      expect(Object.keys(months[0])).to.deep.equal(Object.keys(months[1]))
    })

    it('answers an empty list before any check', async () => {
      expect((await get('/api/archives')).json()).to.deep.equal({months: []})
    })

    it('lists every month on /archives with its counts, the archive and the detail escaped', async () => {
      await seedMonth(db, {month: '2025-08', status: 'mismatch', detail: `only in store: ${HOSTILE}\u001B[2J`, counts: {archive_events: 10, matched: 8, only_in_store: 2}})
      await seedMonth(db, {month: '2023-01', status: 'consistent', counts: {imported_days: 31, imported_events: 4200}})
      const response = await get('/archives')
      expect(response.statusCode).to.equal(200)
      const html = response.body
      expect(html.indexOf('id="month-2025-08"')).to.be.greaterThan(0).and.lessThan(html.indexOf('id="month-2023-01"'))
      expect(html).to.include('<span class="month-status month-mismatch">mismatch</span>')
      expect(html).to.include('<td class="num">31/4200</td>')
      expect(html).to.include(`<code title="SHA-256 of the gzip file">${CHECKSUM}</code>`)
      expect(html).to.include('covers to 2025-08-28, 123456789012 bytes')
      expect(html).to.include('only in store: &lt;script&gt;alert(1)&lt;/script&gt;&quot;&#x27;&amp;\\x1B[2J')
      expect(html).not.to.include('<script>alert(1)')
      expect(html).not.to.include('\u001B')
    })

    it('says so when no month was verified yet', async () => {
      const response = await get('/archives')
      expect(response.statusCode).to.equal(200)
      expect(response.body).to.include('No month verified yet: run <code>audit-logger archives verify</code>.')
    })

    it('follows the processing log’s rules: signed in when credentials are set; on a dyno without them, read as the log is', async () => {
      await seedMonth(db, {month: '2025-09', status: 'consistent'})
      for (const url of ['/archives', '/api/archives']) {
        expect((await get(url, {})).statusCode, url).to.equal(401)
        expect((await get(url)).statusCode, url).to.equal(200)
        const open = await get(url, {}, {onDyno: true})
        const log = await get(url.startsWith('/api') ? '/api/logs' : '/', {}, {onDyno: true})
        expect(open.statusCode, url).to.equal(log.statusCode)
        expect(open.statusCode, url).to.equal(200)
      }
    })
  })

  describe('where a day’s events came from', () => {
    async function dayPage(day: string): Promise<string> {
      const response = await get(`/logs/${day}`)
      expect(response.statusCode).to.equal(200)
      return section(response.body, '<section class="provenance"')
    }

    it('a day read once from the API: collected from the API, not settled yet, its month not verified', async () => {
      await insertRecord(db, {day: '2025-09-20', status: 'SUCCESS', events: 4})
      const html = await dayPage('2025-09-20')
      expect(html).to.include('<li>Collected from the events API.</li>')
      expect(html).to.include('<li>Not settled yet: read once so far; process --catch-up reads it again once SETTLE_HOURS have passed.</li>')
      expect(html).to.include(`Month 2025-09 against Heroku's archive: <a class="month-status month-not-verified" href="/archives#month-2025-09">not verified</a>`)
      expect(html).not.to.include('recovered')
    })

    it('a settled day: when, +N late and M vanished, and the digest after settling', async () => {
      await insertRecord(db, {day: '2025-09-21', status: 'SUCCESS', events: 7})
      await markDay(db, '2025-09-21', {settledAt: '2025-09-22T08:30:00Z', late: 3, vanished: 1, source: 'api', settledDigest: 'ef'.repeat(32)})
      await seedMonth(db, {month: '2025-09', status: 'consistent'})
      const html = await dayPage('2025-09-21')
      expect(html).to.include('<li>Collected from the events API.</li>')
      expect(html).to.include('<li>Settled 2025-09-22 08:30:00 UTC: the re-read found +3 late events (stored) and 1 vanished (stored before, no longer served; kept).</li>')
      expect(html).to.include(`Digest after settling: <code>${'ef'.repeat(32)}</code>`)
      expect(html).to.include('<a class="month-status month-consistent" href="/archives#month-2025-09">consistent</a> (verified 2025-10-01 03:00:00 UTC)')
      expect(html).not.to.include('Not settled yet')
    })

    it('a day filled from the archive, and a day with events recovered from it', async () => {
      await insertRecord(db, {day: '2025-08-02', status: 'SUCCESS', events: 9})
      await markDay(db, '2025-08-02', {source: 'archive'})
      await insertRecord(db, {day: '2025-08-03', status: 'SUCCESS', events: 5})
      await markDay(db, '2025-08-03', {settledAt: '2025-08-04T09:00:00Z', late: 0, vanished: 0, recovered: 2})
      await seedMonth(db, {month: '2025-08', status: 'mismatch'})

      const archived = await dayPage('2025-08-02')
      expect(archived).to.include('<li>Filled from Heroku&#x27;s monthly archive (archives import), without events-API requests.</li>')
      expect(archived).not.to.include('events API.</li>')
      expect(archived).not.to.include('settled')
      expect(archived).to.include('<a class="month-status month-mismatch" href="/archives#month-2025-08">mismatch</a>')

      const recovered = await dayPage('2025-08-03')
      expect(recovered).to.include('<li>Collected from the events API.</li>')
      expect(recovered).to.include('the re-read found +0 late events (stored) and 0 vanished')
      expect(recovered).to.include('<li>2 events recovered from the archive (archives verify).</li>')
    })

    it('a failed day says where it was to come from, and nothing of settling', async () => {
      await insertRecord(db, {day: '2025-09-23', status: 'FAILED', error: 'Heroku API answered 503'})
      const html = await dayPage('2025-09-23')
      expect(html).to.include('<li>Collected from the events API.</li>')
      expect(html).not.to.match(/[Ss]ettled/)
    })

    it('GET /api/logs/:date and /api/logs carry settled_at, late_events, vanished_events, recovered_events, source and settled_digest', async () => {
      await insertRecord(db, {day: '2025-09-21', status: 'SUCCESS', events: 7})
      await markDay(db, '2025-09-21', {settledAt: '2025-09-22T08:30:00Z', late: 3, vanished: 1, recovered: 2, source: 'api', settledDigest: 'ef'.repeat(32)})
      await insertRecord(db, {day: '2025-09-20', status: 'SUCCESS', events: 4})
      const day = (await get('/api/logs/2025-09-21')).json<Record<string, unknown>>()
      expect(day).to.include({
        date: '2025-09-21',
        status: 'SUCCESS',
        events: 7,
        settled_at: '2025-09-22T08:30:00.000Z',
        late_events: 3,
        vanished_events: 1,
        recovered_events: 2,
        source: 'api',
        settled_digest: 'ef'.repeat(32),
      })
      const unsettled = (await get('/api/logs/2025-09-20')).json<Record<string, unknown>>()
      expect(unsettled).to.include({settled_at: null, late_events: null, vanished_events: null, recovered_events: null, source: null, settled_digest: null})
      const list = (await get('/api/logs')).json<{records: Array<Record<string, unknown>>}>()
      expect(list.records.map((r) => [r.date, r.settled_at, r.late_events])).to.deep.equal([
        ['2025-09-21', '2025-09-22T08:30:00.000Z', 3],
        ['2025-09-20', null, null],
      ])
    })
  })

  describe('the calendar', () => {
    it('tells settled, not yet settled and archive-filled SUCCESS days apart, by class and in words, with a legend', async () => {
      await insertRecord(db, {day: '2025-09-26', status: 'SUCCESS', events: 1})
      await insertRecord(db, {day: '2025-09-27', status: 'SUCCESS', events: 1})
      await markDay(db, '2025-09-27', {settledAt: '2025-09-28T09:00:00Z', late: 0, vanished: 0})
      await insertRecord(db, {day: '2025-09-28', status: 'SUCCESS', events: 1})
      await markDay(db, '2025-09-28', {source: 'archive'})
      await insertRecord(db, {day: '2025-09-29', status: 'FAILED'})
      const html = (await get('/')).body
      const calendar = section(html, '<section class="calendar-block"')
      expect(calendar).to.include('class="day day-success day-unsettled wd-5" href="/logs/2025-09-26" title="2025-09-26: SUCCESS, not yet settled" aria-label="2025-09-26: SUCCESS, not yet settled"')
      expect(calendar).to.include('class="day day-success day-settled wd-6" href="/logs/2025-09-27" title="2025-09-27: SUCCESS, settled"')
      expect(calendar).to.include('class="day day-success day-archive wd-7" href="/logs/2025-09-28" title="2025-09-28: SUCCESS, from the archive"')
      expect(calendar).to.include('class="day day-failed wd-1" href="/logs/2025-09-29" title="2025-09-29: FAILED"')
      expect(calendar).to.include('1 not yet settled')
      expect(calendar).to.include('<span class="day day-success day-settled"></span> success, settled')
      expect(calendar).to.include('<span class="day day-success day-unsettled"></span> success, not yet settled')
      expect(calendar).to.include('<span class="day day-success day-archive"></span> success, from the archive')
      const css = (await get('/static/app.css')).body
      for (const rule of ['.day-success.day-unsettled', '.day-success.day-archive', '.month-consistent', '.month-mismatch', '.month-not-verified']) expect(css).to.include(rule)
    })
  })
})
