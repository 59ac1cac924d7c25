/**
 * A PostgreSQL wire proxy that passes everything through but can drop the server's
 * NotificationResponse ('A') messages: a stand-in for a middlebox that loses LISTEN/NOTIFY, such
 * as a pooler in transaction mode. Connect with ssl disabled (the server's messages are then all
 * typed: one byte, a length, a body).
 */
import {type Socket, connect, createServer} from 'node:net'

import {listenInFrontOf} from './helpers.js'

export interface NotificationDroppingProxy {
  /** The upstream URL with its host and port pointed at the proxy. */
  url: string
  dropNotifications: boolean
  close(): Promise<void>
}

export async function startNotificationDroppingProxy(upstreamUrl: string, dropNotifications = false): Promise<NotificationDroppingProxy> {
  const upstream = new URL(upstreamUrl)
  const sockets = new Set<Socket>()
  const state = {dropNotifications}

  const server = createServer((client) => {
    const toServer = connect(Number(upstream.port || 5432), upstream.hostname)
    for (const socket of [client, toServer]) {
      sockets.add(socket)
      socket.on('close', () => {
        sockets.delete(socket)
        client.destroy()
        toServer.destroy()
      })
      socket.on('error', () => {})
    }

    client.on('data', (chunk) => toServer.write(chunk))
    let pending = Buffer.alloc(0)
    toServer.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk])
      while (pending.length >= 5 && pending.length >= 1 + pending.readInt32BE(1)) {
        const message = pending.subarray(0, 1 + pending.readInt32BE(1))
        pending = pending.subarray(message.length)
        if (!(state.dropNotifications && message[0] === 'A'.charCodeAt(0))) client.write(message)
      }
    })
  })

  const url = await listenInFrontOf(server, upstreamUrl)
  return {
    url,
    get dropNotifications() {
      return state.dropNotifications
    },
    set dropNotifications(value: boolean) {
      state.dropNotifications = value
    },
    async close() {
      for (const socket of sockets) socket.destroy()
      await new Promise((resolve) => server.close(resolve))
    },
  }
}
