/**
 * A counting proxy for PostgreSQL's wire protocol: the process under test connects to it instead
 * of the server, every byte is passed through unchanged, and each statement the client sends is
 * counted by its SQL text. What it counts, exactly:
 *
 * - a statement: an Execute ('E') of the extended protocol (pg's parameterized queries) or a
 *   simple Query ('Q'); a simple Query holding several statements separated by ';' counts once;
 * - a round trip: a Sync ('S') or a simple Query, each of which waits for the server's answer.
 *
 * The SQL of an Execute is the text of the Parse ('P') before it on that connection (pg sends
 * unnamed statements: Parse, Bind, Describe, Execute, Sync).
 */
import {type Server, type Socket, connect, createServer} from 'node:net'

import {listenInFrontOf} from '../test/support/helpers.js'

export interface StatementCount {
  sql: string
  count: number
}

export interface PgCounter {
  /** postgres://… URL pointing at the proxy, same user and database as `upstreamUrl`. */
  url: string
  statements(): StatementCount[]
  totals(): {statements: number; roundTrips: number; connections: number}
  reset(): void
  close(): Promise<void>
}

/** Whitespace folded, so the same statement from different call sites counts as one. */
function normalize(sql: string): string {
  return sql.replaceAll(/\s+/g, ' ').trim()
}

export async function startPgCounter(upstreamUrl: string): Promise<PgCounter> {
  const upstream = new URL(upstreamUrl)
  const counts = new Map<string, number>()
  let roundTrips = 0
  let connections = 0
  const sockets = new Set<Socket>()

  const count = (sql: string) => counts.set(sql, (counts.get(sql) ?? 0) + 1)

  const server: Server = createServer((client) => {
    connections++
    sockets.add(client)
    const server = connect(Number(upstream.port || 5432), upstream.hostname)
    sockets.add(server)
    // Bytes pass on at once, as on a direct connection: with Nagle's algorithm a message that
    // reaches the proxy in pieces (COPY's data, its CopyDone) waits for the server's delayed ACK,
    // 40 ms a time, which the client never pays without the proxy.
    client.setNoDelay(true)
    server.setNoDelay(true)
    client.on('close', () => {
      sockets.delete(client)
      server.destroy()
    })
    server.on('close', () => {
      sockets.delete(server)
      client.destroy()
    })
    client.on('error', () => server.destroy())
    server.on('error', () => client.destroy())
    server.on('data', (chunk) => client.write(chunk))

    let pending: Buffer = Buffer.alloc(0)
    let started = false
    let lastParse = ''
    client.on('data', (chunk: Buffer) => {
      server.write(chunk)
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk])
      for (;;) {
        if (!started) {
          // The startup packet (and an SSLRequest before it) has no type byte: length, then body.
          if (pending.length < 8) return
          const length = pending.readInt32BE(0)
          if (pending.length < length) return
          const code = pending.readInt32BE(4)
          // 80877103: SSLRequest, 80877104: GSSENCRequest; the real startup follows them.
          if (code !== 80_877_103 && code !== 80_877_104) started = true
          pending = pending.subarray(length)
          continue
        }

        if (pending.length < 5) return
        const type = String.fromCharCode(pending[0])
        const length = pending.readInt32BE(1)
        if (pending.length < 1 + length) return
        const body = pending.subarray(5, 1 + length)
        pending = pending.subarray(1 + length)
        if (type === 'P') {
          const nameEnd = body.indexOf(0)
          lastParse = normalize(body.toString('utf8', nameEnd + 1, body.indexOf(0, nameEnd + 1)))
        } else if (type === 'E') {
          count(lastParse)
        } else if (type === 'S') {
          roundTrips++
        } else if (type === 'Q') {
          count(normalize(body.toString('utf8', 0, body.length - 1)))
          roundTrips++
        }
      }
    })
  })

  const url = await listenInFrontOf(server, upstreamUrl)

  return {
    url,
    statements: () => [...counts].map(([sql, n]) => ({sql, count: n})).sort((a, b) => b.count - a.count),
    totals: () => ({statements: [...counts.values()].reduce((a, b) => a + b, 0), roundTrips, connections}),
    reset() {
      counts.clear()
      roundTrips = 0
      connections = 0
    },
    async close() {
      for (const socket of sockets) socket.destroy()
      await new Promise((resolve) => server.close(resolve))
    },
  }
}
