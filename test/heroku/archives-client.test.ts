/**
 * The archive client (src/lib/heroku/archives.ts) against the fake Heroku API and its storage
 * server, and against small hostile loopback servers written here: malformed or oversized
 * metadata, storage that stalls, floods, redirects or answers errors.
 */
import {createHash, randomBytes} from 'node:crypto'
import {type IncomingMessage, type Server, type ServerResponse, createServer} from 'node:http'
import type {AddressInfo, Socket} from 'node:net'
import {gunzipSync} from 'node:zlib'

import {expect} from 'chai'

import {type ArchiveClientOptions, type ArchiveInfo, ArchiveDownloadError, createArchiveClient} from '../../src/lib/heroku/archives.js'
import {HerokuApiError} from '../../src/lib/heroku/errors.js'
import {redact} from '../../src/lib/secrets.js'
import {generateEvents} from '../fake-heroku/events.js'
import {type FakeHeroku, startFakeHeroku} from '../fake-heroku/server.js'

const NOW = Date.parse('2025-06-03T12:00:00Z')
const CHECKSUM = 'ab'.repeat(32)
const MiB = 1024 * 1024

/** A loopback server that answers whatever `handler` says, records each request and sees each connection close. */
interface Hostile {
  url: string
  host: string
  requests: IncomingMessage[]
  /** Connections closed so far, by either side. */
  closedConnections: number
  handler: (req: IncomingMessage, res: ServerResponse) => void
  close(): Promise<void>
}

async function startHostile(): Promise<Hostile> {
  const sockets = new Set<Socket>()
  const hostile: Hostile = {
    url: '',
    host: '',
    requests: [],
    closedConnections: 0,
    handler: (_req, res) => res.end(),
    close: () =>
      new Promise<void>(resolve => {
        server.close(() => resolve())
        for (const socket of sockets) socket.destroy()
      }),
  }
  const server: Server = createServer((req, res) => {
    hostile.requests.push(req)
    hostile.handler(req, res)
  })
  server.on('connection', socket => {
    sockets.add(socket)
    socket.on('close', () => {
      sockets.delete(socket)
      hostile.closedConnections++
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  hostile.host = `127.0.0.1:${(server.address() as AddressInfo).port}`
  hostile.url = `http://${hostile.host}`
  return hostile
}

function json(body: unknown, status = 200, headers: Record<string, string> = {}): (req: IncomingMessage, res: ServerResponse) => void {
  return (_req, res) => {
    const bytes = Buffer.from(typeof body === 'string' ? body : JSON.stringify(body))
    res.writeHead(status, {'Content-Type': 'application/json', 'Content-Length': bytes.length, 'Request-Id': 'req-hostile-1', ...headers})
    res.end(bytes)
  }
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}

async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = []
  for await (const chunk of chunks) parts.push(chunk)
  return Buffer.concat(parts)
}

async function failure<T extends Error>(work: Promise<unknown>, type: new (...args: never[]) => T): Promise<T> {
  try {
    await work
  } catch (error) {
    expect(error, String(error)).to.be.instanceOf(type)
    return error as T
  }
  return expect.fail('expected a failure')
}

async function waitFor(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 2000
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`still waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

/** One archive entry as the API writes it; `overrides` replace or add fields. */
function entry(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {year: 2025, month: '05', created_at: '2025-06-01T00:02:19Z', url: 'http://127.0.0.1:9/a.json.gz?X-Amz-Signature=00', checksum: CHECKSUM, size: 100, ...overrides}
}

describe('archive client, against the fake Heroku API', function () {
  let fake: FakeHeroku
  let waits: number[]
  const events = {'2025-05-30': generateEvents('2025-05-30', 40), '2025-06-01': generateEvents('2025-06-01', 30)}

  const client = (overrides: Partial<ArchiveClientOptions> = {}) =>
    createArchiveClient({
      apiUrl: fake.url,
      token: fake.token,
      accountId: 'acme',
      userAgent: 'audit-logger/test',
      sleep: async ms => {
        waits.push(ms)
      },
      random: () => 0.5,
      ...overrides,
    })

  before(async function () {
    fake = await startFakeHeroku({events, now: () => NOW})
  })
  beforeEach(function () {
    waits = []
    fake.reset()
  })
  after(async function () {
    await fake.close()
  })

  it('lists every month, checked and typed, sending the token with Accept version=3.audit-trail', async function () {
    const archives = await client().listArchives()
    expect(archives.map(a => a.month)).to.deep.equal(['2025-05', '2025-06'])
    const [may] = archives
    expect(may.year).to.equal(2025)
    expect(may.createdAt.toISOString()).to.equal('2025-06-01T00:02:19.000Z')
    expect(may.checksum).to.match(/^[0-9a-f]{64}$/)
    expect(may.size).to.be.above(0)
    expect(new URL(may.url).origin).to.equal(fake.storageUrl)
    const [request] = fake.requests
    expect(request.path).to.equal('/enterprise-accounts/acme/archives')
    expect(request.headers.accept).to.equal('application/vnd.heroku+json; version=3.audit-trail')
    expect(request.headers.authorization).to.equal(`Bearer ${fake.token}`)
    expect(request.headers['user-agent']).to.equal('audit-logger/test')
  })

  it('gets one month as listed, undefined for a month without an archive, and refuses what is not a month', async function () {
    const archives = client()
    const [may] = await archives.listArchives()
    expect(await archives.getArchive('2025-05')).to.deep.equal(may)
    expect(fake.requests.at(-1)?.path).to.equal('/enterprise-accounts/acme/archives/2025/05')
    expect(await archives.getArchive('2025-07')).to.equal(undefined)
    for (const bad of ['2025-5', '2025-13', '2025/05', '']) {
      await failure(archives.getArchive(bad), RangeError)
    }
  })

  it('downloads the file without the token: the storage host never sees it; the bytes match the checksum', async function () {
    const archives = client()
    const info = (await archives.getArchive('2025-06')) as ArchiveInfo
    const bytes = await collect(await archives.openDownload(info))
    expect(sha256(bytes)).to.equal(info.checksum)
    expect(bytes.length).to.equal(info.size)
    const served = JSON.parse(gunzipSync(bytes).toString()) as {entries: unknown[]}
    expect(served.entries).to.have.length(30)

    expect(fake.storageRequests).to.have.length(1)
    const [download] = fake.storageRequests
    expect(download.headers).to.not.have.property('authorization')
    for (const value of Object.values(download.headers)) expect(value).to.not.include(fake.token)
    expect(download.headers['user-agent']).to.equal('audit-logger/test')
    expect(download.headers.accept).to.not.include('heroku')
    // The pre-signed URL, and its query on its own, are masked wherever they would be printed.
    expect(redact(`got ${info.url}`)).to.equal('got [redacted]')
    expect(redact(new URL(info.url).search)).to.equal('?[redacted]')
  })

  it('streams a file of several MiB in many chunks, byte for byte', async function () {
    const file = randomBytes(5 * MiB)
    fake.setArchive('2025-04', {body: file})
    const archives = client()
    const info = (await archives.getArchive('2025-04')) as ArchiveInfo
    expect(info.size).to.equal(file.length)
    let chunks = 0
    const hash = createHash('sha256')
    for await (const chunk of await archives.openDownload(info)) {
      chunks++
      hash.update(chunk)
    }
    expect(chunks).to.be.above(10)
    expect(hash.digest('hex')).to.equal(info.checksum).and.equal(sha256(file))
    fake.removeArchive('2025-04')
  })

  it('retries 503 and 429, waiting as Retry-After says or backing off, then succeeds', async function () {
    fake.script([{kind: 'status', status: 503}, {kind: 'status', status: 429, retryAfter: '3'}, {kind: 'reset'}], {route: 'archives'})
    const archives = await client().listArchives()
    expect(archives).to.have.length(2)
    expect(fake.requests).to.have.length(4)
    // Equal jitter with random() = 0.5: 3/4 of the ceiling (1 s, then 4 s); Retry-After exactly.
    expect(waits).to.deep.equal([750, 3000, 3000])
  })

  it('gives up after maxAttempts with the status, error id and Request-Id', async function () {
    fake.script(Array.from({length: 5}, () => ({kind: 'status' as const, status: 503})), {route: 'archives'})
    const error = await failure(client({maxAttempts: 3}).getArchive('2025-05'), HerokuApiError)
    expect(fake.requests).to.have.length(3)
    expect(error.kind).to.equal('http')
    expect(error.details).to.include({status: 503, errorId: 'service_unavailable', attempts: 3})
    expect(error.details.requestId).to.match(/^[0-9a-f-]{36}$/)
    expect(error.message).to.include(`Request-Id ${error.details.requestId}`).and.include('gave up after 3 attempts')
  })

  it('fails at once on 401, 403 and a wrong account, without retrying', async function () {
    const unauthorized = await failure(client({token: 'HRKU-wrong-token-000000'}).listArchives(), HerokuApiError)
    expect(unauthorized.details.status).to.equal(401)
    expect(unauthorized.message).to.include('HEROKU_API_TOKEN')
    fake.script([{kind: 'status', status: 403}], {route: 'archives'})
    const forbidden = await failure(client().getArchive('2025-05'), HerokuApiError)
    expect(forbidden.message).to.include('Enterprise Admin')
    const unknown = await failure(client({accountId: 'nobody'}).listArchives(), HerokuApiError)
    expect(unknown.details.status).to.equal(404)
    expect(fake.requests).to.have.length(3)
    expect(waits).to.deep.equal([])
  })

  it('retries an answer that does not come within attemptTimeoutMs', async function () {
    fake.script([{kind: 'hang'}], {route: 'archives'})
    const started = Date.now()
    expect(await client({attemptTimeoutMs: 200}).getArchive('2025-05')).to.include({month: '2025-05'})
    expect(Date.now() - started).to.be.below(2000)
    expect(fake.requests).to.have.length(2)
  })

  it('fails a storage error in one line naming only the host, never the path or the signature', async function () {
    const archives = client()
    const info = (await archives.getArchive('2025-05')) as ArchiveInfo
    fake.script([{kind: 'status', status: 403}], {route: 'storage'})
    const error = await failure(archives.openDownload(info), ArchiveDownloadError)
    const storageHost = new URL(fake.storageUrl).host
    expect(error.message).to.equal(
      `archive storage at ${storageHost} answered 403 AccessDenied for the archive of 2025-05 (the pre-signed URL may have expired: ask Heroku for the archive again)`,
    )
    expect(error.status).to.equal(403)
    expect(error).to.not.be.instanceOf(HerokuApiError)
  })

  it('fails a storage body that stalls after idleTimeoutMs, and one cut short', async function () {
    const archives = client()
    const info = (await archives.getArchive('2025-05')) as ArchiveInfo
    fake.script([{kind: 'hang-body'}, {kind: 'cut-body'}], {route: 'storage'})
    const started = Date.now()
    const stalled = await failure(collect(await archives.openDownload(info, {idleTimeoutMs: 200})), ArchiveDownloadError)
    expect(stalled.kind).to.equal('timeout')
    expect(stalled.message).to.match(/^archive storage at 127\.0\.0\.1:\d+ sent nothing for 0\.2 s while sending the archive of 2025-05$/)
    expect(Date.now() - started).to.be.below(2000)
    const cut = await failure(collect(await archives.openDownload(info)), ArchiveDownloadError)
    expect(cut.kind).to.equal('network')
    expect(cut.message).to.match(/^archive storage at 127\.0\.0\.1:\d+ broke off the archive of 2025-05 after \d+ bytes: ECONNRESET$/)
  })
})

describe('archive client, against hostile servers', function () {
  let api: Hostile
  let storage: Hostile
  let elsewhere: Hostile

  const client = (overrides: Partial<ArchiveClientOptions> = {}) =>
    createArchiveClient({apiUrl: api.url, token: 'HRKU-hostile-archive-token-0000', accountId: 'acme', maxAttempts: 1, ...overrides})

  /** What a download of `path` on the storage server is told to be. */
  const info = (path = '/f.json.gz?X-Amz-Signature=feedface', size = 1000): ArchiveInfo => ({
    month: '2025-05',
    year: 2025,
    createdAt: new Date('2025-06-01T00:02:19Z'),
    url: `${storage.url}${path}`,
    checksum: CHECKSUM,
    size,
  })

  before(async function () {
    ;[api, storage, elsewhere] = await Promise.all([startHostile(), startHostile(), startHostile()])
  })
  beforeEach(function () {
    for (const server of [api, storage, elsewhere]) server.requests.length = 0
  })
  after(async function () {
    await Promise.all([api, storage, elsewhere].map(server => server.close()))
  })

  describe('metadata', function () {
    async function malformed(body: unknown): Promise<string> {
      api.handler = json(body)
      const error = await failure(client().listArchives(), HerokuApiError)
      expect(error.kind).to.equal('malformed')
      expect(error.message).to.not.include('\n')
      return error.message
    }

    it('names the entry and the field that is wrong, quoting the value bounded and flattened', async function () {
      expect(await malformed([entry(), entry({month: '06', checksum: 'abc'})])).to.equal(
        'Heroku API sent a malformed archive list: archive 2: checksum is "abc", not a SHA-256 of 64 hex digits (Request-Id req-hostile-1)',
      )
      expect(await malformed([entry({year: 'x'})])).to.include('archive 1: year is "x", not a whole number from 2000 to 9999')
      expect(await malformed([entry({year: 1999})])).to.include('year is 1999, not')
      expect(await malformed([entry({year: 2025.5})])).to.include('year is 2025.5, not')
      expect(await malformed([entry({month: 5})])).to.include('month is 5, not a string "01" to "12"')
      expect(await malformed([entry({month: '13'})])).to.include('month is "13"')
      expect(await malformed([entry({created_at: '2025-02-30T00:00:00Z'})])).to.include('created_at is "2025-02-30T00:00:00Z", not a real time')
      expect(await malformed([entry({created_at: 'yesterday'})])).to.include('created_at is "yesterday"')
      expect(await malformed([entry({size: -1})])).to.include('size is -1, not a whole number of bytes')
      expect(await malformed([entry({size: 2 ** 60})])).to.include('size is 1152921504606847000, not')
      expect(await malformed([entry({size: '100'})])).to.include('size is "100", not')
      expect(await malformed([entry({checksum: undefined})])).to.include('checksum is missing (expected a SHA-256 of 64 hex digits)')
      expect(await malformed([entry(), entry()])).to.include('archive 2: 2025-05 is listed twice')
      expect(await malformed([null])).to.include('archive 1: expected an object, got null')
      expect(await malformed({archives: []})).to.include('expected a JSON array of archives, got an object')
      expect(await malformed('[{"year": 20')).to.include('the body is not valid JSON')
    })

    it('refuses a url that is not http(s) or carries credentials, without quoting it', async function () {
      const script = await malformed([entry({url: 'javascript:alert(document.cookie)'})])
      expect(script).to.include('archive 1: url is not an http(s) URL (its scheme is "javascript:")')
      expect(script).to.not.include('alert')
      expect(await malformed([entry({url: 'file:///etc/passwd'})])).to.include('its scheme is "file:"')
      const withPassword = await malformed([entry({url: 'https://user:s3cret@bucket.example/a.gz'})])
      expect(withPassword).to.include('url carries a user name or password').and.not.include('s3cret')
      expect(await malformed([entry({url: 'not a url'})])).to.include('url holds spaces or control characters')
      expect(await malformed([entry({url: '/relative/path.gz'})])).to.include('url is not a valid absolute URL')
      expect(await malformed([entry({url: 42})])).to.include('url is 42, not a URL')
    })

    it('escapes control characters and bounds a huge value', async function () {
      const forged = await malformed([entry({month: '0\u001b[31m5\n\u0007'})])
      expect(forged).to.include('month is "0\\x1B[31m5 \\x07"')
      // eslint-disable-next-line no-control-regex
      expect(forged).to.not.match(/[\u0000-\u001f]/)
      const huge = await malformed([entry({checksum: 'x'.repeat(100_000)})])
      expect(huge.length).to.be.below(300)
    })

    it('stops reading an answer past metadataMaxBytes, announced or not', async function () {
      api.handler = json(`[${' '.repeat(2 * MiB)}]`)
      const announced = await failure(client().listArchives(), HerokuApiError)
      expect(announced.kind).to.equal('limit')
      expect(announced.message).to.equal('Heroku API sent more than 1 MiB for the archive list (Request-Id req-hostile-1); stopped reading it: a list of every month is a few KB')
      api.handler = (_req, res) => {
        res.writeHead(200, {'Content-Type': 'application/json'})
        res.write('[')
        const spaces = Buffer.alloc(64 * 1024, 0x20)
        // Chunked, no length: written until the client hangs up.
        const pump = () => {
          while (!res.destroyed && res.write(spaces));
          if (!res.destroyed) res.once('drain', pump)
        }
        pump()
      }
      const streamed = await failure(client({metadataMaxBytes: 100_000}).getArchive('2025-05'), HerokuApiError)
      expect(streamed.kind).to.equal('limit')
      expect(streamed.message).to.include('more than 100000 bytes for the archive of 2025-05')
    })

    it('does not follow a redirect (it would carry the token) and does not retry it', async function () {
      api.handler = (_req, res) => {
        res.writeHead(302, {Location: `${elsewhere.url}/enterprise-accounts/acme/archives`, 'Request-Id': 'req-redirect'})
        res.end()
      }
      const error = await failure(client({maxAttempts: 3}).listArchives(), HerokuApiError)
      expect(error.message).to.equal('Heroku API answered 302 for the archive list, a redirect: not followed, as it would carry the token (Request-Id req-redirect)')
      expect(api.requests).to.have.length(1)
      expect(elsewhere.requests).to.have.length(0)
    })

    it('checks the month answered is the month asked for', async function () {
      api.handler = json(entry({month: '04'}))
      const error = await failure(client().getArchive('2025-05'), HerokuApiError)
      expect(error.message).to.equal('Heroku API sent a malformed archive for 2025-05: it describes 2025-04 (Request-Id req-hostile-1)')
    })

    it('cancels a request in flight when the signal aborts', async function () {
      api.handler = () => {}
      const abort = new AbortController()
      setTimeout(() => abort.abort(), 50)
      const error = await failure(client({maxAttempts: 3}).listArchives(abort.signal), HerokuApiError)
      expect(error.kind).to.equal('aborted')
      expect(api.requests).to.have.length(1)
      await waitFor(() => api.closedConnections > 0, 'the connection to close')
    })
  })

  describe('downloads', function () {
    it('streams the body as it arrives: the first chunk comes before the rest is sent', async function () {
      let finish: () => void = () => {}
      storage.handler = (_req, res) => {
        res.writeHead(200, {'Content-Length': 6})
        res.write('abc')
        finish = () => res.end('def')
      }
      const chunks = (await client().openDownload(info()))[Symbol.asyncIterator]()
      const first = await chunks.next()
      expect(Buffer.from(first.value as Uint8Array).toString()).to.equal('abc')
      finish()
      const rest: string[] = []
      for (let step = await chunks.next(); !step.done; step = await chunks.next()) rest.push(Buffer.from(step.value).toString())
      expect(rest.join('')).to.equal('def')
    })

    it('fails a body that stalls mid-way after idleTimeoutMs, and closes the connection', async function () {
      storage.handler = (_req, res) => {
        res.writeHead(200, {'Content-Length': 1000})
        res.write(Buffer.alloc(300))
      }
      const closedBefore = storage.closedConnections
      const started = Date.now()
      const download = await client().openDownload(info(), {idleTimeoutMs: 150})
      const error = await failure(collect(download), ArchiveDownloadError)
      expect(Date.now() - started).to.be.below(1500)
      expect(error.kind).to.equal('timeout')
      expect(error.message).to.equal(`archive storage at ${storage.host} sent nothing for 0.15 s while sending the archive of 2025-05`)
      await waitFor(() => storage.closedConnections > closedBefore, 'the connection to close')
    })

    it('fails a server that sends no headers within idleTimeoutMs', async function () {
      storage.handler = () => {}
      const error = await failure(client().openDownload(info(), {idleTimeoutMs: 100}), ArchiveDownloadError)
      expect(error.kind).to.equal('timeout')
    })

    it('fails past totalTimeoutMs even while bytes keep trickling in', async function () {
      storage.handler = (_req, res) => {
        res.writeHead(200, {'Content-Length': 10_000})
        const timer = setInterval(() => (res.destroyed ? clearInterval(timer) : res.write('x')), 20)
      }
      const error = await failure(collect(await client().openDownload(info(), {idleTimeoutMs: 1000, totalTimeoutMs: 300})), ArchiveDownloadError)
      expect(error.message).to.equal(`downloading the archive of 2025-05 from ${storage.host} took longer than the total timeout of 0.3 s`)
    })

    it('stops at maxBytes: an endless body, and a Content-Length announcing too much', async function () {
      storage.handler = (_req, res) => {
        res.writeHead(200)
        const chunk = Buffer.alloc(16 * 1024, 1)
        const pump = () => {
          while (!res.destroyed && res.write(chunk));
          if (!res.destroyed) res.once('drain', pump)
        }
        pump()
      }
      let received = 0
      const endless = failure(
        (async () => {
          for await (const chunk of await client().openDownload(info(), {maxBytes: 100_000})) received += chunk.length
        })(),
        ArchiveDownloadError,
      )
      const error = await endless
      expect(error.kind).to.equal('limit')
      expect(error.message).to.equal(`archive storage at ${storage.host} sent more than 100000 bytes for the archive of 2025-05 (Heroku lists 1000 bytes); stopped reading it`)
      expect(received).to.be.at.most(100_000)

      storage.handler = (_req, res) => {
        res.writeHead(200, {'Content-Length': 200 * MiB})
        res.write('x')
      }
      const announced = await failure(client().openDownload(info('/f.gz?s=1', 10 * MiB)), ArchiveDownloadError)
      expect(announced.message).to.equal(`archive storage at ${storage.host} announced 200 MiB for the archive of 2025-05, more than the 64 MiB this download takes (Heroku lists ${10 * MiB} bytes)`)
    })

    it('follows a few redirects, never with credentials, and refuses a loop or a strange scheme', async function () {
      storage.handler = (_req, res) => {
        res.writeHead(307, {Location: `${elsewhere.url}/bucket/f.json.gz?X-Amz-Signature=beef`})
        res.end()
      }
      elsewhere.handler = (_req, res) => res.end('the file')
      expect((await collect(await client().openDownload(info()))).toString()).to.equal('the file')
      expect(elsewhere.requests).to.have.length(1)
      expect(elsewhere.requests[0].url).to.equal('/bucket/f.json.gz?X-Amz-Signature=beef')
      for (const request of [...storage.requests, ...elsewhere.requests]) {
        expect(request.headers).to.not.have.property('authorization')
        expect(JSON.stringify(request.headers)).to.not.include('HRKU-')
      }
      expect(redact(`${elsewhere.url}/bucket/f.json.gz?X-Amz-Signature=beef`)).to.equal('[redacted]')

      storage.requests.length = 0
      storage.handler = (_req, res) => {
        res.writeHead(302, {Location: '/again'})
        res.end()
      }
      const loop = await failure(client().openDownload(info()), ArchiveDownloadError)
      expect(loop.kind).to.equal('redirect')
      expect(loop.message).to.equal(`archive storage at ${storage.host} redirected the archive of 2025-05 more than 3 times; not followed`)
      expect(storage.requests).to.have.length(4)

      storage.handler = (_req, res) => {
        res.writeHead(301, {Location: 'file:///etc/passwd'})
        res.end()
      }
      const scheme = await failure(client().openDownload(info()), ArchiveDownloadError)
      expect(scheme.message).to.equal(`archive storage at ${storage.host} redirected the archive of 2025-05 to a "file:" address; not followed`)
    })

    it('reads only the start of an error body, for its S3 code', async function () {
      storage.handler = (_req, res) => {
        res.writeHead(404, {'Content-Type': 'application/xml'})
        res.write('<?xml version="1.0"?><Error><Code>NoSuchKey</Code><Message>')
        const filler = Buffer.alloc(64 * 1024, 0x61)
        const pump = () => {
          while (!res.destroyed && res.write(filler));
          if (!res.destroyed) res.once('drain', pump)
        }
        pump()
      }
      const error = await failure(client().openDownload(info()), ArchiveDownloadError)
      expect(error.message).to.equal(`archive storage at ${storage.host} answered 404 NoSuchKey for the archive of 2025-05`)
      expect(error.status).to.equal(404)
    })

    it('aborting the signal mid-body cancels the download and closes the connection', async function () {
      storage.handler = (_req, res) => {
        res.writeHead(200, {'Content-Length': 1000})
        res.write(Buffer.alloc(100))
      }
      const closedBefore = storage.closedConnections
      const abort = new AbortController()
      const chunks = (await client().openDownload(info(), {signal: abort.signal}))[Symbol.asyncIterator]()
      expect((await chunks.next()).done).to.equal(false)
      setTimeout(() => abort.abort(), 30)
      const error = await failure(chunks.next(), ArchiveDownloadError)
      expect(error.kind).to.equal('aborted')
      expect(error.message).to.equal('downloading the archive of 2025-05 was cancelled')
      await waitFor(() => storage.closedConnections > closedBefore, 'the connection to close')
    })

    it('leaving the loop early closes the connection', async function () {
      storage.handler = (_req, res) => {
        res.writeHead(200, {'Content-Length': 1000})
        res.write(Buffer.alloc(100))
      }
      const closedBefore = storage.closedConnections
      for await (const chunk of await client().openDownload(info())) {
        expect(chunk.length).to.equal(100)
        break
      }
      await waitFor(() => storage.closedConnections > closedBefore, 'the connection to close')
    })

    it('says when storage cannot be reached, naming only its host', async function () {
      const gone = await startHostile()
      await gone.close()
      const error = await failure(client().openDownload({...info(), url: `${gone.url}/secret-path/f.gz?X-Amz-Signature=cafe`}), ArchiveDownloadError)
      expect(error.message).to.equal(`archive storage at ${gone.host} could not be reached for the archive of 2025-05: ECONNREFUSED`)
    })
  })
})
