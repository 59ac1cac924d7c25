/**
 * A loopback fake of Heroku's Enterprise audit-trail API (`GET /enterprise-accounts/{id}/events`)
 * as a real HTTP server, for tests and benchmarks. It honours shared/heroku-audit-api.md: Bearer
 * auth, the versioned Accept header, exact-match filters, Range/Next-Range paging, the shared rate
 * limit and Heroku's error bodies. Tests can script faults (statuses, delays, hangs, broken bodies,
 * resets) per request and inspect every request received.
 */
import {randomUUID} from 'node:crypto'
import {createServer, STATUS_CODES} from 'node:http'
import type {IncomingMessage, Server, ServerResponse} from 'node:http'
import type {AddressInfo, Socket} from 'node:net'

import {isValidDay} from './events.js'
import type {AuditEvent} from './events.js'

export type {AuditEvent, AuditNamed, AuditUser} from './events.js'

export type Fault =
  /** Answer `status` with a Heroku error body; id/message default from the status (see ERRORS). */
  | {kind: 'status'; status: number; id?: string; message?: string; retryAfter?: string; headers?: Record<string, string>}
  /** Wait `ms`, then answer normally. */
  | {kind: 'delay'; ms: number}
  /** Accept the request and never answer (until the server closes). */
  | {kind: 'hang'}
  /** Send 200 headers and part of the body, then stall forever. */
  | {kind: 'hang-body'}
  /** 200, a complete HTTP response, but the JSON text is cut in half. */
  | {kind: 'truncated-json'}
  /** 200 announcing more bytes than are sent, then the socket is destroyed. */
  | {kind: 'cut-body'}
  /** Reset the connection without answering. */
  | {kind: 'reset'}
  /** 200 with `{"events": [...]}` instead of a bare array. */
  | {kind: 'not-array'}
  /** A normal page, but answered 206 with the request's own Range as Next-Range. */
  | {kind: 'repeat-next-range'}

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
  /** Default 0: a free port. */
  port?: number
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
  token: string
  /** Every request received, faulted ones included, in arrival order. */
  requests: RecordedRequest[]
  requestsForDay(day: string): RecordedRequest[]
  /**
   * Queue faults, consumed one per matching request, first in first out; once the queue is empty
   * requests are answered normally. With `day`, only requests for that day match these faults.
   */
  script(faults: Fault[], opts?: {day?: string}): void
  setEvents(day: string, events: AuditEvent[]): void
  setRateLimitRemaining(n: number): void
  /** Forget recorded requests and queued faults (events and rate limit stay as they are). */
  reset(): void
  /** Stop listening and destroy every open socket, hanging ones included. */
  close(): Promise<void>
}

export const DEFAULT_TOKEN = 'HRKU-fake-token-0000000000000000000000000000'
export const DEFAULT_ACCOUNTS = ['acme', '00000000-0000-4000-8000-000000000001']

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

const ROUTE_NOT_FOUND =
  'The requested API endpoint was not found. Are you using the right HTTP verb (i.e. `GET` vs. `POST`), ' +
  'and did you specify your intended version with the `Accept` header?'

const EVENTS_ROUTE = /^\/enterprise-accounts\/([^/]+)\/events$/
const ACCEPTED_VERSIONS = new Set(['3', '3.audit-trail'])

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

function todayUtc(): string {
  return new Date().toISOString().slice(0, 10)
}

/** One day's events as seen through one set of filters and one order. */
interface View {
  events: AuditEvent[]
  /** Built on the first Range that names an id. */
  indexById?: Map<string, number>
}

interface Page {
  /** The JSON array text. */
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
  /** RateLimit-Remaining as of this request's arrival (after taking its token). */
  remaining: number
  /** The pool was already empty when the request arrived. */
  rateLimited: boolean
}

class FakeHerokuServer implements FakeHeroku {
  url = ''
  readonly token: string
  readonly requests: RecordedRequest[] = []

  private readonly accounts: Set<string>
  private readonly pageSize: number
  private readonly maxPageSize: number
  private readonly paging: boolean
  private rateLimitRemaining: number
  private readonly days = new Map<string, AuditEvent[]>()
  /** day -> view key -> view; a day's entry is dropped when its events change. */
  private readonly views = new Map<string, Map<string, View>>()
  /** Each event's JSON text, so a page is a join rather than a fresh stringify of every event. */
  private readonly eventJson = new WeakMap<AuditEvent, string>()
  private faults: {fault: Fault; day?: string}[] = []
  private readonly sockets = new Set<Socket>()
  private readonly timers = new Set<NodeJS.Timeout>()
  private readonly server: Server
  private closing?: Promise<void>

  constructor(opts: FakeHerokuOptions) {
    this.token = opts.token ?? DEFAULT_TOKEN
    this.accounts = new Set(opts.accounts ?? DEFAULT_ACCOUNTS)
    this.pageSize = opts.pageSize ?? 200
    this.maxPageSize = opts.maxPageSize ?? 1000
    this.paging = opts.paging ?? true
    this.rateLimitRemaining = opts.rateLimitRemaining ?? 4500
    for (const [day, events] of Object.entries(opts.events ?? {})) this.setEvents(day, events)

    this.server = createServer((req, res) => this.handle(req, res))
    this.server.on('connection', socket => {
      this.sockets.add(socket)
      socket.on('close', () => this.sockets.delete(socket))
    })
  }

  async listen(port: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(port, '127.0.0.1', () => {
        this.server.off('error', reject)
        resolve()
      })
    })
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`
  }

  requestsForDay(day: string): RecordedRequest[] {
    return this.requests.filter(r => r.day === day)
  }

  script(faults: Fault[], opts: {day?: string} = {}): void {
    for (const fault of faults) this.faults.push({fault, day: opts.day})
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
  }

  setRateLimitRemaining(n: number): void {
    this.rateLimitRemaining = Math.max(0, Math.floor(n))
  }

  reset(): void {
    this.requests.length = 0
    this.faults = []
  }

  close(): Promise<void> {
    this.closing ??= new Promise<void>(resolve => {
      for (const timer of this.timers) clearTimeout(timer)
      this.timers.clear()
      // The callback runs once every connection has ended, which the destroys below guarantee.
      this.server.close(() => resolve())
      for (const socket of this.sockets) socket.destroy()
    })
    return this.closing
  }

  // --- request handling -------------------------------------------------------------------

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://fake-heroku.invalid')
    const query: Record<string, string> = {}
    for (const [name, value] of url.searchParams) query[name] ??= value
    const headers: Record<string, string | undefined> = {}
    for (const [name, value] of Object.entries(req.headers)) headers[name] = Array.isArray(value) ? value.join(', ') : value
    const recorded: RecordedRequest = {method: req.method ?? 'GET', path: url.pathname, query, headers, at: Date.now()}
    if (query.day !== undefined) recorded.day = query.day
    if (headers.range !== undefined) recorded.range = headers.range
    this.requests.push(recorded)

    // Every request takes a token from the pool, whatever comes of it.
    const rateLimited = this.rateLimitRemaining === 0
    if (!rateLimited) this.rateLimitRemaining--
    const exchange: Exchange = {req, res, url, remaining: this.rateLimitRemaining, rateLimited}

    const index = this.faults.findIndex(f => f.day === undefined || f.day === recorded.day)
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
      case 'truncated-json': {
        const full = Buffer.from(this.faultPage(ex).body)
        const half = full.subarray(0, Math.floor(full.length / 2))
        if (fault.kind === 'truncated-json') return this.send(ex, 200, half)
        // Announce the whole body but deliver half of it.
        res.writeHead(200, {...this.baseHeaders(ex), 'Content-Length': full.length})
        if (fault.kind === 'hang-body') res.write(half)
        else res.write(half, () => req.socket.destroy())
        return
      }
      case 'not-array':
        return this.send(ex, 200, `{"events":${this.faultPage(ex).body}}`)
      case 'repeat-next-range': {
        const page = this.faultPage(ex)
        const range = ex.req.headers.range ?? `id ..; max=${this.pageSize};`
        const extra: Record<string, string> = {'Next-Range': range, 'Accept-Ranges': 'id'}
        if (page.contentRange) extra['Content-Range'] = page.contentRange
        return this.send(ex, 206, page.body, extra)
      }
    }
  }

  /** The page the request would get if it were valid; an empty one if it is not. Body faults carry it. */
  private faultPage(ex: Exchange): Page {
    const result = this.resolvePage(ex)
    return result.ok ? result.page : {body: '[]'}
  }

  /** The normal behaviour: routing, auth, Accept, rate limit, account, parameters, then a page. */
  private answer(ex: Exchange): void {
    const {req, url} = ex
    const route = EVENTS_ROUTE.exec(url.pathname)
    if (!route) return this.sendError(ex, 404, {id: 'not_found', message: ROUTE_NOT_FOUND})
    if (req.method !== 'GET') {
      return this.sendError(ex, 405, {id: 'method_not_allowed', message: `${req.method} is not allowed here; use GET.`}, {Allow: 'GET'})
    }
    if (bearerToken(req.headers.authorization) !== this.token) return this.sendError(ex, 401, ERRORS[401])
    if (!acceptsHerokuJson(req.headers.accept)) return this.sendError(ex, 406, ERRORS[406])
    if (ex.rateLimited) return this.sendError(ex, 429, ERRORS[429])
    let account: string
    try {
      account = decodeURIComponent(route[1])
    } catch {
      account = ''
    }
    if (!this.accounts.has(account)) {
      return this.sendError(ex, 404, {id: 'not_found', message: "Couldn't find that enterprise account."})
    }

    const result = this.resolvePage(ex)
    if (!result.ok) return this.sendError(ex, result.status, result.error)
    const {page} = result
    const extra: Record<string, string> = {}
    if (this.paging) extra['Accept-Ranges'] = 'id'
    if (page.contentRange) extra['Content-Range'] = page.contentRange
    if (page.nextRange) extra['Next-Range'] = page.nextRange
    this.send(ex, page.nextRange ? 206 : 200, page.body, extra)
  }

  /** Validates the query and Range, and cuts the page they ask for. */
  private resolvePage(ex: Exchange): PageResult {
    const query = ex.url.searchParams
    const day = query.get('day') ?? todayUtc()
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
}

function invalid(status: number, id: string, message: string): PageResult {
  return {ok: false, status, error: {id, message}}
}

/** Starts the fake on 127.0.0.1 (a free port unless `port` is given). */
export async function startFakeHeroku(opts: FakeHerokuOptions = {}): Promise<FakeHeroku> {
  const fake = new FakeHerokuServer(opts)
  await fake.listen(opts.port ?? 0)
  return fake
}
