import {randomUUID} from 'node:crypto'
import {once} from 'node:events'

import type {Kysely} from 'kysely'

import {claimDay, finishDay, heartbeat} from '../db/audit-log-repository.js'
import type {AuditLogRow, Database} from '../db/schema.js'
import type {AuditClient} from '../heroku/client.js'
import {HerokuApiError} from '../heroku/errors.js'
import type {Logger} from '../logger.js'
import {type DayFile, openDayFile} from '../output/day-file.js'
import {type OutputFormat, formatEvent} from '../output/format-event.js'
import {redact, safeErrorMessage} from '../secrets.js'
import {eventsDigest} from './events-digest.js'

export interface ProcessDayDeps {
  db: Kysely<Database>
  client: AuditClient
  /** Where events go, one line each: stdout in the CLI. */
  output: NodeJS.WritableStream
  logger: Logger
  now?: () => number
  newToken?: () => string
  /** Opens a day's output file; tests swap it to make writing fail. */
  openFile?: (dir: string, day: string) => Promise<DayFile>
}

export interface ProcessDayOptions {
  day: string
  format: OutputFormat
  force: boolean
  staleAfterMinutes: number
  heartbeatIntervalMs: number
  signal?: AbortSignal
  /** Also write the day, as gzipped JSON lines, to DIR/YYYY-MM-DD.ndjson.gz (atomically). */
  outputDir?: string
}

/**
 * success: fetched, written, recorded. failed/error: recorded FAILED/ERROR. done/busy: skipped
 * because the day is SUCCESS already or a live run holds it. lost: the claim was taken from us.
 */
export type DayOutcome = 'success' | 'failed' | 'error' | 'done' | 'busy' | 'lost'

export interface DayResult {
  day: string
  outcome: DayOutcome
  events: number
  pages: number
  durationMs: number
  attempt?: number
  message?: string
  /** SUCCESS only: the stored digest of the day's events (see events-digest.ts). */
  digest?: string
  /** SUCCESS with an output directory: where the day's file is. */
  file?: string
  /** RateLimit-Remaining from the last response of this day; absent when no request answered. */
  rateLimitRemaining?: number
}

/** Exit code for one or more outcomes: 0 done or skipped, 1 anything failed or lost. */
export function exitCodeFor(outcomes: DayOutcome[]): 0 | 1 {
  return outcomes.some((o) => o === 'failed' || o === 'error' || o === 'lost') ? 1 : 0
}

class ClaimLost extends Error {}

/**
 * The day job: claim → heartbeat → fetch every page → write → fenced finish.
 * Events are written only once the whole day is in, so a failed run writes nothing.
 */
export async function processDay(deps: ProcessDayDeps, options: ProcessDayOptions): Promise<DayResult> {
  const {db, client, output, logger} = deps
  const now = deps.now ?? Date.now
  const {day} = options
  const startedAt = now()
  const token = (deps.newToken ?? randomUUID)()
  let rateLimitRemaining: number | undefined
  const result = (outcome: DayOutcome, extra: Partial<DayResult> = {}): DayResult => ({
    day,
    outcome,
    events: 0,
    pages: 0,
    durationMs: now() - startedAt,
    ...(rateLimitRemaining === undefined ? {} : {rateLimitRemaining}),
    ...extra,
  })

  const claim = await claimDay(db, {day, token, staleAfterMinutes: options.staleAfterMinutes, force: options.force})
  if (!claim.claimed) return skipped(day, claim.current, result)

  const attempt = claim.row.attempts
  if (claim.previousStatus) {
    logger.info(`${day}: took over a ${claim.previousStatus} record (attempt ${attempt})`)
  } else {
    logger.debug(`${day}: claimed (attempt ${attempt})`)
  }

  // The heartbeat doubles as the fence's early warning: once the claim is gone, stop fetching.
  const stop = new AbortController()
  const signal = options.signal ? AbortSignal.any([options.signal, stop.signal]) : stop.signal
  let claimLost = false
  const beat = setInterval(() => {
    heartbeat(db, day, token).then(
      (held) => {
        if (!held && !claimLost) {
          claimLost = true
          stop.abort(new ClaimLost())
        }
      },
      (error: unknown) => logger.warn(`${day}: heartbeat failed: ${safeErrorMessage(error)}`),
    )
  }, options.heartbeatIntervalMs)
  beat.unref()

  let events = 0
  let pages = 0
  let file: DayFile | undefined
  let fileCommitted = false
  try {
    if (options.outputDir) file = await (deps.openFile ?? openDayFile)(options.outputDir, day)
    // Formatted lines only: the parsed objects of a page are dropped as soon as it is formatted.
    // The ids are kept (as strings) for the digest, which needs them sorted.
    const chunks: string[] = []
    const ids: string[] = []
    for await (const page of client.fetchDay(day, {signal})) {
      pages++
      events += page.events.length
      rateLimitRemaining = page.rateLimitRemaining ?? rateLimitRemaining
      const lines = page.events.map((event) => formatEvent(event, options.format)).join('')
      chunks.push(lines)
      for (const event of page.events) ids.push(event.id)
      // The file always holds JSON lines, whatever stdout's format; it streams to a temporary name.
      if (file) await file.write(options.format === 'json' ? lines : page.events.map((event) => formatEvent(event, 'json')).join(''))
      logger.debug(`${day}: page ${page.number}: ${page.events.length} events (RateLimit-Remaining ${page.rateLimitRemaining ?? '?'})`)
    }

    clearInterval(beat)
    // Check the fence before writing, so a run that lost its claim does not write a duplicate day.
    if (claimLost || !(await heartbeat(db, day, token))) throw new ClaimLost()
    // The file is renamed into place before the fenced finish, like stdout is written before it:
    // a crash in between leaves a complete file for a day that is not SUCCESS (the next run
    // replaces it), never a SUCCESS day whose file is missing, which nothing would ever redo.
    if (file) {
      await file.commit()
      fileCommitted = true
    }

    await writeAll(output, chunks)
    const digest = eventsDigest(ids)
    if (!(await finishDay(db, {day, token, status: 'SUCCESS', eventsCount: events, errorMessage: null, eventsDigest: digest}))) {
      throw new ClaimLost()
    }

    return result('success', {events, pages, attempt, digest, ...(file ? {file: file.path} : {})})
  } catch (error) {
    clearInterval(beat)
    if (file && !fileCommitted) await file.discard()
    if (error instanceof ClaimLost || claimLost) {
      return result('lost', {
        events,
        pages,
        attempt,
        message: `lost the claim on ${day}: its record was reset, cleaned up or taken over by another run meanwhile`,
      })
    }

    // A 429 that outlasted the retries means the account's pool is empty: report it as such, so a
    // range starts no further day (its failed responses carry no other reading).
    if (error instanceof HerokuApiError && error.details.status === 429) rateLimitRemaining = 0
    const status = error instanceof HerokuApiError && error.kind !== 'malformed' ? 'FAILED' : 'ERROR'
    const message = redact(error instanceof Error ? error.message : String(error))
    let recorded: boolean
    try {
      recorded = await finishDay(db, {day, token, status, eventsCount: 0, errorMessage: message})
    } catch (recordError) {
      return result('error', {pages, attempt, message: `${message}; and the failure could not be recorded: ${safeErrorMessage(recordError)}`})
    }

    if (!recorded) return result('lost', {pages, attempt, message: `${message}; meanwhile the claim on ${day} was lost`})
    return result(status === 'FAILED' ? 'failed' : 'error', {pages, attempt, message})
  }
}

function skipped(day: string, current: AuditLogRow | undefined, result: (o: DayOutcome, extra?: Partial<DayResult>) => DayResult): DayResult {
  if (current?.status === 'SUCCESS') {
    return result('done', {
      events: current.events_count ?? 0,
      message: `${day} is already SUCCESS with ${current.events_count ?? 0} events; use --force to fetch it again`,
    })
  }

  const heartbeatAt = current?.heartbeat_at ?? current?.updated_at
  return result('busy', {
    message: `${day} is being processed by another run (attempt ${current?.attempts ?? '?'}, last heartbeat ${heartbeatAt?.toISOString() ?? 'unknown'})`,
  })
}

/** Writes the chunks, honouring back-pressure so a slow reader never buffers the day twice. */
async function writeAll(output: NodeJS.WritableStream, chunks: string[]): Promise<void> {
  for (const chunk of chunks) {
    if (chunk && !output.write(chunk)) await once(output, 'drain')
  }
}
