import type {Kysely} from 'kysely'

import type {Database} from '../db/schema.js'
import {stagedEvents} from '../db/staging-queries.js'
import type {AuditEvent} from '../heroku/types.js'
import {type PaceClock, deliverDay} from '../output/deliver.js'
import {LineEncoder, MAX_LOG_LINE_BYTES, type OutputFormat} from '../output/format-event.js'
import {openSpool} from '../output/spool.js'

export interface WriteStagedOptions {
  format: OutputFormat
  linesPerSecond?: number
  paceClock?: PaceClock
  signal?: AbortSignal
}

/**
 * Writes the staged events of `days` (late or recovered ones, just stored) on `output` like any
 * event (Logplex-safe lines, paced by LOG_LINES_PER_SECOND), oldest first. They wait in a spool
 * until all are read, as a day's lines do, so the output is never a half-read batch. Returns how
 * many were written.
 */
export async function writeStagedEvents(trx: Kysely<Database>, days: readonly string[], output: NodeJS.WritableStream, options: WriteStagedOptions): Promise<number> {
  const encoder = new LineEncoder(options.format, undefined, {maxBytes: MAX_LOG_LINE_BYTES, whole: {kind: 'store'}})
  const spool = await openSpool()
  let written = 0
  try {
    for await (const batch of stagedEvents(trx, days)) {
      const events = batch.map((row) => JSON.parse(row.json) as AuditEvent)
      // The source's own bytes, so a JSON line is the event exactly as it was sent.
      const body = Buffer.from(`[${batch.map((row) => row.json).join(',')}]`)
      await spool.write(encoder.encode(events, body))
      written += batch.length
    }

    if (written > 0) {
      const paced = options.linesPerSecond ? {linesPerSecond: options.linesPerSecond, clock: options.paceClock, signal: options.signal} : undefined
      await deliverDay(spool, output, paced)
    }
  } finally {
    await spool.close()
  }

  return written
}
