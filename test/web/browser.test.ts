/**
 * A real browser (Debian's Chromium, driven by playwright-core) against the real app and a real
 * database: filter, select two records, delete them through the confirmation page; search the
 * stored events and open one.
 */
import {existsSync, mkdirSync} from 'node:fs'
import {fileURLToPath} from 'node:url'

import {expect} from 'chai'
import type {FastifyInstance} from 'fastify'
import type {Kysely} from 'kysely'
import {type Browser, chromium} from 'playwright-core'

import {findDay} from '../../src/lib/db/audit-log-repository.js'
import type {Database} from '../../src/lib/db/schema.js'
import {buildApp} from '../../src/lib/web/app.js'
import {captureLogger} from '../support/capture.js'
import {clearLog, insertRecord, openTestDb} from '../support/db.js'
import {sampleEvent, seedEvents} from '../support/event-seed.js'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const ARTIFACTS = fileURLToPath(new URL('../../test-artifacts/', import.meta.url))
const AUTH = {username: 'ops', password: 'browser-test-password'}

describe('status page in a real browser', function () {
  this.timeout(60_000)
  let db: Kysely<Database>
  let app: FastifyInstance
  let browser: Browser
  let url: string

  before(async function () {
    if (!existsSync(CHROMIUM)) {
      // CI installs Chromium (.ci/run); a laptop without it is told so, loudly.
      if (process.env.CI) throw new Error(`Chromium not found at ${CHROMIUM}: install it with apt-get install -y chromium`)
      console.warn(`\n  !! SKIPPING the browser test: no Chromium at ${CHROMIUM} (apt-get install -y chromium)\n`)
      this.skip()
    }

    db = openTestDb(process.env.TEST_DATABASE_URL!)
    app = await buildApp({
      db,
      config: {auth: AUTH, port: 0, staleAfterMinutes: 15},
      version: {version: 'test', commit: 'unknown', commitShort: 'unknown', release: 'unknown', releaseCreatedAt: 'unknown', builtAt: 'unknown', stack: 'unknown', appName: 'unknown', dynoId: 'unknown'},
      logger: captureLogger(),
    })
    url = await app.listen({host: '127.0.0.1', port: 0})
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run', '--disable-component-update', '--disable-sync'],
    })
  })

  after(async () => {
    await browser?.close()
    await app?.close()
    await db?.destroy()
  })

  beforeEach(async () => {
    await clearLog(db)
    await insertRecord(db, {day: '2025-09-24', status: 'SUCCESS', events: 12, durationSeconds: 2})
    await insertRecord(db, {day: '2025-09-25', status: 'FAILED', error: 'Heroku API answered 503'})
    await insertRecord(db, {day: '2025-09-26', status: 'FAILED', error: 'could not reach the Heroku API'})
    await insertRecord(db, {day: '2025-09-27', status: 'FAILED', error: 'Heroku API answered 401 unauthorized'})
    await insertRecord(db, {day: '2025-09-28', status: 'SUCCESS', events: 40, durationSeconds: 3})
  })

  it('filters by status, selects two records and deletes them through the confirmation page', async () => {
    const context = await browser.newContext({httpCredentials: AUTH, viewport: {width: 1280, height: 1000}})
    const page = await context.newPage()
    const consoleErrors: string[] = []
    page.on('console', (message) => message.type() === 'error' && consoleErrors.push(message.text()))

    await page.goto(url)
    await page.selectOption('select[name="status"]', 'FAILED')
    await page.click('button:has-text("Filter")')
    await page.waitForURL(/status=FAILED/)
    const shown = await page.locator('tbody tr td:nth-child(2) a').allTextContents()
    expect(shown).to.deep.equal(['2025-09-27', '2025-09-26', '2025-09-25'])

    // The select-all box (the only script on the page) ticks every row, and unticks them.
    await page.check('input.select-all')
    expect(await page.locator('tbody input[name="date"]:checked').count()).to.equal(3)
    await page.uncheck('input.select-all')
    expect(await page.locator('tbody input[name="date"]:checked').count()).to.equal(0)

    await page.check('input[name="date"][value="2025-09-25"]')
    await page.check('input[name="date"][value="2025-09-27"]')
    await page.click('button:has-text("Delete selected")')
    await page.waitForURL(/\/delete\?/)
    expect(await page.locator('h1').textContent()).to.include('Delete 2 record(s)?')
    const listed = await page.locator('tbody tr td:first-child a').allTextContents()
    expect(listed.sort()).to.deep.equal(['2025-09-25', '2025-09-27'])
    expect(await findDay(db, '2025-09-25'), 'the confirmation page changes nothing').not.to.equal(undefined)

    await page.click('button:has-text("Delete 2 record(s)")')
    await page.waitForURL(/deleted=2/)
    expect(await page.locator('.notice[role="status"]').textContent()).to.include('Deleted 2 records.')
    mkdirSync(ARTIFACTS, {recursive: true})
    await page.screenshot({path: `${ARTIFACTS}status-page.png`, fullPage: true})

    expect(await findDay(db, '2025-09-25')).to.equal(undefined)
    expect(await findDay(db, '2025-09-27')).to.equal(undefined)
    expect((await findDay(db, '2025-09-26'))?.status).to.equal('FAILED')
    const remaining = await page.locator('tbody tr td:nth-child(2) a').allTextContents()
    expect(remaining).to.deep.equal(['2025-09-28', '2025-09-26', '2025-09-24'])
    expect(consoleErrors, 'no CSP violation or script error').to.deep.equal([])
    await context.close()
  })

  it('searches the stored events and opens one, its JSON pretty-printed', async () => {
    await seedEvents(db, '2025-09-27', [1, 2, 3].map((n) => sampleEvent('2025-09-27', n)))
    await seedEvents(db, '2025-09-28', [
      sampleEvent('2025-09-28', 4, {id: 'evt-destroy-web', action: 'destroy', actor: {email: 'mallory@example.com'}, app: {name: '<b>web</b>'}}),
      sampleEvent('2025-09-28', 5),
    ])
    const context = await browser.newContext({httpCredentials: AUTH, viewport: {width: 1280, height: 1000}})
    const page = await context.newPage()
    const consoleErrors: string[] = []
    page.on('console', (message) => message.type() === 'error' && consoleErrors.push(message.text()))

    await page.goto(url)
    await page.click('nav a:has-text("Events")')
    await page.waitForURL(/\/events$/)
    expect(await page.locator('a.event-link').count()).to.equal(5)

    await page.fill('input[name="actor"]', 'mallory@example.com')
    await page.fill('input[name="from"]', '2025-09-28')
    await page.click('button:has-text("Search")')
    await page.waitForURL(/actor=mallory%40example\.com/)
    expect(await page.locator('a.event-link').allTextContents()).to.deep.equal(['evt-destroy-web'])
    const row = page.locator('tbody tr').first()
    expect(await row.textContent()).to.include('app.destroy').and.include('<b>web</b>')
    expect(await page.inputValue('input[name="actor"]'), 'the form keeps the search').to.equal('mallory@example.com')
    mkdirSync(ARTIFACTS, {recursive: true})
    await page.screenshot({path: `${ARTIFACTS}events.png`, fullPage: true})

    await page.click('a.event-link')
    await page.waitForURL(/\/events\/evt-destroy-web$/)
    const shown = await page.locator('pre.event-json').textContent()
    expect(shown).to.equal(JSON.stringify(JSON.parse(shown!), null, 2))
    expect(JSON.parse(shown!)).to.deep.include({id: 'evt-destroy-web', action: 'destroy', app: {name: '<b>web</b>'}})
    await page.screenshot({path: `${ARTIFACTS}event.png`, fullPage: true})

    // The event links to its day's other events.
    await page.click('a[href="/events?from=2025-09-28&to=2025-09-28"]')
    await page.waitForURL(/from=2025-09-28&to=2025-09-28$/)
    expect(await page.locator('a.event-link').allTextContents()).to.deep.equal(['2025-09-28-0005', 'evt-destroy-web'])
    expect(consoleErrors, 'no CSP violation or script error').to.deep.equal([])
    await context.close()
  })

  it('works at phone width', async () => {
    await seedEvents(db, '2025-09-28', [sampleEvent('2025-09-28', 1, {actor: {email: `a-rather-long-name.${'x'.repeat(40)}@example.com`}})])
    const context = await browser.newContext({httpCredentials: AUTH, viewport: {width: 375, height: 800}})
    const page = await context.newPage()
    mkdirSync(ARTIFACTS, {recursive: true})
    for (const [path, shot] of [['/', 'status-page-phone'], ['/events', 'events-phone'], ['/events/2025-09-28-0001', 'event-phone']]) {
      await page.goto(`${url}${path}`)
      const overflow = await page.evaluate<number>('document.documentElement.scrollWidth - document.documentElement.clientWidth')
      expect(overflow, `no sideways scrolling of the whole page at ${path}`).to.be.at.most(0)
      await page.screenshot({path: `${ARTIFACTS}${shot}.png`, fullPage: true})
    }

    await context.close()
  })
})
