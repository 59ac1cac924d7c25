import {randomInt} from 'node:crypto'

import {type Kysely, sql} from 'kysely'

import {ArchiveChecksumMismatch, readArchiveEvents} from '../archives/archive-stream.js'
import {addDays, daysBetween, yesterdayUtc} from '../dates.js'
import {type EventRecord, type EventStore, ensurePartitions, eventIdentity, eventRecord, onServer, partitionExists, partitionOf} from '../db/event-store.js'
import type {ArchiveStatus, Database} from '../db/schema.js'
import {
  ID_ONLY,
  SAMPLE_IDS,
  claimImportDays,
  createStaging,
  dedupeStaged,
  attachMonthTable,
  compareMonth,
  dropStoredMeanwhile,
  newMonthTable,
  recordImported,
  recordRecovered,
  roomForComparing,
  stagedPerDay,
  storeStaged,
  storedDigests,
  storedIdsOf,
} from '../db/staging-queries.js'
import type {ArchiveClient, ArchiveInfo} from '../heroku/archives.js'
import type {AuditEvent} from '../heroku/types.js'
import type {Logger} from '../logger.js'
import type {PaceClock} from '../output/deliver.js'
import type {OutputFormat} from '../output/format-event.js'
import {redact, safeErrorMessage} from '../secrets.js'
import {oneLine} from '../text.js'
import {type Fingerprint, type IdFingerprints, fingerprint, idFingerprints} from './id-fingerprints.js'
import {writeStagedEvents} from './write-staged.js'

/** Events per batch read from the archive: small, so a batch's parsed events die young, before a collection promotes them. */
const BATCH_EVENTS = 250
/** Events loaded into one table before switching to the other, when a month both imports and compares. */
const RUN_EVENTS = 4000

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
  /** How ids are fingerprinted (id-fingerprints.ts); a test passes a colliding one. */
  fingerprint?: (id: string, seed: number) => Fingerprint
  /** How often a long month says on stderr how far it got (default PROGRESS_EVERY_MS). */
  progressEveryMs?: number
}

/** A month of millions of events takes minutes: a line this often says it is moving. */
export const PROGRESS_EVERY_MS = 10_000

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
function idOnly(day: string, id: string, createdAt: string): EventRecord {
  return {day, id, json: ID_ONLY, createdAt, type: '', action: '', actorEmail: null, actorId: null, appName: null, appId: null, ownerEmail: null, teamName: null, ipAddress: null, account: null}
}

/** What is known of the month's events as they stream: counted here, loaded by the caller. */
class Tally {
  /** Events outside the days compared or filled: counted, not loaded. */
  outside = 0
  events = 0
  /** Staged ids that may repeat an earlier one (a fingerprint seen before). */
  repeats = 0
  /** The same, of the ids loaded into a new month's table. */
  importRepeats = 0
}

/** Where each event of the archive goes: straight into the store (a day being imported), or staged for the comparison. */
interface Routing {
  from: string
  last: string
  /** The days being imported. */
  importing: ReadonlySet<string>
  /**
   * Ids already imported into an existing partition: an archive listing an event twice stores it
   * once. A new month's table is deduplicated once loaded instead, when `imported` saw a repeat.
   */
  importedIds?: Set<string>
  imported: IdFingerprints
  /** The ids the store held on the month's days as the download began. */
  held: IdFingerprints
  /** The fingerprint both sets use (seeded per run). */
  print: (id: string) => Fingerprint
  /** The ids staged so far: a repeat means the staging table may need deduplicating. */
  staged: IdFingerprints
}

/**
 * Sorts a batch of the archive's events, each on the UTC day of its created_at as the store keeps
 * them. Each event is turned at once into the one row it needs, so the parsed batch can be dropped
 * young: an event the store holds is staged by its id alone, and only the rest are read whole.
 */
function routeBatch(events: readonly AuditEvent[], texts: readonly Buffer[], routing: Routing, tally: Tally): {toImport: EventRecord[]; toStage: EventRecord[]} {
  const toImport: EventRecord[] = []
  const toStage: EventRecord[] = []
  for (let k = 0; k < events.length; k++) {
    tally.events++
    // eventIdentity refuses an event without an id or a real created_at, naming it: the month fails.
    const position = tally.events
    const identity = eventIdentity(events[k], () => `event ${position} of the archive`)
    const {id, createdAt} = identity
    const day = createdAt.slice(0, 10)
    if (day < routing.from || day > routing.last) {
      tally.outside++
    } else if (routing.importing.has(day)) {
      if (routing.importedIds) {
        if (routing.importedIds.has(id)) continue
        routing.importedIds.add(id)
      } else {
        const print = routing.print(id)
        if (routing.imported.has(print)) tally.importRepeats++
        routing.imported.add(print)
      }

      toImport.push(eventRecord(day, events[k], texts[k], tally.events, identity))
    } else {
      const print = routing.print(id)
      if (routing.staged.has(print)) tally.repeats++
      routing.staged.add(print)
      if (routing.held.has(print)) {
        toStage.push(idOnly(day, id, createdAt))
      } else {
        toStage.push(eventRecord(day, events[k], texts[k], tally.events, identity))
      }
    }
  }

  return {toImport, toStage}
}

/** The ids the store holds on the month's days, as fingerprints; read a day at a time (one index scan each). */
async function heldIds(trx: Kysely<Database>, first: string, last: string, print: (id: string) => Fingerprint): Promise<IdFingerprints> {
  const held = idFingerprints()
  for (const day of daysBetween(first, last)) for (const id of await storedIdsOf(trx, day)) held.add(print(id))
  return held
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

  if (!info) {
    // Heroku answers 404 for a wrong account too: the listing tells the two apart (it fails then).
    try {
      await archives.listArchives(options.signal)
    } catch (error) {
      return emptyResult(month, 'failed', `${month}: Heroku has no archive for this month, and its archives could not be listed: ${safeErrorMessage(error)}`)
    }

    return emptyResult(month, 'no-archive', `${month}: Heroku has no archive for this month (yet): nothing to check`)
  }

  const {first, next, last} = monthBounds(month)
  // Never past yesterday: today is not over, whatever an archive claims.
  const coveredLast = [coveredTo(month, info.createdAt), yesterdayUtc(now)].sort()[0]
  if (coveredLast < first) return emptyResult(month, 'no-archive', `${month}: the archive covers no day of the month yet`)
  const from = options.storeFrom && options.storeFrom > first ? options.storeFrom : first
  const tally = new Tally()
  const counted = {...emptyResult(month, 'consistent', ''), coveredTo: coveredLast, checksum: info.checksum}
  const archive = info
  const partition = partitionOf(first)

  try {
    // Importing a month the store has no partition for, over for more than a week (a new
    // deployment's past): its table is made, loaded without indexes and attached in the
    // transaction below. Otherwise the partition is made now: a run collecting a day of a recent
    // month meanwhile would have to wait for the import's commit to make it.
    const longOver = last < addDays(yesterdayUtc(now), -7)
    const newMonth = options.fill && longOver && !(await partitionExists(db, partition.name))
    if (!newMonth) await ensurePartitions(db, [first])
    return await store.transaction(async (trx, append) => {
      await createStaging(trx)
      // More memory for the comparison's hash join on a server; the embedded engine's memory is
      // this process's, and never given back (the join spills to its data directory instead).
      if (onServer(db)) await roomForComparing(trx)
      // The month's records as the download starts: a day collected again meanwhile (its claim
      // token changed) is not compared at the end, as its events may have changed under us.
      const before = await monthRecords(trx, first, next)
      // Import: the covered days without a record are claimed now (their SUCCESS rows stay
      // invisible until the commit; a run claiming one meanwhile waits for it), so their events
      // can go straight into the store as they stream, never staged.
      const importing = options.fill ? await claimImportDays(trx, daysBetween(from, coveredLast).filter((day) => !before.has(day))) : []
      // Made even with no day to import: recovered events go to the partition too.
      const monthTable = newMonth ? await newMonthTable(trx, partition) : undefined
      if (importing.length > 0 && !monthTable) await sql`DELETE FROM audit_events WHERE day = ANY(${importing}::date[])`.execute(trx)
      // Seeded per run: a fingerprint collision, however unlikely, is not met again when the month is checked again.
      const seed = randomInt(2 ** 31)
      const hash = deps.fingerprint ?? fingerprint
      const print = (id: string) => hash(id, seed)
      const routing: Routing = {
        from,
        last: coveredLast,
        importing: new Set(importing),
        importedIds: monthTable ? undefined : new Set(),
        imported: idFingerprints(),
        held: monthTable ? idFingerprints() : await heldIds(trx, first, last, print),
        print,
        staged: idFingerprints(),
      }

      const download = await archives.openDownload(archive, {signal: options.signal})
      // Every batch is provisional until the reader returns: only then has the checksum been checked.
      // Each batch is sorted and handed to the database before the next is parsed; the database
      // loads it while the next is read (append returns once the rows are sent).
      // Loading one table only (an import of a new month, a verify), each batch goes at once. Both
      // (a month partly collected, partly imported): in runs of RUN_EVENTS each, as every switch
      // of table ends one COPY and starts another.
      let importRows: EventRecord[] = []
      let stageRows: EventRecord[] = []
      const progressEvery = deps.progressEveryMs ?? PROGRESS_EVERY_MS
      let nextProgress = Date.now() + progressEvery
      let saidProgress = false
      for await (const batch of readArchiveEvents(download, {expectedChecksum: archive.checksum, signal: options.signal, batchEvents: BATCH_EVENTS})) {
        const {toImport, toStage} = routeBatch(batch.events, batch.texts, routing, tally)
        if (Date.now() >= nextProgress) {
          logger.info(`${month}: ${tally.events.toLocaleString('en')} archive event(s) read so far`)
          nextProgress = Date.now() + progressEvery
          saidProgress = true
        }

        importRows = importRows.length === 0 ? toImport : [...importRows, ...toImport]
        stageRows = stageRows.length === 0 ? toStage : [...stageRows, ...toStage]
        if (importRows.length >= RUN_EVENTS || (stageRows.length === 0 && importRows.length > 0)) {
          await append(importRows, monthTable ?? 'audit_events')
          importRows = []
        }

        if (stageRows.length >= RUN_EVENTS || (importRows.length === 0 && stageRows.length > 0)) {
          await append(stageRows)
          stageRows = []
        }
      }

      await append(importRows, monthTable ?? 'audit_events')
      await append(stageRows)

      counted.archiveEvents = tally.events
      if (saidProgress) logger.info(`${month}: all ${tally.events.toLocaleString('en')} archive event(s) read; ${monthTable ? "building the month's indexes and " : ''}comparing`)
      const duplicates = monthTable ? await attachMonthTable(trx, partition, {dedupe: tally.importRepeats > 0, sortMemory: onServer(db) ? '256MB' : undefined}) : 0
      if (duplicates > 0) logger.info(`${month}: ${duplicates} event(s) listed twice in the archive, stored once`)
      // A repeated id is removed here, the first kept; with none (the fingerprints say so exactly), the table is left as loaded.
      if (tally.repeats > 0) await dedupeStaged(trx)
      // The month's records are locked until the commit: a day being collected meanwhile waits, or
      // (PROCESSING now, or collected again since the download began) is not compared.
      const locked = await monthRecords(trx, first, next, {lock: true})
      const compared = [...locked.values()]
        .filter((row) => {
          // SUCCESS both when the download began and now, under the same claim: a day finished
          // meanwhile had events stored after the store's ids were read.
          const then = before.get(row.day)
          return row.status === 'SUCCESS' && then?.status === 'SUCCESS' && then.claim_token === row.claim_token && row.day >= from && row.day <= coveredLast && !routing.importing.has(row.day)
        })
        .map((row) => row.day)
      const {onlyInStore, matched, heldButAbsent} = await compareMonth(trx, compared, first, next)
      if (heldButAbsent > 0) {
        throw new Error(
          `${heldButAbsent} archive event(s) were taken for stored ones and are not (an id fingerprint collided, or the store lost events meanwhile): the month could not be compared exactly; check it again`,
        )
      }

      // Events stored since the store's ids were read (a settle re-read of a compared day) are not missing.
      await dropStoredMeanwhile(trx, compared, first, next)

      const missing = await stagedPerDay(trx)
      const recoveredDays = compared.filter((day) => (missing.get(day) ?? 0) > 0)
      await storeStaged(trx, recoveredDays)
      for (const day of recoveredDays) await recordRecovered(trx, day, missing.get(day)!)
      const imported = await storedDigests(trx, importing)
      for (const [day, stored] of imported) await recordImported(trx, day, stored)
      // Only the recovered events are written: imported days are whole days, reaching the sinks.
      await writeStagedEvents(trx, recoveredDays, deps.output, {format: options.format, linesPerSecond: options.linesPerSecond, paceClock: deps.paceClock, signal: options.signal})

      counted.daysCompared = compared.length
      const done = new Set(compared)
      counted.matched = matched
      counted.recovered = recoveredDays.reduce((sum, day) => sum + missing.get(day)!, 0)
      counted.onlyInStore = onlyInStore.reduce((sum, day) => sum + day.count, 0)
      counted.onlyInStoreSample = onlyInStore.flatMap((day) => day.sample.map((id) => ({day: day.day, id}))).slice(0, SAMPLE_IDS)
      counted.importedDays = importing.length
      counted.importedEvents = [...imported.values()].reduce((sum, day) => sum + day.count, 0)
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
