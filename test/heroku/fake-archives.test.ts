/**
 * The fake Heroku API's monthly archives (test/fake-heroku/server.ts): the two metadata routes
 * behave as the events route does (auth, Accept, rate limit, account, scripted faults), and the
 * files come from a second loopback server standing in for S3, which refuses the Heroku token.
 */
import {spawn} from 'node:child_process'
import {createHash} from 'node:crypto'
import {mkdtempSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {gunzipSync, gzipSync} from 'node:zlib'

import {expect} from 'chai'

import {generateEvents} from '../fake-heroku/events.js'
import {RATE_LIMIT_BODY, defaultArchiveShape, startFakeHeroku} from '../fake-heroku/server.js'
import type {ArchiveObject, AuditEvent, FakeHeroku} from '../fake-heroku/server.js'
import {rejectionOf} from '../support/helpers.js'

const ACCEPT = 'application/vnd.heroku+json; version=3'
const NOW = Date.parse('2025-06-03T12:00:00Z')
/** Two days at the end of May, two at the start of June, today (June 3rd) and a day to come. */
const DAYS: Record<string, number> = {'2025-05-30': 30, '2025-05-31': 25, '2025-06-01': 20, '2025-06-02': 15, '2025-06-03': 10, '2025-07-01': 5}


function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}

function byId(events: AuditEvent[]): AuditEvent[] {
  return [...events].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
}

/** A request as a client makes it, each header overridable (null leaves it out). */
function get(fake: FakeHeroku, path: string, opts: {token?: string | null; accept?: string | null} = {}): Promise<Response> {
  const headers: Record<string, string> = {}
  const token = opts.token === undefined ? fake.token : opts.token
  if (token !== null) headers.Authorization = `Bearer ${token}`
  const accept = opts.accept === undefined ? ACCEPT : opts.accept
  if (accept !== null) headers.Accept = accept
  return fetch(fake.url + path, {headers})
}

async function listed(fake: FakeHeroku): Promise<ArchiveObject[]> {
  const response = await get(fake, '/enterprise-accounts/acme/archives')
  expect(response.status).to.equal(200)
  return (await response.json()) as ArchiveObject[]
}

async function archiveOf(fake: FakeHeroku, month: string): Promise<ArchiveObject> {
  const response = await get(fake, `/enterprise-accounts/acme/archives/${month.replace('-', '/')}`)
  expect(response.status, month).to.equal(200)
  return (await response.json()) as ArchiveObject
}

/** The file at a pre-signed URL, fetched as a client should: no token. */
async function download(url: string, headers: Record<string, string> = {}): Promise<{response: Response; bytes: Buffer}> {
  const response = await fetch(url, {headers})
  return {response, bytes: Buffer.from(await response.arrayBuffer())}
}

function decode(bytes: Buffer): {shape: 'array' | 'entries'; events: AuditEvent[]} {
  const json = JSON.parse(gunzipSync(bytes).toString('utf8')) as AuditEvent[] | {entries: AuditEvent[]}
  return Array.isArray(json) ? {shape: 'array', events: json} : {shape: 'entries', events: json.entries}
}

async function eventsOfArchive(fake: FakeHeroku, month: string): Promise<AuditEvent[]> {
  const {response, bytes} = await download((await archiveOf(fake, month)).url)
  expect(response.status).to.equal(200)
  return decode(bytes).events
}


describe('fake Heroku monthly archives', function () {
  const events = Object.fromEntries(Object.entries(DAYS).map(([day, count]) => [day, generateEvents(day, count)]))
  const covered = (month: string) => Object.entries(events).filter(([day]) => day.startsWith(month) && day < '2025-06-03').flatMap(([, list]) => list)
  let clock = NOW
  let fake: FakeHeroku

  beforeEach(async function () {
    clock = NOW
    fake = await startFakeHeroku({events, now: () => clock})
  })
  afterEach(async function () {
    await fake.close()
  })

  describe('metadata', function () {
    it('lists a past month and the current one, never a month to come, with the standard headers', async function () {
      const response = await get(fake, '/enterprise-accounts/acme/archives')
      expect(response.status).to.equal(200)
      expect(response.headers.get('content-type')).to.equal('application/json')
      expect(response.headers.get('request-id')).to.match(/^[0-9a-f-]{36}$/)
      expect(response.headers.get('ratelimit-remaining')).to.equal('4499')
      const archives = (await response.json()) as ArchiveObject[]
      expect(archives.map(a => [a.year, a.month])).to.deep.equal([[2025, '05'], [2025, '06']])
      expect(fake.archiveMonths()).to.deep.equal(['2025-05', '2025-06'])
      for (const archive of archives) {
        expect(Object.keys(archive).sort()).to.deep.equal(['checksum', 'created_at', 'month', 'size', 'url', 'year'])
        expect(archive.checksum).to.match(/^[0-9a-f]{64}$/)
        expect(archive.size).to.be.a('number').above(0)
        // Another host:port than the API, pre-signed.
        const url = new URL(archive.url)
        expect(url.origin).to.equal(fake.storageUrl).and.not.equal(fake.url)
        expect(url.pathname).to.equal(`/audit-archives/acme/2025-${archive.month}.json.gz`)
        expect(url.searchParams.get('X-Amz-Expires')).to.equal('3600')
        expect(url.searchParams.get('X-Amz-Signature')).to.match(/^[0-9a-f]{64}$/)
      }
      expect(fake.requests[0]).to.include({path: '/enterprise-accounts/acme/archives'})
    })

    it('answers one month by year and month, the same object as listed; 404s a month without one', async function () {
      const [may] = await listed(fake)
      expect(await archiveOf(fake, '2025-05')).to.deep.equal(may)
      for (const path of ['2025/07', '2025/04', '2025/13', '2025/5', 'x/05']) {
        const response = await get(fake, `/enterprise-accounts/acme/archives/${path}`)
        expect(response.status, path).to.equal(404)
        expect(((await response.json()) as {id: string}).id).to.equal('not_found')
      }
    })

    it('401s a missing or wrong token, 406s a wrong Accept, takes version=3.audit-trail, 404s an unknown account', async function () {
      const path = '/enterprise-accounts/acme/archives'
      expect((await get(fake, path, {token: null})).status).to.equal(401)
      expect((await get(fake, `${path}/2025/05`, {token: 'HRKU-wrong'})).status).to.equal(401)
      expect((await get(fake, path, {accept: null})).status).to.equal(406)
      expect((await get(fake, path, {accept: 'application/json'})).status).to.equal(406)
      expect((await get(fake, path, {accept: 'application/vnd.heroku+json; version=3.audit-trail'})).status).to.equal(200)
      const unknown = await get(fake, '/enterprise-accounts/nobody/archives/2025/05')
      expect(unknown.status).to.equal(404)
      expect(((await unknown.json()) as {message: string}).message).to.match(/enterprise account/)
      expect((await get(fake, '/enterprise-accounts/00000000-0000-4000-8000-000000000001/archives')).status).to.equal(200)
    })

    it('takes a token from the shared pool per request and 429s an empty one with the reference body', async function () {
      fake.setRateLimitRemaining(1)
      const first = await get(fake, '/enterprise-accounts/acme/archives/2025/05')
      expect(first.status).to.equal(200)
      expect(first.headers.get('ratelimit-remaining')).to.equal('0')
      const second = await get(fake, '/enterprise-accounts/acme/archives')
      expect(second.status).to.equal(429)
      expect(await second.text()).to.equal(RATE_LIMIT_BODY)
      expect((await get(fake, '/enterprise-accounts/acme/events?day=2025-05-30')).status).to.equal(429)
    })

    it('dates a past month at 00:02:19Z on the first of the next, the current one today; createdAt overrides', async function () {
      const [may, june] = await listed(fake)
      expect(may.created_at).to.equal('2025-06-01T00:02:19Z')
      expect(june.created_at).to.equal('2025-06-03T00:02:19Z')
      fake.setArchive('2025-05', {createdAt: '2025-06-01T05:00:00Z'})
      expect((await archiveOf(fake, '2025-05')).created_at).to.equal('2025-06-01T05:00:00Z')
      fake.setArchive('2024-12')
      expect((await archiveOf(fake, '2024-12')).created_at).to.equal('2025-01-01T00:02:19Z')
    })
  })

  describe('files', function () {
    it('serves each month in its shape, all the covered events, shuffled, with the listed checksum and size', async function () {
      expect([defaultArchiveShape('2025-05'), defaultArchiveShape('2025-06')]).to.deep.equal(['array', 'entries'])
      for (const archive of await listed(fake)) {
        const month = `${archive.year}-${archive.month}`
        const {response, bytes} = await download(archive.url)
        expect(response.status).to.equal(200)
        expect(response.headers.get('content-type')).to.equal('application/gzip')
        expect(response.headers.get('content-encoding')).to.equal(null)
        expect(bytes.length).to.equal(archive.size)
        expect(sha256(bytes)).to.equal(archive.checksum)
        const {shape, events: served} = decode(bytes)
        expect(shape, month).to.equal(defaultArchiveShape(month))
        expect(byId(served)).to.deep.equal(byId(JSON.parse(JSON.stringify(covered(month))) as AuditEvent[]))
        const ids = served.map(e => e.id)
        const times = served.map(e => e.created_at)
        expect(ids, 'not in id order').to.not.deep.equal([...ids].sort())
        expect(times, 'not in time order').to.not.deep.equal([...times].sort())
      }
    })

    it("covers only the current month's days before today, and takes in today once it is over", async function () {
      const june = await eventsOfArchive(fake, '2025-06')
      expect(new Set(june.map(e => e.created_at.slice(0, 10)))).to.deep.equal(new Set(['2025-06-01', '2025-06-02']))
      clock = Date.parse('2025-06-04T00:10:00Z')
      const later = await archiveOf(fake, '2025-06')
      expect(later.created_at).to.equal('2025-06-04T00:02:19Z')
      expect(await eventsOfArchive(fake, '2025-06')).to.have.length(20 + 15 + 10)
    })

    it('lists a checksum that is wrong when told to, for the same file', async function () {
      const honest = await archiveOf(fake, '2025-05')
      fake.setArchive('2025-05', {corruptChecksum: true})
      const corrupt = await archiveOf(fake, '2025-05')
      const {bytes} = await download(corrupt.url)
      expect(corrupt.checksum).to.match(/^[0-9a-f]{64}$/).and.not.equal(honest.checksum)
      expect(sha256(bytes)).to.equal(honest.checksum)
      expect(corrupt.size).to.equal(honest.size)
    })

    it('leaves out omitted events and holds added ones, which /events does not serve; a chosen shape holds', async function () {
      const gone = events['2025-05-31'][3]
      const extra: AuditEvent = {...events['2025-05-31'][0], id: '20250531-ffff-4000-8000-000000000001', data: {only: 'archive'}}
      fake.setArchive('2025-05', {omitIds: [gone.id], addEvents: [extra], shape: 'entries'})
      const {bytes} = await download((await archiveOf(fake, '2025-05')).url)
      const {shape, events: served} = decode(bytes)
      expect(shape).to.equal('entries')
      expect(served.map(e => e.id)).to.include(extra.id).and.not.include(gone.id)
      expect(served).to.have.length(30 + 25)
      const day = (await (await get(fake, '/enterprise-accounts/acme/events?day=2025-05-31')).json()) as AuditEvent[]
      expect(day.map(e => e.id)).to.include(gone.id).and.not.include(extra.id)
    })

    it('follows setEvents: the file and its checksum change with the month', async function () {
      const before = await archiveOf(fake, '2025-05')
      fake.setEvents('2025-05-30', generateEvents('2025-05-30', 3, {seed: 9}))
      const after = await archiveOf(fake, '2025-05')
      expect(after.checksum).to.not.equal(before.checksum)
      const served = await eventsOfArchive(fake, '2025-05')
      expect(served).to.have.length(3 + 25)
      // A month's events set with none and no other day in it: no archive under 'auto'.
      fake.setEvents('2025-07-01', [])
      fake.setEvents('2025-04-10', [])
      expect(fake.archiveMonths()).to.deep.equal(['2025-05', '2025-06'])
    })

    it('removes an archive: gone from the list, 404 on the API, NoSuchKey at its old URL; setArchive brings it back', async function () {
      const oldUrl = (await archiveOf(fake, '2025-05')).url
      fake.removeArchive('2025-05')
      expect((await listed(fake)).map(a => a.month)).to.deep.equal(['06'])
      expect((await get(fake, '/enterprise-accounts/acme/archives/2025/05')).status).to.equal(404)
      const {response, bytes} = await download(oldUrl)
      expect(response.status).to.equal(404)
      expect(bytes.toString()).to.include('<Code>NoSuchKey</Code>')
      fake.setArchive('2025-05')
      expect(fake.archiveMonths()).to.deep.equal(['2025-05', '2025-06'])
    })

    it("serves a pre-built file from bytes, from a file on disk, or from a function, checksummed as served", async function () {
      const file = gzipSync(JSON.stringify([{id: 'x', type: 'app', action: 'create', created_at: '2025-03-01T00:00:00Z'}]))
      const path = join(mkdtempSync(join(tmpdir(), 'fake-archives-')), '2025-02.json.gz')
      writeFileSync(path, file)
      let opened = 0
      fake.setArchive('2025-01', {body: file})
      fake.setArchive('2025-02', {body: {path}})
      fake.setArchive('2025-03', {
        body: async function* () {
          opened++
          yield file.subarray(0, 10)
          yield file.subarray(10)
        },
      })
      for (const month of ['2025-01', '2025-02', '2025-03']) {
        const archive = await archiveOf(fake, month)
        expect(archive.checksum, month).to.equal(sha256(file))
        expect(archive.size).to.equal(file.length)
        expect((await download(archive.url)).bytes.equals(file), month).to.equal(true)
      }
      // Once for the checksum (cached since), once for the download.
      expect(opened).to.equal(2)
    })

    it("serves only the listed months under archives: 'manual'", async function () {
      const manual = await startFakeHeroku({events, now: () => NOW, archives: 'manual'})
      try {
        expect(manual.archiveMonths()).to.deep.equal([])
        manual.setArchive('2025-05')
        expect(manual.archiveMonths()).to.deep.equal(['2025-05'])
        expect(() => manual.setArchive('2025-5')).to.throw(RangeError)
      } finally {
        await manual.close()
      }
    })
  })

  describe('the storage server', function () {
    it('refuses and records a request carrying the token, in Authorization or any other header', async function () {
      const {url} = await archiveOf(fake, '2025-05')
      const bearer = await download(url, {Authorization: `Bearer ${fake.token}`})
      expect(bearer.response.status).to.equal(403)
      expect(bearer.response.headers.get('content-type')).to.equal('application/xml')
      expect(bearer.bytes.toString()).to.match(/^<\?xml[^]*<Code>AccessDenied<\/Code>/)
      const other = await download(url, {'X-Heroku-Token': fake.token})
      expect(other.response.status).to.equal(403)
      const basic = await download(url, {Authorization: 'Basic dXNlcjpwYXNz'})
      expect(basic.response.status).to.equal(403)
      expect(fake.storageRequests.map(r => r.headers.authorization)).to.deep.equal([`Bearer ${fake.token}`, undefined, 'Basic dXNlcjpwYXNz'])
      expect(fake.storageRequests[1].headers['x-heroku-token']).to.equal(fake.token)
      expect(fake.storageRequests[0].path).to.equal('/audit-archives/acme/2025-05.json.gz')
      expect(fake.storageRequests[0].query['X-Amz-Signature']).to.match(/^[0-9a-f]{64}$/)
    })

    it('refuses a missing, wrong or expired signature', async function () {
      const {url} = await archiveOf(fake, '2025-05')
      const tampered = new URL(url)
      const signature = tampered.searchParams.get('X-Amz-Signature') ?? ''
      tampered.searchParams.set('X-Amz-Signature', (signature[0] === '0' ? '1' : '0') + signature.slice(1))
      const wrong = await download(tampered.href)
      expect(wrong.response.status).to.equal(403)
      expect(wrong.bytes.toString()).to.include('<Code>SignatureDoesNotMatch</Code>')
      // Another month's path under this month's signature.
      const otherPath = await download(url.replace('2025-05.json.gz', '2025-06.json.gz'))
      expect(otherPath.bytes.toString()).to.include('<Code>SignatureDoesNotMatch</Code>')
      const unsigned = new URL(url)
      unsigned.searchParams.delete('X-Amz-Signature')
      const missing = await download(unsigned.href)
      expect(missing.response.status).to.equal(403)
      expect(missing.bytes.toString()).to.include('<Code>AccessDenied</Code>')
      clock += 3601_000
      const expired = await download(url)
      expect(expired.response.status).to.equal(403)
      expect(expired.bytes.toString()).to.include('Request has expired')
      expect((await download(url.replace(/X-Amz-Expires=3600/, 'X-Amz-Expires=99999'))).response.status).to.equal(403)
    })
  })

  describe('scripted faults', function () {
    it('applies archive faults to the archive routes only; unscoped faults still go to /events', async function () {
      fake.script([{kind: 'status', status: 503, retryAfter: '7'}], {route: 'archives'})
      fake.script([{kind: 'status', status: 500}])
      expect((await get(fake, '/enterprise-accounts/acme/events?day=2025-05-30')).status).to.equal(500)
      const faulted = await get(fake, '/enterprise-accounts/acme/archives/2025/05')
      expect(faulted.status).to.equal(503)
      expect(faulted.headers.get('retry-after')).to.equal('7')
      expect(((await faulted.json()) as {id: string}).id).to.equal('service_unavailable')
      expect((await get(fake, '/enterprise-accounts/acme/archives/2025/05')).status).to.equal(200)
    })

    it('breaks archive metadata bodies: truncated JSON, an object instead of the list, a body cut short', async function () {
      fake.script([{kind: 'truncated-json'}, {kind: 'not-array'}, {kind: 'cut-body'}], {route: 'archives'})
      const truncated = await get(fake, '/enterprise-accounts/acme/archives')
      expect(truncated.status).to.equal(200)
      const text = await truncated.text()
      expect(() => JSON.parse(text)).to.throw(SyntaxError)
      expect(text.startsWith('[{"year":2025')).to.equal(true)
      const wrapped = (await (await get(fake, '/enterprise-accounts/acme/archives')).json()) as {archives: ArchiveObject[]}
      expect(wrapped.archives).to.have.length(2)
      const cut = await get(fake, '/enterprise-accounts/acme/archives')
      await rejectionOf(cut.text())
    })

    it('answers storage statuses with S3 XML, then serves the file', async function () {
      const {url, checksum} = await archiveOf(fake, '2025-05')
      fake.script([{kind: 'status', status: 503}, {kind: 'status', status: 500, id: 'InternalError', message: 'boom'}], {route: 'storage'})
      const slowDown = await download(url)
      expect(slowDown.response.status).to.equal(503)
      expect(slowDown.bytes.toString()).to.include('<Code>SlowDown</Code>')
      const internal = await download(url)
      expect(internal.response.status).to.equal(500)
      expect(internal.bytes.toString()).to.include('<Code>InternalError</Code><Message>boom</Message>')
      expect(sha256((await download(url)).bytes)).to.equal(checksum)
    })

    it('still refuses the token before any storage fault, which then waits for the next request', async function () {
      const {url} = await archiveOf(fake, '2025-05')
      fake.script([{kind: 'status', status: 500}], {route: 'storage'})
      expect((await download(url, {Authorization: `Bearer ${fake.token}`})).response.status).to.equal(403)
      expect((await download(url)).response.status).to.equal(500)
    })

    it('stalls a storage body, cuts it short, truncates it, resets the connection, delays', async function () {
      const {url, size} = await archiveOf(fake, '2025-05')
      fake.script([{kind: 'hang-body'}, {kind: 'cut-body'}, {kind: 'truncated-json'}, {kind: 'reset'}, {kind: 'delay', ms: 150}], {route: 'storage'})

      const stalled = new AbortController()
      const hanging = await fetch(url, {signal: stalled.signal})
      expect(hanging.status).to.equal(200)
      expect(hanging.headers.get('content-length')).to.equal(String(size))
      const reader = (hanging.body as ReadableStream<Uint8Array>).getReader()
      const first = await reader.read()
      expect(first.value?.length).to.equal(Math.floor(size / 2))
      const timer = setTimeout(() => stalled.abort(), 200)
      await rejectionOf(reader.read())
      clearTimeout(timer)

      const cut = await fetch(url)
      await rejectionOf(cut.arrayBuffer())

      const truncated = await download(url)
      expect(truncated.response.status).to.equal(200)
      expect(truncated.bytes.length).to.equal(Math.floor(size / 2))
      expect(() => gunzipSync(truncated.bytes)).to.throw()

      await rejectionOf(fetch(url))

      const started = Date.now()
      expect((await download(url)).bytes.length).to.equal(size)
      expect(Date.now() - started).to.be.at.least(140)
    })

    it('reset() forgets storage requests and storage faults', async function () {
      const {url} = await archiveOf(fake, '2025-05')
      fake.script([{kind: 'status', status: 500}], {route: 'storage'})
      await download(url, {Authorization: 'Bearer x'})
      fake.reset()
      expect(fake.storageRequests).to.deep.equal([])
      expect((await download(url)).response.status).to.equal(200)
    })
  })
})

describe('the fake started by hand serves archives (npm run fake-api)', function () {
  this.timeout(30_000)

  it('prints the storage URL and serves the months of its days', async () => {
    const cli = fileURLToPath(new URL('../fake-heroku/cli.ts', import.meta.url))
    const child = spawn(process.execPath, ['--import=tsx', cli, '--port', '0', '--days', '2', '--events-per-day', '3'], {stdio: ['ignore', 'pipe', 'pipe']})
    try {
      let banner = ''
      child.stdout.setEncoding('utf8')
      for await (const chunk of child.stdout) {
        banner += chunk as string
        if (banner.includes('Ctrl-C')) break
      }

      const apiUrl = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(banner)?.[1]
      const storageUrl = /Archive storage \(pre-signed URLs, no token\) on (http:\/\/127\.0\.0\.1:\d+)/.exec(banner)?.[1]
      expect(storageUrl, banner).to.be.a('string').and.not.equal(apiUrl)
      const days = [2, 1].map(back => new Date(Date.now() - back * 86_400_000).toISOString().slice(0, 7))
      const months = [...new Set(days)]
      expect(banner).to.include(`monthly archives: ${months.join(', ')}`)
      const response = await fetch(`${apiUrl}/enterprise-accounts/acme/archives`, {
        headers: {Authorization: 'Bearer HRKU-fake-token-0000000000000000000000000000', Accept: ACCEPT},
      })
      const archives = (await response.json()) as ArchiveObject[]
      expect(archives.map(a => `${a.year}-${a.month}`)).to.deep.equal(months)
      let total = 0
      for (const archive of archives) {
        expect(new URL(archive.url).origin).to.equal(storageUrl)
        total += decode((await download(archive.url)).bytes).events.length
      }
      expect(total).to.equal(6)
    } finally {
      child.kill()
    }
  })
})
