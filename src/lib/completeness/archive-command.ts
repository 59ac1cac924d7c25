import type {Kysely} from 'kysely'

import type {Database} from '../db/schema.js'
import {eventStoreFor} from '../db/event-store.js'
import type {ArchiveClient} from '../heroku/archives.js'
import type {Logger} from '../logger.js'
import type {OutputFormat} from '../output/format-event.js'
import {type MonthsRun, monthsToVerify, runArchiveMonths} from './archive-months.js'

export interface ArchiveCommandDeps {
  db: Kysely<Database>
  archives: ArchiveClient
  output: NodeJS.WritableStream
  logger: Logger
}

export interface ArchiveCommandOptions {
  /** YYYY-MM: just this month; otherwise every archived month worth checking (see monthsToVerify). */
  month?: string
  fill: boolean
  format: OutputFormat
  storeFrom?: string
  linesPerSecond?: number
  signal?: AbortSignal
}

/** archives verify / archives import: the months asked for (or due), checked one by one. */
export async function runArchiveCommand(deps: ArchiveCommandDeps, options: ArchiveCommandOptions): Promise<MonthsRun> {
  const {db, archives, logger} = deps
  const store = eventStoreFor(db)
  let months: Array<{month: string}>
  if (options.month) {
    months = [{month: options.month}]
  } else {
    const listed = await archives.listArchives(options.signal)
    const due = await monthsToVerify(db, listed, {storeFrom: options.storeFrom})
    logger.info(
      due.length === 0
        ? `Heroku lists ${listed.length} archive(s); none is due: every month holding a stored day was checked against its archive's current checksum`
        : `Heroku lists ${listed.length} archive(s); checking ${due.length}: ${due.map((info) => info.month).join(', ')}`,
    )
    months = due.map((info) => ({month: info.month}))
  }

  return runArchiveMonths({db, store, archives, output: deps.output, logger}, months, options)
}
