/**
 * A hostile or broken stand-in for the Heroku API, as a real loopback HTTP server. Where the fake
 * (test/fake-heroku) behaves like Heroku with scripted faults, this one answers whatever its
 * `behaviour` says: a body that stalls after the headers, a gzip bomb, a page far too big, a
 * Next-Range invented forever, the same ids on two pages, a 416 to any Range. It takes any token
 * and account, and records every request.
 */
import {createServer, type IncomingMessage, type ServerResponse} from 'node:http'
import type {AddressInfo, Socket} from 'node:net'
import {createGzip} from 'node:zlib'

export interface HostileRequest {
  /** The `day` query parameter. */
  day?: string
  /** The Range header as sent, if any. */
  range?: string
  at: number
}

/** Answers one request; `index` counts the requests the server has received, from 0. */
export type Behaviour = (request: HostileRequest, res: ServerResponse, index: number) => void | Promise<void>

export interface HostileApi {
  url: string
  token: string
  requests: HostileRequest[]
  /** What the next requests get. */
  behaviour: Behaviour
  /** Forgets the requests. */
  reset(): void
  /** Stops listening and destroys every socket, stalled ones included. */
  close(): Promise<void>
}

export const HOSTILE_TOKEN = 'HRKU-hostile-test-token-00000000000000000000'

/** A minimal valid event: the four fields the client requires, and an optional padding field. */
export function eventJson(day: string, n: number, pad = ''): string {
  return `{"id":"${idOf(n)}","type":"app","action":"update","created_at":"${day}T00:00:00Z"${pad ? `,"data":{"pad":"${pad}"}` : ''}}`
}

/** The id of event number `n`. */
export function idOf(n: number): string {
  return `00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`
}

function headers(extra: Record<string, string | number> = {}): Record<string, string | number> {
  return {'Content-Type': 'application/json', 'Request-Id': 'hostile-request', 'RateLimit-Remaining': 4000, ...extra}
}

/** 200 with the given JSON text. */
export function json(text: string, extra: Record<string, string> = {}): Behaviour {
  return (_request, res) => {
    const body = Buffer.from(text)
    res.writeHead(200, headers({'Content-Length': body.length, ...extra}))
    res.end(body)
  }
}

/** The headers and the first bytes of a page, then nothing, forever (until the server closes). */
export function stallAfterHeaders(): Behaviour {
  return (_request, res) => {
    res.writeHead(200, headers({'Content-Length': 100_000}))
    res.write('[')
  }
}

/**
 * A JSON array whose `inflated` bytes are whitespace (valid JSON: an empty array), sent gzipped:
 * about a thousandth of that on the wire. Compressed once, here, in 1 MiB pieces.
 */
export async function gzipBomb(inflated: number): Promise<Behaviour> {
  const gzip = createGzip({level: 9})
  const compressed: Buffer[] = []
  gzip.on('data', (chunk: Buffer) => compressed.push(chunk))
  const done = new Promise((resolve) => gzip.on('end', resolve))
  const spaces = Buffer.alloc(1024 * 1024, 0x20)
  gzip.write('[')
  for (let written = 0; written < inflated; written += spaces.length) {
    if (!gzip.write(spaces)) await new Promise((resolve) => gzip.once('drain', resolve))
  }

  gzip.end(']')
  await done
  const body = Buffer.concat(compressed)
  return (_request, res) => {
    res.writeHead(200, headers({'Content-Encoding': 'gzip', 'Content-Length': body.length}))
    res.end(body)
  }
}

/** A plain page of `count` events of about `eventBytes` each, streamed in pieces of 1000 events. */
export function hugePage(day: string, count: number, eventBytes: number): Behaviour {
  const pad = 'x'.repeat(Math.max(0, eventBytes - 120))
  return async (_request, res) => {
    res.writeHead(200, headers())
    for (let start = 0; start < count && !res.destroyed; start += 1000) {
      const piece: string[] = []
      for (let n = start; n < Math.min(count, start + 1000); n++) piece.push(eventJson(day, n, pad))
      const text = `${start === 0 ? '[' : ','}${piece.join(',')}`
      if (!res.write(text)) await new Promise((resolve) => res.once('drain', resolve))
    }

    res.end(']')
  }
}

/** Pages forever: each answer is a 206 with one new event and a Next-Range never seen before. */
export function endlessPages(day: string): Behaviour {
  return (_request, res, index) => {
    const body = Buffer.from(`[${eventJson(day, index)}]`)
    res.writeHead(206, headers({'Content-Length': body.length, 'Next-Range': `id ]${idOf(index)}..; max=1000;`}))
    res.end(body)
  }
}

/** The pages given, in turn: each a list of event numbers; every page but the last says more are to come. */
export function pages(day: string, numbers: number[][]): Behaviour {
  return (_request, res, index) => {
    const page = Math.min(index, numbers.length - 1)
    const body = Buffer.from(`[${numbers[page].map((n) => eventJson(day, n)).join(',')}]`)
    const more = page < numbers.length - 1
    const next: Record<string, string> = more ? {'Next-Range': `id ]page-${page}..; max=1000;`} : {}
    res.writeHead(more ? 206 : 200, headers({'Content-Length': body.length, ...next}))
    res.end(body)
  }
}

/** 416 to any request that carries a Range; without one, `otherwise`. */
export function refusingRange(otherwise: Behaviour): Behaviour {
  return (request, res, index) => {
    if (request.range === undefined) return otherwise(request, res, index)
    const body = Buffer.from(JSON.stringify({id: 'requested_range_not_satisfiable', message: 'Range is not supported here.'}))
    res.writeHead(416, headers({'Content-Length': body.length}))
    res.end(body)
  }
}

/** An error answer with the given body (any JSON value), e.g. a hostile `id`. */
export function errorAnswer(status: number, body: unknown, extra: Record<string, string> = {}): Behaviour {
  return (_request, res) => {
    const bytes = Buffer.from(JSON.stringify(body))
    res.writeHead(status, headers({'Content-Length': bytes.length, ...extra}))
    res.end(bytes)
  }
}

export async function startHostileApi(behaviour: Behaviour = json('[]')): Promise<HostileApi> {
  const requests: HostileRequest[] = []
  const sockets = new Set<Socket>()
  const api = {} as HostileApi
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://hostile.invalid')
    const request: HostileRequest = {at: Date.now()}
    const day = url.searchParams.get('day')
    if (day !== null) request.day = day
    if (req.headers.range !== undefined) request.range = req.headers.range
    const index = requests.push(request) - 1
    // A client that gives up mid-answer closes the socket; that is not the server's error.
    res.on('error', () => {})
    Promise.resolve(api.behaviour(request, res, index)).catch(() => res.destroy())
  })
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))

  let closing: Promise<void> | undefined
  Object.assign(api, {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    token: HOSTILE_TOKEN,
    requests,
    behaviour,
    reset: () => {
      requests.length = 0
    },
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve())
        for (const socket of sockets) socket.destroy()
      })
      return closing
    },
  })
  return api
}
