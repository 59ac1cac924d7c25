import {randomUUID} from 'node:crypto'

import pg from 'pg'

import type {DatabaseConfig} from '../config.js'
import type {Logger} from '../logger.js'
import {type PostgresTarget, describeDbError, sslOptions, withoutSslParams} from './connection.js'

/** The channel the 2025-10-04 migration's trigger notifies on every change to audit_events_log. */
export const CHANGES_CHANNEL = 'audit_events_log_changed'
/** The listener's own delivery checks on the channel (the trigger's payload is empty): not changes. */
const PROBE_PREFIX = 'probe:'

/**
 * Tells a cache whether audit_events_log may have changed since it last read it.
 * `version()` moves on every change; it is undefined while changes cannot be seen (listener
 * down), and then nothing may be served from memory.
 */
export interface ChangeFeed {
  version(): number | undefined
  /** A change this process made itself: seen at once, before its notification comes back. */
  changed(): void
  close(): Promise<void>
}

/**
 * For the embedded database: this process holds the data directory's lock, so no other process
 * can write, and its own writes are all the changes there are.
 */
export function ownChangesOnly(): ChangeFeed {
  let version = 0
  return {
    version: () => version,
    changed() {
      version++
    },
    close: async () => {},
  }
}

export interface ListenOptions {
  onDown?: (message: string) => void
  onUp?: () => void
  /** How often the listening connection is checked (a NOTIFY that must come back): a dead one must not look alive. */
  pingEveryMs?: number
  /** How long a ping (or any query on the listening connection) may take before it counts as lost. */
  pingTimeoutMs?: number
  /** First wait before reconnecting; doubles up to 30 s. */
  retryMs?: number
}

/**
 * LISTENs on a connection of its own. While it is down (server restart, pg_terminate_backend,
 * a failed ping) the version is undefined and it reconnects with backoff; coming back counts as a
 * change, since anything may have happened meanwhile.
 */
export function listenForChanges(target: PostgresTarget, options: ListenOptions = {}): ChangeFeed {
  const pingEveryMs = options.pingEveryMs ?? 15_000
  const firstRetryMs = options.retryMs ?? 500
  let version = 0
  let client: pg.Client | undefined
  let closed = false
  let retryMs = firstRetryMs
  let retryTimer: NodeJS.Timeout | undefined
  const pingTimeoutMs = options.pingTimeoutMs ?? 5000
  const probeId = randomUUID().slice(0, 8)
  let probes = 0

  /**
   * NOTIFYs the channel from the listening connection and waits for it to come back. Something
   * that loses notifications (a pooler in transaction mode, such as PgBouncer's) would otherwise
   * leave the cache serving an old table for good.
   */
  const probe = async (listening: pg.Client) => {
    const payload = `${PROBE_PREFIX}${probeId}:${++probes}`
    let onNotification: (message: pg.Notification) => void = () => {}
    let timer: NodeJS.Timeout | undefined
    const echoed = new Promise<void>((resolve, reject) => {
      onNotification = (message) => message.payload === payload && resolve()
      timer = setTimeout(
        () => reject(new Error(`a notification sent on the listening connection did not come back within ${pingTimeoutMs} ms (is DATABASE_URL a pooler in transaction mode?)`)),
        pingTimeoutMs,
      )
    })
    listening.on('notification', onNotification)
    try {
      await listening.query('SELECT pg_notify($1, $2)', [CHANGES_CHANNEL, payload])
      await echoed
    } finally {
      clearTimeout(timer)
      listening.off('notification', onNotification)
    }
  }

  const lose = (lost: pg.Client, error?: unknown) => {
    if (client !== lost) return // already handled (an 'error' is followed by an 'end')
    client = undefined
    version++
    lost.removeAllListeners('notification')
    lost.end().catch(() => {})
    if (closed) return
    options.onDown?.(error ? describeDbError(error, target) : 'the connection ended')
    scheduleConnect()
  }

  const scheduleConnect = () => {
    retryTimer = setTimeout(connect, retryMs)
    retryTimer.unref()
    retryMs = Math.min(retryMs * 2, 30_000)
  }

  const connect = async () => {
    retryTimer = undefined
    const next = new pg.Client({
      connectionString: withoutSslParams(target.url),
      ssl: sslOptions(target),
      application_name: 'audit-logger change listener',
      connectionTimeoutMillis: 5000,
      query_timeout: pingTimeoutMs,
      keepAlive: true,
    })
    next.on('error', (error) => lose(next, error))
    next.on('end', () => lose(next))
    next.on('notification', (message) => {
      if (!message.payload?.startsWith(PROBE_PREFIX)) version++
    })
    try {
      await next.connect()
      await next.query(`LISTEN ${CHANGES_CHANNEL}`)
      await probe(next)
    } catch (error) {
      next.removeAllListeners('end')
      next.end().catch(() => {})
      if (closed) return
      options.onDown?.(describeDbError(error, target))
      scheduleConnect()
      return
    }

    if (closed) {
      await next.end().catch(() => {})
      return
    }

    client = next
    version++
    retryMs = firstRetryMs
    options.onUp?.()
  }

  let pinging = false
  const pinger = setInterval(() => {
    const current = client
    if (!current || pinging) return // one ping at a time: a slow one is still timing out
    pinging = true
    probe(current)
      .catch((error) => lose(current, error))
      .finally(() => (pinging = false))
  }, pingEveryMs)
  pinger.unref()
  void connect()

  return {
    version: () => (client ? version : undefined),
    changed() {
      version++
    },
    async close() {
      closed = true
      clearInterval(pinger)
      if (retryTimer) clearTimeout(retryTimer)
      const current = client
      client = undefined
      // A server that stopped answering must not hold up a shutdown: wait a second at most.
      const waited = new Promise((resolve) => setTimeout(resolve, 1000).unref())
      await Promise.race([current?.end().catch(() => {}), waited])
    },
  }
}

/**
 * The feed for the configured database, saying on the log when caching stops and starts again
 * (once per outage, not once per retry).
 */
export function changeFeedFor(database: DatabaseConfig, logger: Logger): ChangeFeed {
  if (database.kind === 'embedded') return ownChangesOnly()
  let down = false
  return listenForChanges(database, {
    onDown(message) {
      if (!down) logger.warn(`status page: reading every request from the database while the change listener is down (${message})`)
      down = true
    },
    onUp() {
      if (down) logger.info('status page: change listener back; serving unchanged reads from memory again')
      down = false
    },
  })
}
