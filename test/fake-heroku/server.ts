/**
 * A loopback fake of Heroku's Enterprise audit-trail API (`GET /enterprise-accounts/{id}/events`
 * and the monthly archives, `…/archives` and `…/archives/{year}/{month}`) as a real HTTP server,
 * for tests and benchmarks. It honours shared/heroku-audit-api.md: Bearer auth, the versioned
 * Accept header, exact-match filters, Range/Next-Range paging, the shared rate limit and Heroku's
 * error bodies. Archive files are served by a second loopback server standing in for S3, at
 * pre-signed URLs; it refuses any request that carries the Heroku token. Tests can script faults
 * (statuses, delays, hangs, broken bodies, resets) per request on either server and inspect every
 * request received.
 */
import {createHash, createHmac, randomBytes, randomUUID, timingSafeEqual} from 'node:crypto'
import {createReadStream} from 'node:fs'
import {createServer, STATUS_CODES} from 'node:http'
import type {IncomingMessage, Server, ServerResponse} from 'node:http'
import type {AddressInfo, Socket} from 'node:net'
import {gzipSync} from 'node:zlib'

import {isValidDay, mulberry32} from './events.js'
import type {AuditEvent} from './events.js'

export type {AuditEvent, AuditNamed, AuditUser} from './events.js'

export type Fault =
  /** Answer `status` with a Heroku error body (an S3 XML one on storage); id/message default from the status (see ERRORS). */
  | {kind: 'status'; status: number; id?: string; message?: string; retryAfter?: string; headers?: Record<string, string>}
  /** Wait `ms`, then answer normally. */
  | {kind: 'delay'; ms: number}
  /** Accept the request and never answer (until the server closes). */
  | {kind: 'hang'}
  /** Send 200 headers and part of the body, then stall forever. */
  | {kind: 'hang-body'}
  /** 200, a complete HTTP response, but the JSON text (on storage: the gzip file) is cut in half. */
  | {kind: 'truncated-json'}
  /** 200 announcing more bytes than are sent, then the socket is destroyed. */
  | {kind: 'cut-body'}
  /** Reset the connection without answering. */
  | {kind: 'reset'}
  /** 200 with the body wrapped in an object: `{"events": [...]}` (events), `{"archives": …}` (archives). */
  | {kind: 'not-array'}
  /** A normal body, but answered 206 with the request's own Range as Next-Range. */
  | {kind: 'repeat-next-range'}

/** The faults that mean something for a file on the storage server. */
export type StorageFault = Extract<Fault, {kind: 'status' | 'delay' | 'hang' | 'hang-body' | 'truncated-json' | 'cut-body' | 'reset'}>

/**
 * Which requests a scripted fault applies to: `events` (the default; also any request to the API
 * server that is not an archives route, as before archives existed), `archives` (the two archive
 * metadata routes) or `storage` (downloads from the storage server).
 */
export type FaultRoute = 'events' | 'archives' | 'storage'

/** 'YYYY-MM', e.g. '2025-06'. */
export type Month = string

/**
 * The gzip file of one month's archive, given instead of the one built from the fake's events:
 * the bytes, a file to stream them from, or a function that yields them afresh on each call (it
 * must yield the same bytes every time: it is read once for the checksum and size, then once per
 * download). The last two let a benchmark serve a month of 310,000 events without holding it.
 */
export type ArchiveBodySource = Uint8Array | {path: string} | (() => AsyncIterable<Uint8Array>)

export interface ArchiveOptions {
  /** A bare JSON array of events, or `{"entries": [...]}`; default defaultArchiveShape(month). */
  shape?: 'array' | 'entries'
  /** Events left out of the archive (they are still served by `/events`). */
  omitIds?: string[]
  /** Events only the archive holds (not served by `/events`). */
  addEvents?: AuditEvent[]
  /** List a wrong checksum (the file itself is unchanged). */
  corruptChecksum?: boolean
  /** The archive's created_at (ISO 8601); default: see FakeHeroku.setArchive. */
  createdAt?: string
  /** The gzip file as is; the events, shape, omitIds and addEvents are then ignored. */
  body?: ArchiveBodySource
}

export interface FakeHerokuOptions {
  /** The only accepted Bearer token; default DEFAULT_TOKEN. */
  token?: string
  /** Account ids/names that exist; default ['acme', '00000000-0000-4000-8000-000000000001']. */
  accounts?: string[]
  /** Day 'YYYY-MM-DD' -> its events; days not listed have none. */
  events?: Record<string, AuditEvent[]>
  /** Page size when the request names no `max`; default 200, as Heroku's. */
  pageSize?: number
  /** Largest page; a bigger `max` is clamped to it; default 1000. */
  maxPageSize?: number
  /** true (default): 206 + Next-Range while more remain; false: everything in one 200, Range ignored. */
  paging?: boolean
  /** Starting RateLimit-Remaining, default 4500; each request takes one; at 0 requests get 429. */
  rateLimitRemaining?: number
  /**
   * 'auto' (default): every month with events on a day the archive covers (any day before today,
   * UTC) has an archive, unless removed. 'manual': only the months given to setArchive.
   */
  archives?: 'auto' | 'manual'
  /** The fake's clock: what "today" is (the day a request names none of, archive coverage); default Date.now. */
  now?: () => number
  /** Default 0: a free port. */
  port?: number
  /** The storage server's port; default 0: a free port. */
  storagePort?: number
}

export interface RecordedRequest {
  method: string
  /** The path as sent (still URL-encoded), without the query string. */
  path: string
  /** Query parameters, decoded; the first wins when one repeats (as the handler reads them). */
  query: Record<string, string>
  /** Header names lower-cased; repeated headers joined with ', '. */
  headers: Record<string, string | undefined>
  /** The `day` query parameter as sent (absent when the request named none). */
  day?: string
  /** The Range header as sent. */
  range?: string
  /** Date.now() when the request arrived. */
  at: number
}

export interface FakeHeroku {
  /** 'http://127.0.0.1:PORT' */
  url: string
  /** The storage server, 'http://127.0.0.1:PORT2': archive URLs point there. */
  storageUrl: string
  token: string
  /** Every request received by the API server, faulted ones included, in arrival order. */
  requests: RecordedRequest[]
  /** Every request received by the storage server, refused and faulted ones included, in arrival order. */
  storageRequests: RecordedRequest[]
  requestsForDay(day: string): RecordedRequest[]
  /**
   * Queue faults, consumed one per matching request, first in first out; once the queue is empty
   * requests are answered normally. `route` says which requests match (default 'events', see
   * FaultRoute); with `day`, only requests of the events route for that day match.
   * A storage request that carries the token is refused before any fault applies.
   */
  script(faults: Fault[], opts?: {day?: string; route?: 'events' | 'archives'}): void
  script(faults: StorageFault[], opts: {route: 'storage'}): void
  setEvents(day: string, events: AuditEvent[]): void
  /**
   * Serve an archive for `month` ('YYYY-MM'), built from the events of the days it covers (all
   * its days for a past month; the days before today for the current one), or from `body`.
   * Replaces any earlier options for the month. Default created_at: the first day of the next
   * month at 00:02:19Z for a past month, today at 00:02:19Z for the current one.
   */
  setArchive(month: Month, options?: ArchiveOptions): void
  /** Serve no archive for `month` (404), even under `archives: 'auto'`, until setArchive names it again. */
  removeArchive(month: Month): void
  /** The months that have an archive now, oldest first. */
  archiveMonths(): Month[]
  setRateLimitRemaining(n: number): void
  /** Forget recorded requests (both servers) and queued faults (events, archives and rate limit stay as they are). */
  reset(): void
  /** Stop listening (both servers) and destroy every open socket, hanging ones included. */
  close(): Promise<void>
}

export const DEFAULT_TOKEN = 'HRKU-fake-token-0000000000000000000000000000'
export const DEFAULT_ACCOUNTS = ['acme', '00000000-0000-4000-8000-000000000001']

/** The shape of a month's archive when setArchive names none: odd months a bare array, even months `{"entries": […]}`. */
export function defaultArchiveShape(month: Month): 'array' | 'entries' {
  return Number(month.slice(5, 7)) % 2 === 1 ? 'array' : 'entries'
}

/** Verbatim from the Platform API reference; clients may match on it. */
export const RATE_LIMIT_BODY =
  '{"id":"rate_limit","message":"Your account reached the API rate limit\\nPlease wait a few minutes before making new requests","url":"https://devcenter.heroku.com/articles/platform-api-reference#rate-limits"}'

interface ErrorBody {
  id: string
  message: string
  url?: string
}

/** Heroku's error ids per status (heroku-audit-api.md, "Errors"), with plausible messages. */
const ERRORS: Record<number, ErrorBody> = {
  400: {id: 'bad_request', message: 'Invalid request.'},
  401: {id: 'unauthorized', message: 'Invalid credentials provided.'},
  402: {id: 'delinquent', message: 'This account is delinquent. Please update your billing information.'},
  403: {id: 'forbidden', message: 'You do not have access to this enterprise account.'},
  404: {id: 'not_found', message: 'Not found.'},
  406: {id: 'not_acceptable', message: 'The requested API version is not available. Set Accept: application/vnd.heroku+json; version=3.'},
  416: {id: 'requested_range_not_satisfiable', message: 'The Range header is not valid.'},
  422: {id: 'invalid_params', message: 'Invalid parameters.'},
  429: JSON.parse(RATE_LIMIT_BODY) as ErrorBody,
  500: {id: 'internal_server_error', message: 'Internal server error.'},
  502: {id: 'bad_gateway', message: 'Bad gateway.'},
  503: {id: 'service_unavailable', message: 'The API is temporarily unavailable. Please try again later.'},
  504: {id: 'gateway_timeout', message: 'The request timed out.'},
}

function defaultError(status: number): ErrorBody {
  if (ERRORS[status]) return ERRORS[status]
  const text = STATUS_CODES[status] ?? 'Error'
  return {id: text.toLowerCase().replace(/[^a-z0-9]+/g, '_'), message: `${text}.`}
}

/** S3's error codes for the statuses a storage fault is likely to name. */
const STORAGE_CODES: Record<number, string> = {
  400: 'InvalidRequest',
  403: 'AccessDenied',
  404: 'NoSuchKey',
  500: 'InternalError',
  503: 'SlowDown',
}

const ROUTE_NOT_FOUND =
  'The requested API endpoint was not found. Are you using the right HTTP verb (i.e. `GET` vs. `POST`), ' +
  'and did you specify your intended version with the `Accept` header?'

const EVENTS_ROUTE = /^\/enterprise-accounts\/([^/]+)\/events$/
/** The list, or (with year and month) one archive. */
const ARCHIVES_ROUTE = /^\/enterprise-accounts\/([^/]+)\/archives(?:\/([^/]+)\/([^/]+))?$/
const STORAGE_ROUTE = /^\/audit-archives\/([^/]+)\/(\d{4}-\d{2})\.json\.gz$/
const MONTH_PATTERN = /^\d{4}-(?:0[1-9]|1[0-2])$/
const ACCEPTED_VERSIONS = new Set(['3', '3.audit-trail'])

/** An archive appears a few minutes after its period ends (Heroku's CLI test data: 00:02:19Z). */
const ARCHIVE_CREATED_TIME = 'T00:02:19Z'
/** How long a pre-signed URL stays valid, as S3's X-Amz-Expires. */
const URL_EXPIRES_SECONDS = 3600
/** The storage server writes a file in pieces of this size, as a real one streams it. */
const STORAGE_CHUNK_BYTES = 64 * 1024

/**
 * `id ..`, `id <first>..` (inclusive) or `id ]<after>..` (exclusive), then options such as
 * `max=1000` separated by `;` or `,`, with an optional trailing `;`.
 */
const RANGE_PATTERN = /^id\s+(\])?([^\s.;,]*)\.\.\s*(?:;(.*))?$/

interface ParsedRange {
  exclusive: boolean
  from?: string
  max?: number
  order?: 'asc' | 'desc'
}

function parseRange(header: string): ParsedRange | undefined {
  const match = RANGE_PATTERN.exec(header.trim())
  if (!match) return undefined
  const range: ParsedRange = {exclusive: match[1] === ']', from: match[2] || undefined}
  if (range.exclusive && !range.from) return undefined
  for (const option of (match[3] ?? '').split(/[;,]/)) {
    const [key, value, extra] = option.trim().split('=').map(s => s.trim())
    if (!key && value === undefined) continue // empty segment, e.g. after the trailing ';'
    if (extra !== undefined) return undefined
    if (key === 'max' && /^\d+$/.test(value ?? '') && Number(value) > 0) range.max = Number(value)
    else if (key === 'order' && (value === 'asc' || value === 'desc')) range.order = value
    else return undefined
  }
  return range
}

/** Is `application/vnd.heroku+json; version=3` (or `3.audit-trail`) among the accepted types? */
function acceptsHerokuJson(accept: string | undefined): boolean {
  if (!accept) return false
  return accept.split(',').some(mediaRange => {
    const [type, ...params] = mediaRange.split(';').map(s => s.trim())
    if (type.toLowerCase() !== 'application/vnd.heroku+json') return false
    return params.some(param => {
      const [key, value] = param.split('=').map(s => s.trim())
      return key.toLowerCase() === 'version' && ACCEPTED_VERSIONS.has(value)
    })
  })
}

function bearerToken(authorization: string | undefined): string | undefined {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '')
  return match?.[1]
}

/** The account a path names, URL-decoded; '' (no account) when it does not decode. */
function decodeAccount(encoded: string): string {
  try {
    return decodeURIComponent(encoded)
  } catch {
    return ''
  }
}

function recordRequest(req: IncomingMessage, url: URL): RecordedRequest {
  const query: Record<string, string> = {}
  for (const [name, value] of url.searchParams) query[name] ??= value
  const headers: Record<string, string | undefined> = {}
  for (const [name, value] of Object.entries(req.headers)) headers[name] = Array.isArray(value) ? value.join(', ') : value
  const recorded: RecordedRequest = {method: req.method ?? 'GET', path: url.pathname, query, headers, at: Date.now()}
  if (query.day !== undefined) recorded.day = query.day
  if (headers.range !== undefined) recorded.range = headers.range
  return recorded
}

/** One day's events as seen through one set of filters and one order. */
interface View {
  events: AuditEvent[]
  /** Built on the first Range that names an id. */
  indexById?: Map<string, number>
}

interface Page {
  /** The JSON text. */
  body: string
  /** Set when more events remain and paging is on. */
  nextRange?: string
  contentRange?: string
}

type PageResult = {ok: true; page: Page} | {ok: false; status: number; error: ErrorBody}

/** Everything the handlers need about the request being answered. */
interface Exchange {
  req: IncomingMessage
  res: ServerResponse
  url: URL
  route: 'events' | 'archives'
  /** RateLimit-Remaining as of this request's arrival (after taking its token). */
  remaining: number
  /** The pool was already empty when the request arrived. */
  rateLimited: boolean
}

/** One month's gzip file: what the metadata lists, and the bytes on demand. */
interface ArchiveFile {
  size: number
  /** SHA-256 hex of the gzip bytes. */
  checksum: string
  open(): AsyncIterable<Uint8Array>
}

/** The archive object of heroku-audit-api.md. */
export interface ArchiveObject {
  year: number
  month: string
  created_at: string
  url: string
  checksum: string
  size: number
}

type StorageResolution = {ok: true; month: Month} | {ok: false; status: number; code: string; message: string}

class FakeHerokuServer implements FakeHeroku {
  url = ''
  storageUrl = ''
  readonly token: string
  readonly requests: RecordedRequest[] = []
  readonly storageRequests: RecordedRequest[] = []

  private readonly accounts: Set<string>
  private readonly pageSize: number
  private readonly maxPageSize: number
  private readonly paging: boolean
  private readonly autoArchives: boolean
  private readonly now: () => number
  private rateLimitRemaining: number
  private readonly days = new Map<string, AuditEvent[]>()
  /** day -> view key -> view; a day's entry is dropped when its events change. */
  private readonly views = new Map<string, Map<string, View>>()
  /** Each event's JSON text, so a page is a join rather than a fresh stringify of every event. */
  private readonly eventJson = new WeakMap<AuditEvent, string>()
  /** month -> what setArchive said about it, or null: removed. */
  private readonly archiveSettings = new Map<Month, ArchiveOptions | null>()
  /**
   * month -> its gzip file, built on first use and kept until the month's events or options
   * change; `today` is the day it was built, as the current month's archive grows every midnight.
   */
  private readonly archiveFiles = new Map<Month, {today: string; file: Promise<ArchiveFile>}>()
  /** Signs the pre-signed URLs; new for each fake, so a URL from another run is refused. */
  private readonly signingKey = randomBytes(32)
  private faults: {fault: Fault; route: FaultRoute; day?: string}[] = []
  private readonly sockets = new Set<Socket>()
  private readonly timers = new Set<NodeJS.Timeout>()
  private readonly server: Server
  private readonly storage: Server
  private closing?: Promise<void>

  constructor(opts: FakeHerokuOptions) {
    this.token = opts.token ?? DEFAULT_TOKEN
    this.accounts = new Set(opts.accounts ?? DEFAULT_ACCOUNTS)
    this.pageSize = opts.pageSize ?? 200
    this.maxPageSize = opts.maxPageSize ?? 1000
    this.paging = opts.paging ?? true
    this.autoArchives = (opts.archives ?? 'auto') === 'auto'
    this.now = opts.now ?? Date.now
    this.rateLimitRemaining = opts.rateLimitRemaining ?? 4500
    for (const [day, events] of Object.entries(opts.events ?? {})) this.setEvents(day, events)

    this.server = createServer((req, res) => this.handle(req, res))
    this.storage = createServer((req, res) => this.handleStorage(req, res))
    for (const server of [this.server, this.storage]) {
      server.on('connection', socket => {
        this.sockets.add(socket)
        socket.on('close', () => this.sockets.delete(socket))
      })
    }
  }

  async listen(port: number, storagePort: number): Promise<void> {
    this.url = await listenOnLoopback(this.server, port)
    this.storageUrl = await listenOnLoopback(this.storage, storagePort)
  }

  requestsForDay(day: string): RecordedRequest[] {
    return this.requests.filter(r => r.day === day)
  }

  script(faults: Fault[], opts: {day?: string; route?: FaultRoute} = {}): void {
    const route = opts.route ?? 'events'
    for (const fault of faults) this.faults.push({fault, route, day: opts.day})
  }

  setEvents(day: string, events: AuditEvent[]): void {
    // A sorted copy: the caller's array may be reused or mutated later. The sort is stable, so
    // events sharing a timestamp keep the caller's order. Event objects are shared, not cloned,
    // and must not be mutated once served (their JSON is cached).
    const sorted = events
      .map(event => ({event, time: Date.parse(event.created_at)}))
      .sort((a, b) => a.time - b.time)
      .map(({event}) => event)
    this.days.set(day, sorted)
    this.views.delete(day)
    this.archiveFiles.delete(day.slice(0, 7))
  }

  setArchive(month: Month, options: ArchiveOptions = {}): void {
    if (!MONTH_PATTERN.test(month)) throw new RangeError(`setArchive: not a month (YYYY-MM): ${JSON.stringify(month)}`)
    // Copies: the caller may reuse its arrays, and the built file is kept until the month changes.
    this.archiveSettings.set(month, {...options, omitIds: options.omitIds && [...options.omitIds], addEvents: options.addEvents && [...options.addEvents]})
    this.archiveFiles.delete(month)
  }

  removeArchive(month: Month): void {
    this.archiveSettings.set(month, null)
    this.archiveFiles.delete(month)
  }

  archiveMonths(): Month[] {
    const months = new Set<Month>()
    if (this.autoArchives) {
      const today = this.today()
      for (const [day, events] of this.days) if (events.length > 0 && day < today) months.add(day.slice(0, 7))
    }
    for (const [month, options] of this.archiveSettings) {
      if (options === null) months.delete(month)
      else months.add(month)
    }
    return [...months].sort()
  }

  setRateLimitRemaining(n: number): void {
    this.rateLimitRemaining = Math.max(0, Math.floor(n))
  }

  reset(): void {
    this.requests.length = 0
    this.storageRequests.length = 0
    this.faults = []
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const timer of this.timers) clearTimeout(timer)
      this.timers.clear()
      // Each callback runs once every connection has ended, which the destroys below guarantee.
      const closed = [this.server, this.storage].map(server => new Promise<void>(resolve => server.close(() => resolve())))
      for (const socket of this.sockets) socket.destroy()
      await Promise.all(closed)
    })()
    return this.closing
  }

  private today(): string {
    return new Date(this.now()).toISOString().slice(0, 10)
  }

  // --- request handling -------------------------------------------------------------------

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://fake-heroku.invalid')
    const recorded = recordRequest(req, url)
    this.requests.push(recorded)

    // Every request takes a token from the pool, whatever comes of it.
    const rateLimited = this.rateLimitRemaining === 0
    if (!rateLimited) this.rateLimitRemaining--
    const route = ARCHIVES_ROUTE.test(url.pathname) ? 'archives' : 'events'
    const exchange: Exchange = {req, res, url, route, remaining: this.rateLimitRemaining, rateLimited}

    const index = this.faults.findIndex(f => f.route === route && (f.day === undefined || f.day === recorded.day))
    if (index === -1) return this.answer(exchange)
    const [{fault}] = this.faults.splice(index, 1)
    this.applyFault(exchange, fault)
  }

  private applyFault(ex: Exchange, fault: Fault): void {
    const {req, res} = ex
    switch (fault.kind) {
      case 'status': {
        const base = defaultError(fault.status)
        const body: ErrorBody = {...base, id: fault.id ?? base.id, message: fault.message ?? base.message}
        const extra: Record<string, string> = {...fault.headers}
        if (fault.retryAfter !== undefined) extra['Retry-After'] = fault.retryAfter
        return this.send(ex, fault.status, JSON.stringify(body), extra)
      }
      case 'delay': {
        const timer = setTimeout(() => {
          this.timers.delete(timer)
          // The client may have given up meanwhile.
          if (!res.destroyed) this.answer(ex)
        }, fault.ms)
        this.timers.add(timer)
        return
      }
      case 'hang':
        return // close() destroys the socket
      case 'reset':
        // An RST rather than a FIN, so the client sees ECONNRESET as from a dropped connection.
        req.socket.resetAndDestroy()
        return
      case 'hang-body':
      case 'cut-body':
      case 'truncated-json':
      case 'not-array':
      case 'repeat-next-range':
        // A failure here is the fake's own (a body file gone): the client sees a dropped connection.
        this.faultPage(ex).then(page => this.sendFaultyPage(ex, fault.kind, page)).catch(() => res.destroy())
    }
  }

  private sendFaultyPage(ex: Exchange, kind: 'hang-body' | 'cut-body' | 'truncated-json' | 'not-array' | 'repeat-next-range', page: Page): void {
    const {req, res} = ex
    switch (kind) {
      case 'hang-body':
      case 'cut-body':
      case 'truncated-json': {
        const full = Buffer.from(page.body)
        const half = full.subarray(0, Math.floor(full.length / 2))
        if (kind === 'truncated-json') return this.send(ex, 200, half)
        // Announce the whole body but deliver half of it.
        res.writeHead(200, {...this.baseHeaders(ex), 'Content-Length': full.length})
        if (kind === 'hang-body') res.write(half)
        else res.write(half, () => req.socket.destroy())
        return
      }
      case 'not-array':
        return this.send(ex, 200, `{"${ex.route}":${page.body}}`)
      case 'repeat-next-range': {
        const range = ex.req.headers.range ?? `id ..; max=${this.pageSize};`
        const extra: Record<string, string> = {'Next-Range': range, 'Accept-Ranges': 'id'}
        if (page.contentRange) extra['Content-Range'] = page.contentRange
        return this.send(ex, 206, page.body, extra)
      }
    }
  }

  /** The body the request would get if it were valid; an empty list if it is not. Body faults carry it. */
  private async faultPage(ex: Exchange): Promise<Page> {
    if (ex.route === 'archives') {
      const [, account, year, month] = ARCHIVES_ROUTE.exec(ex.url.pathname) ?? []
      const body = await this.archivesBody(decodeAccount(account ?? ''), year, month).catch(() => undefined)
      return {body: body ?? '[]'}
    }
    const result = this.resolvePage(ex)
    return result.ok ? result.page : {body: '[]'}
  }

  /** The normal behaviour: routing, auth, Accept, rate limit, account, parameters, then the answer. */
  private answer(ex: Exchange): void {
    const {req, url} = ex
    const route = EVENTS_ROUTE.exec(url.pathname) ?? ARCHIVES_ROUTE.exec(url.pathname)
    if (!route) return this.sendError(ex, 404, {id: 'not_found', message: ROUTE_NOT_FOUND})
    if (req.method !== 'GET') {
      return this.sendError(ex, 405, {id: 'method_not_allowed', message: `${req.method} is not allowed here; use GET.`}, {Allow: 'GET'})
    }
    if (bearerToken(req.headers.authorization) !== this.token) return this.sendError(ex, 401, ERRORS[401])
    if (!acceptsHerokuJson(req.headers.accept)) return this.sendError(ex, 406, ERRORS[406])
    if (ex.rateLimited) return this.sendError(ex, 429, ERRORS[429])
    const account = decodeAccount(route[1])
    if (!this.accounts.has(account)) {
      return this.sendError(ex, 404, {id: 'not_found', message: "Couldn't find that enterprise account."})
    }
    if (ex.route === 'archives') return void this.answerArchives(ex, account, route[2], route[3])

    const result = this.resolvePage(ex)
    if (!result.ok) return this.sendError(ex, result.status, result.error)
    const {page} = result
    const extra: Record<string, string> = {}
    if (this.paging) extra['Accept-Ranges'] = 'id'
    if (page.contentRange) extra['Content-Range'] = page.contentRange
    if (page.nextRange) extra['Next-Range'] = page.nextRange
    this.send(ex, page.nextRange ? 206 : 200, page.body, extra)
  }

  private async answerArchives(ex: Exchange, account: string, year?: string, month?: string): Promise<void> {
    let body: string | undefined
    try {
      body = await this.archivesBody(account, year, month)
    } catch {
      // A body source that fails (a missing file) is the fake's problem, answered as Heroku's would be.
      if (!ex.res.destroyed) this.sendError(ex, 500, ERRORS[500])
      return
    }
    // The client may have given up while the file was built.
    if (ex.res.destroyed) return
    if (body === undefined) return this.sendError(ex, 404, {id: 'not_found', message: `Couldn't find an archive for ${year}/${month}.`})
    this.send(ex, 200, body)
  }

  /** The JSON text of the archive list (no year), or of one month's archive (undefined: it has none). */
  private async archivesBody(account: string, year?: string, month?: string): Promise<string | undefined> {
    if (year === undefined || month === undefined) {
      const objects = await Promise.all(this.archiveMonths().map(m => this.archiveObject(account, m)))
      return JSON.stringify(objects)
    }
    const wanted = `${year}-${month}`
    if (!MONTH_PATTERN.test(wanted) || !this.archiveMonths().includes(wanted)) return undefined
    return JSON.stringify(await this.archiveObject(account, wanted))
  }

  private async archiveObject(account: string, month: Month): Promise<ArchiveObject> {
    const file = await this.archiveFile(month)
    const options = this.archiveSettings.get(month) ?? {}
    return {
      year: Number(month.slice(0, 4)),
      month: month.slice(5, 7),
      created_at: options.createdAt ?? this.defaultCreatedAt(month),
      url: this.presignedUrl(account, month),
      checksum: options.corruptChecksum ? corruptedChecksum(file.checksum) : file.checksum,
      size: file.size,
    }
  }

  private defaultCreatedAt(month: Month): string {
    const today = this.today()
    if (month === today.slice(0, 7)) return `${today}${ARCHIVE_CREATED_TIME}`
    const [year, monthNumber] = month.split('-').map(Number)
    // Date.UTC counts months from 0, so the 1-based month number is the next month.
    return `${new Date(Date.UTC(year, monthNumber, 1)).toISOString().slice(0, 10)}${ARCHIVE_CREATED_TIME}`
  }

  private archiveFile(month: Month): Promise<ArchiveFile> {
    const today = this.today()
    const cached = this.archiveFiles.get(month)
    if (cached && (cached.today === today || month < cached.today.slice(0, 7))) return cached.file
    const file = this.buildArchiveFile(month, today)
    this.archiveFiles.set(month, {today, file})
    // A failed build (a missing body file) is tried again on the next request.
    file.catch(() => {
      if (this.archiveFiles.get(month)?.file === file) this.archiveFiles.delete(month)
    })
    return file
  }

  private async buildArchiveFile(month: Month, today: string): Promise<ArchiveFile> {
    const options = this.archiveSettings.get(month) ?? {}
    const source = options.body
    if (source === undefined) return fileOfBytes(gzipSync(this.archiveJson(month, today, options)))
    if (source instanceof Uint8Array) return fileOfBytes(source)
    const open = typeof source === 'function' ? source : () => createReadStream(source.path)
    // Read once for what the metadata lists; each download reads it afresh.
    const hash = createHash('sha256')
    let size = 0
    for await (const chunk of open()) {
      hash.update(chunk)
      size += chunk.length
    }
    return {size, checksum: hash.digest('hex'), open}
  }

  /** The month's covered events (days before today), less the omitted, plus the added, shuffled. */
  private archiveJson(month: Month, today: string, options: ArchiveOptions): string {
    const omitted = new Set(options.omitIds ?? [])
    const days = [...this.days.keys()].filter(day => day.startsWith(`${month}-`) && day < today).sort()
    const events = days.flatMap(day => this.days.get(day) ?? []).filter(event => !omitted.has(event.id))
    events.push(...(options.addEvents ?? []))
    const mixed = shuffled(events, mulberry32(Number(month.replace('-', ''))))
    const list = this.serialize(mixed, 0, mixed.length)
    return (options.shape ?? defaultArchiveShape(month)) === 'entries' ? `{"entries":${list}}` : list
  }

  private presignedUrl(account: string, month: Month): string {
    const path = `/audit-archives/${encodeURIComponent(account)}/${month}.json.gz`
    const date = amzDate(this.now())
    const expires = String(URL_EXPIRES_SECONDS)
    const query = new URLSearchParams({
      'X-Amz-Algorithm': 'AWS4-HMAC-SHA256',
      'X-Amz-Date': date,
      'X-Amz-Expires': expires,
      'X-Amz-SignedHeaders': 'host',
      'X-Amz-Signature': this.sign(path, date, expires),
    })
    return `${this.storageUrl}${path}?${query}`
  }

  private sign(path: string, date: string, expires: string): string {
    return createHmac('sha256', this.signingKey).update(`${path}\n${date}\n${expires}`).digest('hex')
  }

  /** Validates the query and Range, and cuts the page they ask for. */
  private resolvePage(ex: Exchange): PageResult {
    const query = ex.url.searchParams
    const day = query.get('day') ?? this.today()
    if (!isValidDay(day)) {
      return invalid(422, 'invalid_params', `Invalid day ${JSON.stringify(day)}: expected a calendar date as YYYY-MM-DD.`)
    }
    let order = query.get('order') ?? 'asc'
    if (order !== 'asc' && order !== 'desc') {
      return invalid(422, 'invalid_params', `Invalid order ${JSON.stringify(order)}: expected asc or desc.`)
    }

    const header = ex.req.headers.range
    let range: ParsedRange = {exclusive: false}
    if (this.paging && header !== undefined) {
      const parsed = parseRange(header)
      if (!parsed) return invalid(416, 'requested_range_not_satisfiable', `Invalid Range ${JSON.stringify(header)}.`)
      range = parsed
      order = range.order ?? order
    }

    const view = this.view(day, order as 'asc' | 'desc', query.get('type'), query.get('action'), query.get('actor'))
    if (!this.paging) return {ok: true, page: {body: this.serialize(view.events, 0, view.events.length)}}

    let start = 0
    if (range.from !== undefined) {
      view.indexById ??= new Map(view.events.map((event, i) => [event.id, i]))
      const at = view.indexById.get(range.from)
      if (at === undefined) {
        return invalid(416, 'requested_range_not_satisfiable', `Invalid Range: no event with id ${JSON.stringify(range.from)}.`)
      }
      start = range.exclusive ? at + 1 : at
    }
    const max = Math.min(range.max ?? this.pageSize, this.maxPageSize)
    const end = Math.min(start + max, view.events.length)
    const page: Page = {body: this.serialize(view.events, start, end)}
    if (end > start) page.contentRange = `id ${view.events[start].id}..${view.events[end - 1].id}; max=${max}`
    if (end < view.events.length) {
      page.nextRange = `id ]${view.events[end - 1].id}..; max=${max}${range.order ? `, order=${range.order}` : ''};`
    }
    return {ok: true, page}
  }

  /** The day's events filtered and ordered, computed once per (day, order, filters). */
  private view(day: string, order: 'asc' | 'desc', type: string | null, action: string | null, actor: string | null): View {
    let dayViews = this.views.get(day)
    if (!dayViews) this.views.set(day, (dayViews = new Map()))
    const key = JSON.stringify([order, type, action, actor])
    let view = dayViews.get(key)
    if (!view) {
      // Exact matches; a filter given empty matches nothing, as an exact match on '' would.
      let events = (this.days.get(day) ?? []).filter(
        e => (type === null || e.type === type) && (action === null || e.action === action) && (actor === null || e.actor?.email === actor),
      )
      if (order === 'desc') events = events.reverse()
      view = {events}
      dayViews.set(key, view)
    }
    return view
  }

  private serialize(events: AuditEvent[], start: number, end: number): string {
    const parts: string[] = []
    for (let i = start; i < end; i++) {
      let json = this.eventJson.get(events[i])
      if (json === undefined) this.eventJson.set(events[i], (json = JSON.stringify(events[i])))
      parts.push(json)
    }
    return `[${parts.join(',')}]`
  }

  // --- responses --------------------------------------------------------------------------

  private baseHeaders(ex: Exchange): Record<string, string> {
    return {
      'Content-Type': 'application/json',
      'Request-Id': randomUUID(),
      'RateLimit-Remaining': String(ex.remaining),
    }
  }

  private send(ex: Exchange, status: number, body: string | Buffer, extra: Record<string, string> = {}): void {
    const bytes = typeof body === 'string' ? Buffer.from(body) : body
    ex.res.writeHead(status, {...this.baseHeaders(ex), 'Content-Length': bytes.length, ...extra})
    ex.res.end(bytes)
  }

  private sendError(ex: Exchange, status: number, error: ErrorBody, extra: Record<string, string> = {}): void {
    // Key order is kept, so ERRORS[429] comes out exactly as RATE_LIMIT_BODY.
    this.send(ex, status, JSON.stringify(error), extra)
  }

  // --- the storage server -----------------------------------------------------------------

  private handleStorage(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://fake-storage.invalid')
    this.storageRequests.push(recordRequest(req, url))
    // The Heroku token must never reach storage: refused before anything else, faults included.
    if (req.headers.authorization !== undefined || this.carriesToken(req)) {
      return sendStorageError(res, 403, 'AccessDenied', 'Only one auth mechanism allowed: a pre-signed URL takes no Authorization header.')
    }

    const index = this.faults.findIndex(f => f.route === 'storage')
    if (index === -1) return void this.answerStorage(req, res, url).catch(() => res.destroy())
    const [{fault}] = this.faults.splice(index, 1)
    this.applyStorageFault(req, res, url, fault as StorageFault)
  }

  private carriesToken(req: IncomingMessage): boolean {
    return (req.url ?? '').includes(this.token) || req.rawHeaders.some(value => value.includes(this.token))
  }

  private applyStorageFault(req: IncomingMessage, res: ServerResponse, url: URL, fault: StorageFault): void {
    switch (fault.kind) {
      case 'status': {
        const code = fault.id ?? STORAGE_CODES[fault.status] ?? (STATUS_CODES[fault.status] ?? 'Error').replace(/[^A-Za-z]/g, '')
        const extra: Record<string, string> = {...fault.headers}
        if (fault.retryAfter !== undefined) extra['Retry-After'] = fault.retryAfter
        return sendStorageError(res, fault.status, code, fault.message ?? `${STATUS_CODES[fault.status] ?? 'Error'}.`, extra)
      }
      case 'delay': {
        const timer = setTimeout(() => {
          this.timers.delete(timer)
          if (!res.destroyed) this.answerStorage(req, res, url).catch(() => res.destroy())
        }, fault.ms)
        this.timers.add(timer)
        return
      }
      case 'hang':
        return // close() destroys the socket
      case 'reset':
        req.socket.resetAndDestroy()
        return
      case 'hang-body':
      case 'cut-body':
      case 'truncated-json':
        this.sendFaultyFile(req, res, url, fault.kind).catch(() => res.destroy())
    }
  }

  private async sendFaultyFile(req: IncomingMessage, res: ServerResponse, url: URL, kind: 'hang-body' | 'cut-body' | 'truncated-json'): Promise<void> {
    const resolved = this.resolveStorage(req, url)
    if (!resolved.ok) return sendStorageError(res, resolved.status, resolved.code, resolved.message)
    const file = await this.archiveFile(resolved.month)
    const half = await firstBytes(file.open(), Math.floor(file.size / 2))
    if (res.destroyed) return
    // truncated-json: a complete response of half the file; the others announce the whole of it.
    res.writeHead(200, {...storageHeaders(), 'Content-Length': kind === 'truncated-json' ? half.length : file.size})
    if (kind === 'truncated-json') res.end(half)
    else if (kind === 'hang-body') res.write(half)
    else res.write(half, () => req.socket.destroy())
  }

  private async answerStorage(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const resolved = this.resolveStorage(req, url)
    if (!resolved.ok) return sendStorageError(res, resolved.status, resolved.code, resolved.message)
    let file: ArchiveFile
    try {
      file = await this.archiveFile(resolved.month)
    } catch {
      return sendStorageError(res, 500, 'InternalError', 'We encountered an internal error. Please try again.')
    }
    if (res.destroyed) return
    res.writeHead(200, {...storageHeaders(), 'Content-Length': file.size, ETag: `"${file.checksum.slice(0, 32)}"`})
    if (req.method === 'HEAD') return void res.end()
    await writeChunks(res, file.open())
    res.end()
  }

  /** The month a storage request may have, or the S3 error it gets. */
  private resolveStorage(req: IncomingMessage, url: URL): StorageResolution {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      return {ok: false, status: 405, code: 'MethodNotAllowed', message: 'The specified method is not allowed against this resource.'}
    }
    const match = STORAGE_ROUTE.exec(url.pathname)
    if (!match) return {ok: false, status: 404, code: 'NoSuchKey', message: 'The specified key does not exist.'}
    const query = url.searchParams
    const [signature, date, expires] = ['X-Amz-Signature', 'X-Amz-Date', 'X-Amz-Expires'].map(name => query.get(name))
    if (signature === null || date === null || expires === null) {
      return {ok: false, status: 403, code: 'AccessDenied', message: 'Query-string authentication requires the X-Amz-Signature, X-Amz-Date and X-Amz-Expires parameters.'}
    }
    if (!sameHex(signature, this.sign(url.pathname, date, expires))) {
      return {ok: false, status: 403, code: 'SignatureDoesNotMatch', message: 'The request signature we calculated does not match the signature you provided.'}
    }
    // Signed by this fake, so the date and expiry are its own.
    if (parseAmzDate(date) + Number(expires) * 1000 < this.now()) return {ok: false, status: 403, code: 'AccessDenied', message: 'Request has expired'}
    const month = match[2]
    if (!this.accounts.has(decodeAccount(match[1])) || !this.archiveMonths().includes(month)) {
      return {ok: false, status: 404, code: 'NoSuchKey', message: 'The specified key does not exist.'}
    }
    return {ok: true, month}
  }
}

function invalid(status: number, id: string, message: string): PageResult {
  return {ok: false, status, error: {id, message}}
}

async function listenOnLoopback(server: Server, port: number): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject)
      resolve()
    })
  })
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

/** A copy of `items` in a deterministic order that is never the order given (for two or more). */
function shuffled<T>(items: T[], random: () => number): T[] {
  const result = [...items]
  for (let i = result.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    ;[result[i], result[j]] = [result[j], result[i]]
  }
  // A short list may come out as it went in, which would hide a client relying on that order.
  if (result.length > 1 && result.every((item, i) => item === items[i])) result.push(...result.splice(0, 1))
  return result
}

function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}

function fileOfBytes(bytes: Uint8Array): ArchiveFile {
  return {
    size: bytes.length,
    checksum: sha256Hex(bytes),
    async *open() {
      for (let at = 0; at < bytes.length; at += STORAGE_CHUNK_BYTES) yield bytes.subarray(at, at + STORAGE_CHUNK_BYTES)
    },
  }
}

/** The checksum with its first hex digit changed: still 64 hex digits, never the right one. */
function corruptedChecksum(checksum: string): string {
  return (Number.parseInt(checksum[0], 16) ^ 1).toString(16) + checksum.slice(1)
}

/** S3's X-Amz-Date form: 20250601T000219Z. */
function amzDate(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}/, '').replace(/[-:]/g, '')
}

function parseAmzDate(date: string): number {
  const match = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(date)
  if (!match) return Number.NaN
  const [year, month, day, hours, minutes, seconds] = match.slice(1).map(Number)
  return Date.UTC(year, month - 1, day, hours, minutes, seconds)
}

/** Constant-time comparison, as a signature check should be. */
function sameHex(given: string, expected: string): boolean {
  const a = Buffer.from(given)
  const b = Buffer.from(expected)
  return a.length === b.length && timingSafeEqual(a, b)
}

function storageHeaders(): Record<string, string> {
  return {'Content-Type': 'application/gzip', 'x-amz-request-id': randomBytes(8).toString('hex').toUpperCase()}
}

function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, char => `&#${char.charCodeAt(0)};`)
}

/** An S3-style XML error. */
function sendStorageError(res: ServerResponse, status: number, code: string, message: string, extra: Record<string, string> = {}): void {
  const headers = storageHeaders()
  const body = Buffer.from(
    '<?xml version="1.0" encoding="UTF-8"?>\n' +
      `<Error><Code>${escapeXml(code)}</Code><Message>${escapeXml(message)}</Message><RequestId>${headers['x-amz-request-id']}</RequestId></Error>`,
  )
  res.writeHead(status, {...headers, 'Content-Type': 'application/xml', 'Content-Length': body.length, ...extra})
  res.end(body)
}

/** The first `count` bytes the chunks yield (fewer if they end first). */
async function firstBytes(chunks: AsyncIterable<Uint8Array>, count: number): Promise<Buffer> {
  const parts: Uint8Array[] = []
  let size = 0
  for await (const chunk of chunks) {
    if (size >= count) break
    const part = chunk.subarray(0, count - size)
    parts.push(part)
    size += part.length
  }
  return Buffer.concat(parts)
}

/** Resolves on 'drain' or 'close', whichever comes first, leaving no listener behind. */
function drained(res: ServerResponse): Promise<void> {
  return new Promise(resolve => {
    const done = () => {
      res.off('drain', done)
      res.off('close', done)
      resolve()
    }
    res.on('drain', done)
    res.on('close', done)
  })
}

/** Writes every chunk, waiting out back-pressure, and stops as soon as the client has gone. */
async function writeChunks(res: ServerResponse, chunks: AsyncIterable<Uint8Array>): Promise<void> {
  for await (const chunk of chunks) {
    if (res.destroyed) return
    if (!res.write(chunk)) await drained(res)
  }
}

/** Starts the fake on 127.0.0.1 (free ports unless `port` and `storagePort` are given). */
export async function startFakeHeroku(opts: FakeHerokuOptions = {}): Promise<FakeHeroku> {
  const fake = new FakeHerokuServer(opts)
  await fake.listen(opts.port ?? 0, opts.storagePort ?? 0)
  return fake
}
