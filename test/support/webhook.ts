/**
 * A Slack-compatible incoming webhook, as a real loopback HTTP server: it takes `POST {"text": …}`
 * on its secret path and records each message. Its `mode` makes it answer like a healthy Slack
 * (200 "ok"), like one in trouble (any status with a body, e.g. 503, 429, 400), slowly (a delay
 * before the answer, or never), or not at all: `down()` closes the port (connection refused) until
 * `up()` opens the same port again.
 */
import {createServer, type IncomingMessage, type Server, type ServerResponse} from 'node:http'
import type {AddressInfo, Socket} from 'node:net'

/** A token with every character URL encoding changes: the webhook's path holds it, encoded. */
export const WEBHOOK_TOKEN = 'tok%/&?=+ en'

export type WebhookMode =
  | {kind: 'ok'}
  | {kind: 'status'; status: number; body?: string; headers?: Record<string, string>}
  /** Answers 200 after `ms`; with no ms, never (until the server closes). */
  | {kind: 'slow'; ms?: number}

export interface WebhookMessage {
  text: string
  /** The path it was posted to, as sent. */
  path: string
  contentType?: string
}

export interface TestWebhook {
  /** The full URL, its path holding WEBHOOK_TOKEN (encoded): what ALERT_WEBHOOK_URL is set to. */
  url: string
  /** 127.0.0.1:port */
  host: string
  /** Every message taken (answered 2xx), in order. */
  messages: WebhookMessage[]
  /** Every request received, whatever it was answered. */
  requests: number
  mode: WebhookMode
  /** The texts taken so far. */
  texts(): string[]
  /** Closes the port: requests are refused (ECONNREFUSED) until up(). */
  down(): Promise<void>
  /** Listens again on the same port (nothing if it listens). */
  up(): Promise<void>
  /** Forgets messages, counts, and sets mode back to ok. */
  reset(): void
  close(): Promise<void>
}

export async function startWebhook(): Promise<TestWebhook> {
  const sockets = new Set<Socket>()
  let server: Server | undefined
  let port = 0

  const hook: TestWebhook = {
    url: '',
    host: '',
    messages: [],
    requests: 0,
    mode: {kind: 'ok'},
    texts: () => hook.messages.map((m) => m.text),
    async down() {
      await stop()
    },
    async up() {
      await listen()
    },
    reset() {
      hook.messages = []
      hook.requests = 0
      hook.mode = {kind: 'ok'}
    },
    async close() {
      await stop()
    },
  }

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    hook.requests++
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    const mode = hook.mode
    if (mode.kind === 'status') {
      res.writeHead(mode.status, {'Content-Type': 'text/plain', ...mode.headers})
      res.end(mode.body ?? '')
      return
    }

    if (mode.kind === 'slow') {
      if (mode.ms === undefined) return
      await new Promise((resolve) => setTimeout(resolve, mode.ms))
    }

    if (req.method !== 'POST' || req.url !== new URL(hook.url).pathname) {
      res.writeHead(404, {'Content-Type': 'text/plain'}).end('no_service')
      return
    }

    let text: unknown
    try {
      text = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as {text?: unknown}).text
    } catch {
      text = undefined
    }

    if (typeof text !== 'string') {
      res.writeHead(400, {'Content-Type': 'text/plain'}).end('invalid_payload')
      return
    }

    hook.messages.push({text, path: req.url, contentType: req.headers['content-type']})
    res.writeHead(200, {'Content-Type': 'text/plain'}).end('ok')
  }

  function listen(): Promise<void> {
    if (server) return Promise.resolve()
    const created = createServer((req, res) => void handle(req, res).catch(() => res.destroy()))
    created.on('connection', (socket) => {
      sockets.add(socket)
      socket.on('close', () => sockets.delete(socket))
    })
    server = created
    return new Promise((resolve, reject) => {
      created.once('error', reject)
      created.listen(port, '127.0.0.1', () => {
        port = (created.address() as AddressInfo).port
        resolve()
      })
    })
  }

  async function stop(): Promise<void> {
    const closing = server
    server = undefined
    if (!closing) return
    for (const socket of sockets) socket.destroy()
    await new Promise<void>((resolve) => closing.close(() => resolve()))
  }

  await listen()
  hook.host = `127.0.0.1:${port}`
  hook.url = `http://${hook.host}/services/T0TEST/B0TEST/${encodeURIComponent(WEBHOOK_TOKEN)}`
  return hook
}
