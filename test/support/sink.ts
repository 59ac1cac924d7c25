/**
 * A loopback HTTP intake standing in for a SIEM (an ndjson collector or Splunk's HTTP Event
 * Collector): it records every request it accepts, and can be scripted to answer 503, 429 with
 * Retry-After, 400, 413, to be slow, to hang, or to be down (not listening at all, so a
 * connection is refused) and come back on the same port.
 *
 * Started by hand too: `npx tsx test/support/sink.ts [port]` prints each event it receives.
 */
import {createServer, type IncomingMessage, type Server, type ServerResponse} from 'node:http'
import type {AddressInfo, Socket} from 'node:net'
import {fileURLToPath} from 'node:url'
import {gunzipSync} from 'node:zlib'

export interface ReceivedRequest {
  headers: IncomingMessage['headers']
  body: string
  /** The body's records, one JSON object per line. */
  records: unknown[]
}

/** One answer: a status (with headers, a body, after a delay), or 'hang' (never answers). */
export type SinkAnswer = {status: number; body?: string; headers?: Record<string, string>; delayMs?: number} | 'hang'

export interface SinkServer {
  url: string
  /** Requests answered 2xx, in order. */
  accepted: ReceivedRequest[]
  /** Every request, whatever it was answered. */
  requests: ReceivedRequest[]
  /** Answers for the next requests, in order; once used up, 200. */
  script(...answers: SinkAnswer[]): void
  /** What every request gets once the script is used up (default 200). */
  fallback: SinkAnswer
  /** The ids of the events accepted, in order (ndjson or HEC records alike). */
  acceptedIds(): string[]
  /** Stops listening: connections are refused until `up`. */
  down(): Promise<void>
  /** Listens again on the same port. */
  up(): Promise<void>
  close(): Promise<void>
}

function eventOf(record: unknown): {id?: string} {
  const value = record as {event?: unknown; id?: string}
  return (typeof value.event === 'object' && value.event !== null ? value.event : value) as {id?: string}
}

export async function startSink(port = 0): Promise<SinkServer> {
  const queue: SinkAnswer[] = []
  const sockets = new Set<Socket>()
  const sink: SinkServer = {
    url: '',
    accepted: [],
    requests: [],
    fallback: {status: 200, body: '{"text":"Success","code":0}'},
    script: (...answers) => queue.push(...answers),
    acceptedIds: () => sink.accepted.flatMap((request) => request.records.map((record) => String(eventOf(record).id))),
    down: async () => {
      await new Promise<void>((resolve) => server.close(() => resolve()))
      for (const socket of sockets) socket.destroy()
    },
    up: () => listen(boundPort),
    close: async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => (server.listening ? server.close(() => resolve()) : resolve()))
    },
  }

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    let raw = Buffer.concat(chunks)
    if (req.headers['content-encoding'] === 'gzip') raw = gunzipSync(raw)
    const body = raw.toString('utf8')
    const records = body
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as unknown)
    const request = {headers: req.headers, body, records}
    sink.requests.push(request)
    const answer = queue.shift() ?? sink.fallback
    if (answer === 'hang') return
    if (answer.delayMs) await new Promise((resolve) => setTimeout(resolve, answer.delayMs))
    if (answer.status >= 200 && answer.status < 300) sink.accepted.push(request)
    res.writeHead(answer.status, {'Content-Type': 'application/json', ...answer.headers})
    res.end(answer.body ?? '')
  }

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      res.writeHead(500)
      res.end(String(error))
    })
  })
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })

  let boundPort = port
  const listen = (at: number) =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(at, '127.0.0.1', () => {
        server.off('error', reject)
        boundPort = (server.address() as AddressInfo).port
        resolve()
      })
    })
  await listen(port)
  sink.url = `http://127.0.0.1:${boundPort}/services/collector/event`
  return sink
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const sink = await startSink(Number(process.argv[2] ?? 8088))
  console.error(`loopback sink listening: SINK_URL=${sink.url}`)
  let seen = 0
  setInterval(() => {
    for (const id of sink.acceptedIds().slice(seen)) console.log(id)
    seen = sink.acceptedIds().length
  }, 500)
}
