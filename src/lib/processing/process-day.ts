import {randomUUID} from 'node:crypto'

import type {Kysely} from 'kysely'

import {type ClaimRequest, claimDay, findDay, finishDay, heartbeat} from '../db/audit-log-repository.js'
import {type AppendEvents, type EventRecord, type EventStore, ensurePartitions, eventRecord, eventTexts} from '../db/event-store.js'
import type {AuditLogRow, Database} from '../db/schema.js'
import {queueDayForSinks} from '../db/sink-queries.js'
import type {AuditClient} from '../heroku/client.js'
import {HerokuApiError, accountProblem} from '../heroku/errors.js'
import type {AuditEvent} from '../heroku/types.js'
import type {Logger} from '../logger.js'
import {type DayFile, openDayFile} from '../output/day-file.js'
import {DeliveryStopped, OutputClosed, type PaceClock, deliverDay, pacedSeconds} from '../output/deliver.js'
import {LineEncoder, MAX_LOG_LINE_BYTES, type OutputFormat, type WholeEventAt, wholeEventNote} from '../output/format-event.js'
import {type Spool, openSpool} from '../output/spool.js'
import {redact, safeErrorMessage} from '../secrets.js'
import {DatabaseFailure, inDatabase, isDatabaseUnreachable, retryOnLostConnection} from './database-failure.js'
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
  /** Where the day's lines wait for the fence (default: memory, then an unlinked temporary file past 4 MB); tests swap it. */
  openSpool?: () => Promise<Spool>
  /** The clock that paces stdout (LOG_LINES_PER_SECOND); tests pass one that does not wait. */
  paceClock?: PaceClock
  /**
   * The event store (EVENT_STORE=on): the day's events are loaded into it while pages arrive, in
   * one transaction that also records SUCCESS, so they are stored exactly when the day is SUCCESS.
   * Without it, nothing is stored.
   */
  store?: EventStore
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
  /** With the store: the first day it keeps (EVENT_RETENTION_DAYS); earlier days are not stored. */
  storeFrom?: string
  /** LOG_LINES_PER_SECOND: the most event lines written on stdout per second; 0 or absent = unpaced. */
  linesPerSecond?: number
}

/** Paced output taking longer than this is announced on stderr, with how long it will take. */
const ANNOUNCE_PACE_AFTER_SECONDS = 10

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
  /** The day failed because the database could not be reached: a range starts no further day then. */
  databaseUnreachable?: boolean
  /** stdout's reader went away before the day was all written: a range starts no further day then. */
  outputClosed?: boolean
  /** SUCCESS with the event store on: the day's events are in it. */
  stored?: boolean
  /**
   * The API refused the token or the account (401, 402, 403, 404), not this day: what it said and
   * what to fix. A range starts no further day then, as each would get the same answer.
   */
  accountProblem?: string
}

/** Exit code for one or more outcomes: 0 done or skipped, 1 anything failed or lost. */
export function exitCodeFor(outcomes: DayOutcome[]): 0 | 1 {
  return outcomes.some((o) => o === 'failed' || o === 'error' || o === 'lost') ? 1 : 0
}

class ClaimLost extends Error {}

/**
 * Which events of a page are the first of their id in the day (`seen` holds the day's ids so far
 * and learns this page's): undefined when all are, the common case. A day's events are unique by
 * id, so an id the API sends twice (on two pages, or twice on one) is written and counted once.
 */
function firstOfTheirId(events: readonly AuditEvent[], seen: Set<string>): boolean[] | undefined {
  let keep: boolean[] | undefined
  for (let k = 0; k < events.length; k++) {
    const {id} = events[k]
    if (!seen.has(id)) {
      seen.add(id)
    } else {
      keep ??= Array.from({length: events.length}, () => true)
      keep[k] = false
    }
  }

  return keep
}

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

  const claim = await claimOrRelease(db, {day, token, staleAfterMinutes: options.staleAfterMinutes, force: options.force})
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
  let beat: NodeJS.Timeout | undefined
  const startBeating = () => {
    clearInterval(beat)
    beat = setInterval(() => {
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
  }

  let events = 0
  let pages = 0
  let file: DayFile | undefined
  let fileCommitted = false
  let spool: Spool | undefined
  let written = false
  const {store} = deps
  /**
   * Everything from the first page to the fenced SUCCESS, on `trx`: the store's transaction when
   * the store is on (then `append` loads each page into it), else the database itself.
   */
  const collect = async (trx: Kysely<Database>, append?: AppendEvents): Promise<DayResult> => {
    startBeating()
    events = 0
    pages = 0
    // A forced run (or one after a record was deleted) replaces what an earlier SUCCESS stored.
    if (append && claim.hasStoredEvents) await inDatabase(() => trx.deleteFrom('audit_events').where('day', '=', day).execute())
    if (options.outputDir) file = await (deps.openFile ?? openDayFile)(options.outputDir, day)
    // Each page is encoded to UTF-8 lines as it arrives and spooled off the JS heap; its parsed
    // objects are dropped at once. Only the ids stay (as strings), to drop duplicates and for the
    // digest, which sorts them.
    spool = await (deps.openSpool ?? (() => openSpool((reason) => logger.debug(`${day}: no temporary file (${reason}); the day waits in memory`))))()
    // Stdout is Logplex on a dyno: no line longer than MAX_LOG_LINE_BYTES. An event that would be
    // longer is written cut, its note saying where it is whole (see cutEventLine).
    const whole: WholeEventAt = append
      ? {kind: 'store'}
      : file
        ? {kind: 'file', path: file.path}
        : {kind: 'nowhere', why: store ? `${day} is before the days EVENT_RETENTION_DAYS keeps, and no --output-dir is set` : 'EVENT_STORE=off and no --output-dir is set'}
    const encoder = new LineEncoder(options.format, undefined, {maxBytes: MAX_LOG_LINE_BYTES, whole})
    // The file always holds whole JSON lines, whatever stdout's format: with --format json it
    // takes stdout's bytes, unless a line of the page was cut; then (and for text) its own encoder.
    let fileEncoder: LineEncoder | undefined
    let cut = 0
    const ids = new Set<string>()
    let duplicates = 0
    for await (const page of client.fetchDay(day, {signal})) {
      pages++
      const keep = firstOfTheirId(page.events, ids)
      const dropped = keep ? keep.filter((kept) => !kept).length : 0
      duplicates += dropped
      // The page goes to the store and to the spool at once; the store's promise is awaited below.
      let stored: Promise<void> | undefined
      if (append) {
        // Built here, outside inDatabase: an event the store cannot keep is not a database failure.
        const records = pageRecords(day, page.events, page.body, keep, events)
        stored = inDatabase(() => append(records))
        stored.catch(() => {})
      }

      events += page.events.length - dropped
      rateLimitRemaining = page.rateLimitRemaining ?? rateLimitRemaining
      const lines = encoder.encode(page.events, page.body, keep)
      cut += encoder.cut
      // The encoder's buffer is reused for the next page, so the gzip stream gets a copy.
      if (file) {
        const wholeLines = options.format === 'json' && encoder.cut === 0 ? lines : (fileEncoder ??= new LineEncoder('json')).encode(page.events, page.body, keep)
        await file.write(Buffer.from(wholeLines))
      }

      await spool.write(lines)
      await stored
      logger.debug(`${day}: page ${page.number}: ${page.events.length} events${dropped ? ` (${dropped} seen before)` : ''} (RateLimit-Remaining ${page.rateLimitRemaining ?? '?'})`)
    }

    if (duplicates > 0) logger.warn(`${day}: the API sent ${duplicates} event(s) whose id it had already sent that day; each id is written and counted once`)
    if (cut > 0) {
      logger.info(`${day}: ${cut} event(s) too long for one log line (over ${MAX_LOG_LINE_BYTES} bytes) written on stdout with their data cut; whole: ${wholeEventNote(whole, undefined)}`)
    }

    clearInterval(beat)
    // Inside the store's transaction a lost connection loses the transaction: no retry there.
    const idempotent = {idempotent: !append}
    // Check the fence before writing, so a run that lost its claim does not write a duplicate day.
    if (claimLost || !(await inDatabase(() => heartbeat(trx, day, token), idempotent))) throw new ClaimLost()
    // The file is renamed into place before the fenced finish, like stdout is written before it:
    // a crash in between leaves a complete file for a day that is not SUCCESS (the next run
    // replaces it), never a SUCCESS day whose file is missing, which nothing would ever redo.
    if (file) {
      await file.commit()
      fileCommitted = true
    }

    let outputClosed: OutputClosed | undefined
    const linesPerSecond = options.linesPerSecond ?? 0
    const seconds = pacedSeconds(events, linesPerSecond)
    if (seconds >= ANNOUNCE_PACE_AFTER_SECONDS) {
      logger.info(`${day}: writing ${events} lines at ${linesPerSecond}/s (~${seconds < 90 ? `${Math.round(seconds)} s` : `${Math.round(seconds / 60)} min`}; LOG_LINES_PER_SECOND)`)
    }

    // Paced, delivery can take many minutes. Without the store (no transaction), the heartbeat goes
    // on meanwhile, so the claim does not go stale and get taken over. With the store it must not:
    // the fence's heartbeat above ran inside the store's open transaction, which holds the row's
    // lock until it commits; a heartbeat on another connection would wait for that lock. Nor need
    // it: a takeover (claimDay's ON CONFLICT DO UPDATE), a reset or a cleanup needs that lock too,
    // so it waits until the SUCCESS commits (and then finds the day done) or rolls back.
    if (!append) startBeating()
    try {
      await deliverDay(spool, output, linesPerSecond > 0 ? {linesPerSecond, clock: deps.paceClock, signal} : undefined)
      written = true
    } catch (error) {
      // A reader that went away (`| head -1`) does not undo the collection when the day is whole
      // elsewhere (its file, or the store, committed with the SUCCESS below): it is recorded
      // SUCCESS and the report says stdout missed part of it. Otherwise the events reached nowhere
      // whole, so the day fails and is fetched again.
      if (!(error instanceof OutputClosed) || !(fileCommitted || append)) throw error
      outputClosed = error
    } finally {
      clearInterval(beat)
    }

    await spool.close()
    const digest = eventsDigest([...ids])
    const finished = () => finishDay(trx, {day, token, status: 'SUCCESS', eventsCount: events, errorMessage: null, eventsDigest: digest})
    if (!(await inDatabase(finished, idempotent))) throw new ClaimLost()
    // Queued for every sink in the same transaction: a day is stored exactly when it is queued.
    if (append) await inDatabase(() => queueDayForSinks(trx, day), idempotent)
    return result('success', {
      events,
      pages,
      attempt,
      digest,
      ...(file ? {file: file.path} : {}),
      ...(outputClosed ? {outputClosed: true} : {}),
      ...(append ? {stored: true} : {}),
    })
  }

  // Days before the retention window are not kept: retention would remove them at once.
  const storing = store && !(options.storeFrom && day < options.storeFrom) ? store : undefined
  if (store && !storing) logger.info(`${day}: not kept in the event store: it is before ${options.storeFrom}, the first day EVENT_RETENTION_DAYS keeps`)
  try {
    if (!storing) return await collect(db)
    // The month's partition is made before the day's transaction, which must not hold DDL's lock.
    await inDatabase(() => ensurePartitions(db, [day]), {idempotent: true})
    try {
      return await storing.transaction((trx, append) => collect(trx, append))
    } catch (error) {
      // The store's connection was lost mid-day (a failover, a killed backend): its transaction
      // went with it, and nothing reached stdout yet. The claim is still ours: fetch the day once
      // more, on a fresh connection; the fence decides, as always.
      if (written || claimLost || signal.aborted || !isDatabaseUnreachable(error instanceof DatabaseFailure ? error.reason : error)) throw error
      logger.warn(`${day}: lost the event store's connection (${safeErrorMessage(error)}); fetching the day again on a fresh one`)
      await spool?.close()
      if (file && !fileCommitted) await file.discard()
      file = undefined
      return await storing.transaction((trx, append) => collect(trx, append))
    }
  } catch (error) {
    clearInterval(beat)
    await spool?.close()
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
    // A signal that stops a paced delivery is a signal like one that stops the fetch: FAILED.
    const status = (error instanceof HerokuApiError && error.kind !== 'malformed') || error instanceof DeliveryStopped ? 'FAILED' : 'ERROR'
    const message =
      error instanceof DatabaseFailure
        ? error.describe()
        : error instanceof OutputClosed
          ? `${error.message} before the day's ${events} events were all written, and no --output-dir holds them: not delivered, so the day will be fetched again`
          : error instanceof DeliveryStopped
            ? `${error.message} (of ${events}), by a signal: not delivered whole, so the day will be fetched and written again`
            : redact(error instanceof Error ? error.message : String(error))
    const unreachable = error instanceof DatabaseFailure && error.unreachable ? {databaseUnreachable: true} : {}
    const account = accountProblem(error)
    let recorded: boolean
    try {
      recorded = await retryOnLostConnection(() => finishDay(db, {day, token, status, eventsCount: 0, errorMessage: message}))
    } catch (recordError) {
      const why = safeErrorMessage(recordError)
      const again = written ? ` (and writes its ${events} events again: they were written before the database went)` : ''
      const stays = `${day} stays PROCESSING until its heartbeat is ${options.staleAfterMinutes} min old, when the next run takes it over${again}`
      return result('error', {
        pages,
        attempt,
        databaseUnreachable: unreachable.databaseUnreachable ?? isDatabaseUnreachable(recordError),
        message: `${message}; the ${status} could not be recorded either${why === message || message.endsWith(why) ? '' : ` (${why})`}, so ${stays}`,
      })
    }

    if (!recorded) {
      // The SUCCESS may have committed with its answer lost (a connection killed at COMMIT).
      const row = await findDay(db, day).catch(() => undefined)
      if (row?.status === 'SUCCESS' && row.claim_token === token) {
        return result('success', {events: row.events_count ?? 0, pages, attempt, digest: row.events_digest ?? undefined, ...(store ? {stored: true} : {})})
      }

      return result('lost', {pages, attempt, message: `${message}; meanwhile the claim on ${day} was lost`})
    }

    const closed = error instanceof OutputClosed ? {outputClosed: true} : {}
    return result(status === 'FAILED' ? 'failed' : 'error', {pages, attempt, message, ...unreachable, ...closed, ...(account ? {accountProblem: account} : {})})
  }
}

/**
 * A page's events as the store keeps them (the first of each id only), each with its JSON text as
 * the API sent it. `before` is how many of the day's events came before this page, to name an
 * event the store cannot keep.
 */
function pageRecords(day: string, pageEvents: readonly AuditEvent[], body: Uint8Array | undefined, keep: boolean[] | undefined, before: number): EventRecord[] {
  const texts = eventTexts(pageEvents, body)
  const records: EventRecord[] = []
  for (let k = 0; k < pageEvents.length; k++) {
    if (!keep || keep[k]) records.push(eventRecord(day, pageEvents[k], texts[k], before + records.length + 1))
  }

  return records
}

/**
 * The claim, tried again on a fresh connection if its own was lost. If it still fails, the claim
 * may have committed without our hearing of it: the day is then released as ERROR under our token
 * (a no-op when it did not commit), so it is not left PROCESSING until it goes stale.
 */
async function claimOrRelease(db: Kysely<Database>, request: ClaimRequest): ReturnType<typeof claimDay> {
  try {
    return await retryOnLostConnection(() => claimDay(db, request))
  } catch (error) {
    const errorMessage = `not processed: the claim failed: ${safeErrorMessage(error)}`
    await finishDay(db, {day: request.day, token: request.token, status: 'ERROR', eventsCount: 0, errorMessage}).catch(() => {})
    throw error
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
