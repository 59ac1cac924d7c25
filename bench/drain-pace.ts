/**
 * Benchmark `drain-pace`: how many log lines a drain-like consumer takes per second, to back the
 * default LOG_LINES_PER_SECOND on a dyno (200). It copies what a Logplex HTTP drain does (heroku/
 * logplex logplex_http_drain.erl): one request at a time, each a batch of syslog-framed messages
 * of about 100 KB (http_drain_target_bytes 102400), the next sent once the answer is in. The
 * receiver is a loopback HTTP and HTTPS server that answers each batch after a set delay, standing
 * in for the network round trip and the SIEM's intake. Logplex itself cannot be measured here: the
 * figures show the formula (lines per batch / time per batch) holds, and what it gives for
 * realistic answer times.
 */
import {execFileSync} from 'node:child_process'
import {mkdtempSync, readFileSync, rmSync} from 'node:fs'
import {type Server, createServer as createHttpServer, request as httpRequest} from 'node:http'
import {createServer as createHttpsServer, request as httpsRequest} from 'node:https'
import {type AddressInfo} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {generateEvents} from '../test/fake-heroku/events.js'
import {table} from './support.js'

const TARGET_BYTES = 102_400
const SECONDS = Number(process.env.BENCH_DRAIN_SECONDS ?? 3)

/** A self-signed certificate for 127.0.0.1, made with openssl; undefined where there is none. */
function certificate(): {key: Buffer; cert: Buffer} | undefined {
  const dir = mkdtempSync(join(tmpdir(), 'audit-logger-drain-'))
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-days', '1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], {stdio: 'ignore'})
    return {key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem'))}
  } catch {
    return undefined
  } finally {
    rmSync(dir, {recursive: true, force: true})
  }
}

/** The batches a drain would send: the events' JSON lines, each in an RFC 5424 frame, up to TARGET_BYTES a batch. */
function batches(): Array<{body: Buffer; count: number}> {
  const lines = generateEvents('2025-09-28', 5000).map((event) => JSON.stringify(event))
  const out: Array<{body: Buffer; count: number}> = []
  let parts: string[] = []
  let bytes = 0
  for (const line of lines) {
    const message = `<190>1 2025-09-29T02:00:01.123456+00:00 host app scheduler.1234 - ${line}`
    const frame = `${Buffer.byteLength(message)} ${message}`
    if (bytes + frame.length > TARGET_BYTES && parts.length > 0) {
      out.push({body: Buffer.from(parts.join('')), count: parts.length})
      parts = []
      bytes = 0
    }

    parts.push(frame)
    bytes += Buffer.byteLength(frame)
  }

  if (parts.length > 0) out.push({body: Buffer.from(parts.join('')), count: parts.length})
  return out
}

async function measure(tls: {key: Buffer; cert: Buffer} | undefined, delayMs: number, frames: Array<{body: Buffer; count: number}>): Promise<{linesPerSecond: number; linesPerBatch: number}> {
  let received = 0
  const handler = (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => {
    req.on('data', () => {})
    req.on('end', () => {
      received += Number(req.headers['logplex-msg-count'] ?? 0)
      setTimeout(() => res.writeHead(204).end(), delayMs)
    })
  }

  const server: Server = tls ? createHttpsServer(tls, handler) : createHttpServer(handler)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const {port} = server.address() as AddressInfo
  const send = tls ? httpsRequest : httpRequest
  const agent = new (tls ? (await import('node:https')).Agent : (await import('node:http')).Agent)({keepAlive: true, maxSockets: 1})
  const started = performance.now()
  let sent = 0
  let k = 0
  while (performance.now() - started < SECONDS * 1000) {
    const frame = frames[k++ % frames.length]
    await new Promise<void>((resolve, reject) => {
      const request = send({host: '127.0.0.1', port, method: 'POST', path: '/logs', agent, rejectUnauthorized: false, headers: {'content-type': 'application/logplex-1', 'logplex-msg-count': frame.count}}, (res) => {
        res.resume()
        res.on('end', resolve)
      })
      request.on('error', reject)
      request.end(frame.body)
    })
    sent += frame.count
  }

  const seconds = (performance.now() - started) / 1000
  agent.destroy()
  await new Promise<void>((resolve) => server.close(() => resolve()))
  if (received !== sent) throw new Error(`the drain received ${received} of ${sent} lines`)
  return {linesPerSecond: sent / seconds, linesPerBatch: sent / k}
}

export async function drainPace(out: (line?: string) => void): Promise<void> {
  out('## Drain pace: what a Logplex-like HTTP drain (one ~100 KB batch at a time) delivers, by its endpoint\'s answer time')
  const tls = certificate()
  const frames = batches()
  const rows: Array<Record<string, string | number>> = []
  for (const transport of tls ? ['http', 'https'] : ['http']) {
    for (const delayMs of [0, 50, 250, 500, 1000]) {
      const {linesPerSecond, linesPerBatch} = await measure(transport === 'https' ? tls : undefined, delayMs, frames)
      rows.push({transport, 'answer after (ms)': delayMs, 'lines/batch': linesPerBatch.toFixed(0), 'lines/s': Math.round(linesPerSecond), 'formula: lines/batch ÷ answer time': delayMs ? Math.round((linesPerBatch * 1000) / delayMs) : '-'})
    }
  }

  out(table(rows))
  out(`     ${SECONDS} s per figure, on loopback; the fake's events (${Math.round(frames[0].body.length / frames[0].count)} bytes a framed line). Logplex itself is not measured: its buffer (1,024 messages) and batch size are from its source.`)
}
