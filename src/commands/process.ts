import {Flags} from '@oclif/core'

import {BaseCommand} from '../base-command.js'
import {parseProcessableDay, yesterdayUtc} from '../lib/dates.js'
import {EXIT} from '../lib/errors.js'
import {createAuditClient} from '../lib/heroku/client.js'
import {OUTPUT_FORMATS, type OutputFormat} from '../lib/output/format-event.js'
import {type DayResult, exitCodeFor, processDay} from '../lib/processing/process-day.js'

export default class Process extends BaseCommand {
  static override summary = "fetch one UTC day of audit-trail events, print them, and record the day's outcome"

  static override description = `Claims the day in the database, fetches every page of its events from the Heroku API, \
writes one line per event on stdout once the whole day is in, and records SUCCESS, FAILED or ERROR. \
Diagnostics and a closing summary go to stderr. Pending database migrations are applied first.

Exit codes: 0 the day is SUCCESS now or was skipped (already done, or held by a live run); \
1 the day ended FAILED or ERROR, or the claim was lost; 2 usage or configuration error (nothing was claimed).`

  static override examples = [
    {description: "Process yesterday (UTC), as Heroku Scheduler does", command: '<%= config.bin %> <%= command.id %>'},
    {description: 'Process a given day', command: '<%= config.bin %> <%= command.id %> --date 2025-09-28'},
    {description: 'Fetch a done day again, one JSON object per event', command: '<%= config.bin %> <%= command.id %> --date 2025-09-28 --force --format json'},
  ]

  static override flags = {
    date: Flags.string({description: 'the UTC day to process, YYYY-MM-DD (default: yesterday)', helpValue: 'YYYY-MM-DD'}),
    force: Flags.boolean({description: 'fetch the day again even if it is already SUCCESS'}),
    format: Flags.string({description: 'how events are written on stdout', options: [...OUTPUT_FORMATS], default: 'text'}),
    'stale-after': Flags.integer({
      description: 'minutes without a heartbeat after which a PROCESSING record is taken over',
      default: 15,
      min: 1,
    }),
  }

  public async run(): Promise<DayResult> {
    const {flags} = await this.parse(Process)
    const day = flags.date === undefined ? yesterdayUtc() : parseProcessableDay(flags.date)
    const settings = this.loadSettings({needsHeroku: true, verbose: flags.verbose})
    const heroku = settings.heroku!
    const db = await this.openDb()
    await this.migrate(db)

    const client = createAuditClient({
      ...heroku,
      userAgent: `audit-logger/${this.config.version}`,
      onNotice: (notice) => {
        if (notice.kind === 'retry') this.logger.warn(`${day}: ${notice.reason}; retrying in ${(notice.waitMs / 1000).toFixed(1)} s (attempt ${notice.attempt + 1})`)
        else if (notice.kind === 'slow-down') this.logger.warn(`${day}: RateLimit-Remaining is ${notice.rateLimitRemaining}; pausing ${notice.waitMs} ms between requests`)
        else this.logger.warn(`${day}: Heroku API warning: ${notice.message}`)
      },
    })

    // A signal aborts the fetch; the day is then recorded FAILED rather than left PROCESSING.
    const cancel = new AbortController()
    const onSignal = (signal: NodeJS.Signals) => {
      this.logger.warn(`received ${signal}: stopping ${day}`)
      cancel.abort()
    }

    process.once('SIGINT', onSignal).once('SIGTERM', onSignal)
    this.logger.info(`processing ${day}${flags.force ? ' (forced)' : ''}`)
    let result: DayResult
    try {
      result = await processDay(
        {db, client, output: process.stdout, logger: this.logger},
        {
          day,
          format: flags.format as OutputFormat,
          force: flags.force,
          staleAfterMinutes: flags['stale-after'],
          // Several beats per stale window, so one slow beat never looks like a crash.
          heartbeatIntervalMs: Math.min(30_000, (flags['stale-after'] * 60_000) / 5),
          signal: cancel.signal,
        },
      )
    } finally {
      process.off('SIGINT', onSignal).off('SIGTERM', onSignal)
    }

    this.report(result)
    if (exitCodeFor([result.outcome]) !== EXIT.ok) this.exit(EXIT.failed)
    return result
  }

  private report(result: DayResult): void {
    const seconds = result.durationMs < 1000 ? `${result.durationMs} ms` : `${(result.durationMs / 1000).toFixed(1)} s`
    const attempt = result.attempt === undefined ? '' : `, attempt ${result.attempt}`
    switch (result.outcome) {
      case 'success': {
        this.logger.success(`${result.day} SUCCESS: ${result.events} events in ${result.pages} page${result.pages === 1 ? '' : 's'}, ${seconds}${attempt}`)
        break
      }

      case 'done':
      case 'busy': {
        this.logger.info(`${result.day} skipped: ${result.message}`)
        break
      }

      case 'failed':
      case 'error': {
        this.logger.error(`${result.day} ${result.outcome.toUpperCase()} after ${seconds}${attempt}: ${result.message}`)
        break
      }

      case 'lost': {
        this.logger.error(`${result.day} not recorded after ${seconds}${attempt}: ${result.message}`)
        break
      }
    }
  }
}
