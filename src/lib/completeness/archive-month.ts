import {type Kysely, sql} from 'kysely'

import {ArchiveChecksumMismatch, readArchiveEvents} from '../archives/archive-stream.js'
import {addDays, daysBetween, yesterdayUtc} from '../dates.js'
import {type EventRecord, type EventStore, ensurePartitions, eventRecord} from '../db/event-store.js'
import type {ArchiveStatus, Database} from '../db/schema.js'
import {
  ID_ONLY,
  SAMPLE_IDS,
  claimImportDays,
  createStaging,
  prepareStaging,
  recordImported,
  recordRecovered,
  roomForComparing,
  stagedPerDay,
  storeOnly,
  storeStaged,
  storedAmong,
} from '../db/staging-queries.js'
import type {ArchiveClient, ArchiveInfo} from '../heroku/archives.js'
import type {AuditEvent} from '../heroku/types.js'
import type {Logger} from '../logger.js'
import type {PaceClock} from '../output/deliver.js'
import type {OutputFormat} from '../output/format-event.js'
import {redact, safeErrorMessage} from '../secrets.js'
import {oneLine} from '../text.js'
import {writeStagedEvents} from './write-staged.js'

/*
 * A month held against Heroku's archive of it: the file is downloaded and hashed, inflated and
 * parsed as it streams, loaded into the staging table, then compared by id with the month's
 * stored SUCCESS days. Events only in the archive are stored (recovered) and written on stdout;
 * events only in the store are counted and named. With `fill`, days with no record at all are
 * recorded SUCCESS from the archive alone (archives import). All of it is one transaction, which
 * commits only once the checksum matched: a corrupt or cut download changes nothing.
 */

export interface ArchiveMonthDeps {
  db: Kysely<Database>
  store: EventStore
  archives: ArchiveClient
  output: NodeJS.WritableStream
  logger: Logger
  now?: () => Date
  paceClock?: PaceClock
}

export interface ArchiveMonthOptions {
  /** YYYY-MM */
  month: string
  /** Also record and store the covered days that have no record (archives import). */
  fill: boolean
  format: OutputFormat
  /** The first day the store keeps (EVENT_RETENTION_DAYS): earlier days are neither compared nor filled. */
  storeFrom?: string
  linesPerSecond?: number
  /** The archive as just listed; it is asked for again otherwise (its URL may have expired). */
  info?: ArchiveInfo
  signal?: AbortSignal
}

/** A month's result: its recorded status, or why it could not be checked (nothing recorded then). */
export type MonthOutcome = ArchiveStatus | 'no-archive' | 'failed'

export interface MonthResult {
  month: string
  outcome: MonthOutcome
  message: string
  archiveEvents: number
  daysCompared: number
  matched: number
  recovered: number
  onlyInStore: number
  notCollected: number
  importedDays: number
  importedEvents: number
  /** Some ids only in the store, with their day. */
  onlyInStoreSample: Array<{day: string; id: string}>
  coveredTo?: string
  checksum?: string
}

/** The month's first day, and the first day of the next. */
export function monthBounds(month: string): {first: string; next: string; last: string} {
  const [year, number] = month.split('-').map(Number)
  const next = number === 12 ? `${String(year + 1).padStart(4, '0')}-01-01` : `${String(year).padStart(4, '0')}-${String(number + 1).padStart(2, '0')}-01`
  return {first: `${month}-01`, next, last: addDays(next, -1)}
}

/**
 * The last day an archive covers: the month's last day, or (the current month's archive) the day
 * before the one it was made on, as it covers up to midnight UTC of that day.
 */
export function coveredTo(month: string, createdAt: Date): string {
  const {last} = monthBounds(month)
  const before = addDays(createdAt.toISOString().slice(0, 10), -1)
  return before < last ? before : last
}

function emptyResult(month: string, outcome: MonthOutcome, message: string): MonthResult {
  return {
    month,
    outcome,
    message,
    archiveEvents: 0,
    daysCompared: 0,
    matched: 0,
    recovered: 0,
    onlyInStore: 0,
    notCollected: 0,
    importedDays: 0,
    importedEvents: 0,
    onlyInStoreSample: [],
  }
}

interface MonthRecord {
  day: string
  status: string
  claim_token: string | null
}

/** The month's records by day; with `lock`, locked until the transaction ends. */
async function monthRecords(trx: Kysely<Database>, first: string, next: string, options: {lock?: boolean} = {}): Promise<Map<string, MonthRecord>> {
  const rows = await sql<MonthRecord>`
    SELECT process_date::text AS day, status, claim_token::text AS claim_token FROM audit_events_log
    WHERE process_date >= ${first}::date AND process_date < ${next}::date ORDER BY process_date ${options.lock ? sql`FOR UPDATE` : sql``}`.execute(trx)
  return new Map(rows.rows.map((row) => [row.day, row]))
}

/** A staged stand-in for an event the store holds: its day and id, nothing else (see ID_ONLY). */
function idOnly(record: EventRecord): EventRecord {
  return {...record, json: ID_ONLY, type: '', action: '', actorEmail: null, actorId: null, appName: null, appId: null, ownerEmail: null, teamName: null, ipAddress: null, account: null}
}

/** An event of the archive outside the days it is compared on: counted, not loaded. */
class Tally {
  outside = 0
  events = 0
}

/** The archive's events of [first, last], each on the UTC day of its created_at, as the store keeps them. */
function archiveRecords(events: readonly AuditEvent[], texts: readonly Buffer[], first: string, last: string, tally: Tally): EventRecord[] {
  const records: EventRecord[] = []
  for (let k = 0; k < events.length; k++) {
    tally.events++
    const created = typeof events[k].created_at === 'string' ? Date.parse(events[k].created_at) : Number.NaN
    const day = Number.isNaN(created) ? first : new Date(created).toISOString().slice(0, 10)
    // eventRecord refuses an event without an id or a real created_at, naming it: the month fails.
    const record = eventRecord(day, events[k], texts[k], tally.events)
    if (day < first || day > last) {
      tally.outside++
      continue
    }

    records.push(record)
  }

  return records
}

export async function checkArchiveMonth(deps: ArchiveMonthDeps, options: ArchiveMonthOptions): Promise<MonthResult> {
  const {db, store, archives, logger} = deps
  const {month} = options
  const now = deps.now?.() ?? new Date()
  let info: ArchiveInfo | undefined
  try {
    info = await archives.getArchive(month, options.signal)
  } catch (error) {
    return emptyResult(month, 'failed', `${month}: could not read the archive's details: ${safeErrorMessage(error)}`)
  }

  if (!info) return emptyResult(month, 'no-archive', `${month}: Heroku has no archive for this month (yet): nothing to check`)
  const {first, next} = monthBounds(month)
  // Never past yesterday: today is not over, whatever an archive claims.
  const coveredLast = [coveredTo(month, info.createdAt), yesterdayUtc(now)].sort()[0]
  if (coveredLast < first) return emptyResult(month, 'no-archive', `${month}: the archive covers no day of the month yet`)
  const from = options.storeFrom && options.storeFrom > first ? options.storeFrom : first
  const tally = new Tally()
  const counted = {...emptyResult(month, 'consistent', ''), coveredTo: coveredLast, checksum: info.checksum}
  const archive = info

  try {
    await ensurePartitions(db, [first])
    return await store.transaction(async (trx, append) => {
      await createStaging(trx)
      await roomForComparing(trx)
      // The month's records as the download starts: a day collected again meanwhile (its claim
      // token changed) is not compared at the end, as its events may have changed under us.
      const before = await monthRecords(trx, first, next)
      // Import: the covered days without a record are claimed now (their SUCCESS rows stay
      // invisible until the commit; a run claiming one meanwhile waits for it), so their events
      // can go straight into the store as they stream, never staged.
      const importing = options.fill ? await claimImportDays(trx, daysBetween(from, coveredLast).filter((day) => !before.has(day))) : []
      if (importing.length > 0) await sql`DELETE FROM audit_events WHERE day = ANY(${importing}::date[])`.execute(trx)
      const imported = new Map(importing.map((day) => [day, [] as string[]]))
      const importedIds = new Set<string>()
      const matched = new Map<string, number>()

      const download = await archives.openDownload(archive, {signal: options.signal})
      const reading = readArchiveEvents(download, {expectedChecksum: archive.checksum, signal: options.signal})
      // Every batch is provisional until the reader returns: only then has the checksum been checked.
      // The next batch is read and parsed while this one is compared and loaded (the database's
      // time and ours overlap); a batch that fails is left to the transaction's end, unawaited.
      let ahead = reading.next()
      let finished = false
      try {
        for (;;) {
          const step = await ahead
          if (step.done) {
            finished = true
            break
          }

          ahead = reading.next()
          ahead.catch(() => {})
          const records = archiveRecords(step.value.events, step.value.texts, from, coveredLast, tally)
          const toImport: EventRecord[] = []
          const toStage: EventRecord[] = []
          for (const record of records) {
            const ids = imported.get(record.day)
            if (!ids) {
              toStage.push(record)
            } else if (!importedIds.has(record.id)) {
              importedIds.add(record.id)
              ids.push(record.id)
              toImport.push(record)
            }
          }

          // What the store holds already is staged by its id alone: compared, never copied twice.
          const held = await storedAmong(trx, toStage.map((record) => record.id), first, next)
          for (const record of toStage) {
            if (held.has(record.id)) matched.set(record.day, (matched.get(record.day) ?? 0) + 1)
          }

          await append(toImport, 'audit_events')
          await append(toStage.map((record) => (held.has(record.id) ? idOnly(record) : record)))
        }
      } finally {
        // Left early (a failure): the reader is closed once its batch in flight is in, which ends the download.
        if (!finished) ahead.finally(() => (reading as AsyncGenerator<unknown, unknown>).return(undefined)).catch(() => {})
      }

      counted.archiveEvents = tally.events
      await prepareStaging(trx)
      // The month's records are locked until the commit: a day being collected meanwhile waits, or
      // (PROCESSING now, or collected again since the download began) is not compared.
      const locked = await monthRecords(trx, first, next, {lock: true})
      const compared = [...locked.values()]
        .filter((row) => row.status === 'SUCCESS' && row.day >= from && row.day <= coveredLast && !imported.has(row.day) && before.get(row.day)?.claim_token === row.claim_token)
        .map((row) => row.day)
      const onlyInStore = await storeOnly(trx, compared)
      const missing = await stagedPerDay(trx)
      const recoveredDays = compared.filter((day) => (missing.get(day) ?? 0) > 0)
      await storeStaged(trx, recoveredDays)
      for (const day of recoveredDays) await recordRecovered(trx, day, missing.get(day)!)
      for (const [day, ids] of imported) await recordImported(trx, day, ids)
      // Only the recovered events are written: imported days are whole days, reaching the sinks.
      await writeStagedEvents(trx, recoveredDays, deps.output, {format: options.format, linesPerSecond: options.linesPerSecond, paceClock: deps.paceClock, signal: options.signal})

      counted.daysCompared = compared.length
      counted.matched = [...matched.values()].reduce((sum, n) => sum + n, 0)
      counted.recovered = recoveredDays.reduce((sum, day) => sum + missing.get(day)!, 0)
      counted.onlyInStore = onlyInStore.reduce((sum, day) => sum + day.count, 0)
      counted.onlyInStoreSample = onlyInStore.flatMap((day) => day.sample.map((id) => ({day: day.day, id}))).slice(0, SAMPLE_IDS)
      counted.importedDays = imported.size
      counted.importedEvents = importedIds.size
      const done = new Set(compared)
      counted.notCollected = [...missing].filter(([day]) => !done.has(day)).reduce((sum, [, n]) => sum + n, 0)
      counted.outcome = counted.onlyInStore > 0 ? 'mismatch' : 'consistent'
      counted.message = monthMessage(counted, tally.outside)
      await recordMonth(trx, counted, archive)
      return counted
    }, 'audit_staged_events')
  } catch (error) {
    if (error instanceof ArchiveChecksumMismatch) {
      const message = `${month}: ${oneLine(error.message, 300)}; nothing was changed (download it again later: audit-logger archives verify --month ${month})`
      const failed = {...emptyResult(month, 'checksum-failed', message), coveredTo: coveredLast, checksum: archive.checksum}
      await recordMonth(db, failed, archive).catch((recordError: unknown) => logger.warn(`${month}: could not record the failed checksum: ${safeErrorMessage(recordError)}`))
      return failed
    }

    return emptyResult(month, 'failed', `${month}: ${oneLine(safeErrorMessage(error), 500)}; nothing was changed`)
  }
}

/** What a checked month comes to, in one line. */
function monthMessage(result: MonthResult, outside: number): string {
  const parts = [`${result.month}: ${result.outcome}: ${result.archiveEvents} archive event(s), ${result.daysCompared} stored day(s) compared, ${result.matched} matched`]
  if (result.recovered > 0) parts.push(`${result.recovered} recovered from the archive (stored and written)`)
  if (result.onlyInStore > 0) {
    const sample = result.onlyInStoreSample.slice(0, 3).map(({day, id}) => `${oneLine(id, 80)} (${day})`)
    parts.push(`${result.onlyInStore} only in the store, e.g. ${sample.join(', ')}`)
  }

  if (result.importedDays > 0) parts.push(`${result.importedDays} day(s) imported with ${result.importedEvents} event(s)`)
  if (result.notCollected > 0) parts.push(`${result.notCollected} archive event(s) on days not collected (audit-logger archives import --month ${result.month} fills days without a record)`)
  if (outside > 0) parts.push(`${outside} archive event(s) outside the days compared (another month, past the archive's cover, or before EVENT_RETENTION_DAYS)`)
  return parts.join('; ')
}

/** Records the month's result (one row per month, replaced each time it is checked). */
async function recordMonth(db: Kysely<Database>, result: MonthResult, info: ArchiveInfo): Promise<void> {
  const detail = oneLine(redact(result.message), 1000)
  const values = {
    month: result.month,
    status: result.outcome as ArchiveStatus,
    checksum: info.checksum,
    archive_created_at: info.createdAt,
    size: info.size,
    covered_to: result.coveredTo ?? null,
    archive_events: result.archiveEvents,
    days_compared: result.daysCompared,
    matched: result.matched,
    recovered: result.recovered,
    only_in_store: result.onlyInStore,
    not_collected: result.notCollected,
    imported_days: result.importedDays,
    imported_events: result.importedEvents,
    detail,
  }
  await db
    .insertInto('audit_archives')
    .values(values)
    .onConflict((oc) => oc.column('month').doUpdateSet({...values, verified_at: sql`now()`} as never))
    .execute()
}
