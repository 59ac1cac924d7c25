/**
 * The client's HTTP transport (ky over fetch) against a bare local server: compressed bodies,
 * redirects, the bytes handed on. The fake Heroku covers everything else.
 */
import {createServer, type IncomingHttpHeaders, type Server} from 'node:http'
import type {AddressInfo} from 'node:net'
import {deflateSync, gzipSync} from 'node:zlib'

import {expect} from 'chai'

import {type AuditClient, createAuditClient} from '../../src/lib/heroku/client.js'
import {HerokuApiError} from '../../src/lib/heroku/errors.js'
import type {AuditPage} from '../../src/lib/heroku/types.js'
import {generateEvents} from '../fake-heroku/events.js'
import {startFakeHeroku} from '../fake-heroku/server.js'

const DAY = '2025-04-04'
const events = generateEvents(DAY, 30)

interface Answer {
  status?: number
  headers?: Record<string, string>
  body: Buffer | string
}

describe('Heroku client transport', () => {
  let server: Server
  let url: string
  let answer: Answer
  const seen: IncomingHttpHeaders[] = []

  before(async () => {
    server = createServer((req, res) => {
      seen.push(req.headers)
      res.writeHead(answer.status ?? 200, answer.headers ?? {})
      res.end(answer.body)
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })

  after(async () => {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  })

  beforeEach(() => {
    seen.length = 0
  })

  function client(): AuditClient {
    return createAuditClient({apiUrl: url, token: 'HRKU-transport-test-token', accountId: 'acme', maxAttempts: 1, attemptTimeoutMs: 2000})
  }

  async function pages(): Promise<AuditPage[]> {
    const all: AuditPage[] = []
    for await (const page of client().fetchDay(DAY)) all.push(page)
    return all
  }

  async function failure(): Promise<HerokuApiError> {
    try {
      await pages()
    } catch (error) {
      expect(error).to.be.instanceOf(HerokuApiError)
      return error as HerokuApiError
    }

    return expect.fail('expected the fetch to fail')
  }

  it('asks for a compressed body and reads a gzipped one', async () => {
    answer = {headers: {'Content-Type': 'application/json', 'Content-Encoding': 'gzip'}, body: gzipSync(JSON.stringify(events))}
    const [page] = await pages()
    expect(page.events).to.deep.equal(events)
    expect(seen[0]['accept-encoding']).to.match(/gzip/)
    // The bytes the JSON lines are cut from are the decompressed ones.
    expect(Buffer.from(page.body!).toString()).to.equal(JSON.stringify(events))
  })

  it('reads a deflated body, and a plain one with a byte-order mark', async () => {
    answer = {headers: {'Content-Encoding': 'deflate'}, body: deflateSync(JSON.stringify(events))}
    expect((await pages())[0].events).to.deep.equal(events)
    answer = {body: `\ufeff${JSON.stringify(events)}`}
    expect((await pages())[0].events).to.deep.equal(events)
  })

  it('fails the day, never returning a page, when a body has broken compression', async () => {
    answer = {headers: {'Content-Encoding': 'gzip'}, body: Buffer.from('this is not gzip')}
    const broken = await failure()
    expect(broken.kind).to.be.oneOf(['network', 'malformed'])
    expect(broken.message).not.to.include('HRKU-transport-test-token')
  })

  it('does not follow a redirect (it would carry the token elsewhere): the day fails with the status', async () => {
    answer = {status: 301, headers: {Location: 'http://127.0.0.1:1/elsewhere'}, body: ''}
    const error = await failure()
    expect(error.kind).to.equal('http')
    expect(error.details.status).to.equal(301)
    expect(seen).to.have.length(1)
  })

  it('hands each page its own bytes, intact while the one after is fetched ahead', async () => {
    const day = '2025-04-05'
    const big = generateEvents(day, 3500)
    const fake = await startFakeHeroku({events: {[day]: big}})
    try {
      const paged = createAuditClient({apiUrl: fake.url, token: fake.token, accountId: 'acme'})
      const seen: string[] = []
      for await (const page of paged.fetchDay(day)) {
        // Meanwhile the next page (many chunks: pages of 1000) arrives and is put together.
        await new Promise((resolve) => setTimeout(resolve, 100))
        expect(JSON.parse(Buffer.from(page.body!).toString())).to.deep.equal(page.events)
        seen.push(...page.events.map((e) => e.id))
      }

      expect(seen).to.deep.equal(big.map((e) => e.id))
    } finally {
      await fake.close()
    }
  })

  it('refuses an API URL that is not http(s)', () => {
    expect(() => createAuditClient({apiUrl: 'ftp://example.com', token: 't', accountId: 'acme'})).to.throw(/http\(s\) URL/)
  })
})
