import {Flags} from '@oclif/core'

import {BaseCommand} from './base-command.js'
import {flushAlerts} from './lib/alerts/alerts.js'
import {runArchiveCommand} from './lib/completeness/archive-command.js'
import {raiseCompletenessAlerts} from './lib/completeness/catch-up.js'
import {safeErrorMessage} from './lib/secrets.js'
import type {MonthsRun} from './lib/completeness/archive-months.js'
import {parseMonth} from './lib/dates.js'
import {EXIT, UsageError} from './lib/errors.js'
import {createArchiveClient} from './lib/heroku/archives.js'
import {OUTPUT_FORMATS, type OutputFormat} from './lib/output/format-event.js'
import {firstKeptDay} from './lib/processing/retention.js'

/**
 * What archives verify and archives import share: their flags, the settings they need, the run
 * over the months, and the exit code. `fill` (import) also records the days without a record.
 */
export abstract class ArchivesCommand extends BaseCommand {
  static override flags = {
    format: Flags.string({description: 'how recovered events are written on stdout', options: [...OUTPUT_FORMATS], default: 'text'}),
  }

  protected async runMonths(flags: {month?: string; format: string; verbose: boolean}, fill: boolean): Promise<MonthsRun> {
    // The month is checked before anything else, so a typo costs no connection.
    const month = flags.month === undefined ? undefined : parseMonth(flags.month)
    const settings = this.loadSettings({needsHeroku: true, verbose: flags.verbose})
    if (!settings.store.enabled) {
      throw new UsageError('EVENT_STORE=off: archives are compared with the event store, which keeps nothing now', 'unset EVENT_STORE (or set it to on) and collect days first')
    }

    const heroku = settings.heroku!
    const archives = createArchiveClient({...heroku, userAgent: `audit-logger/${this.config.version}`})
    const db = await this.openDb()
    await this.migrate(db)
    const cancel = new AbortController()
    const onSignal = (signal: NodeJS.Signals) => {
      this.logger.warn(`received ${signal}: stopping; the month in progress is left as it was`)
      cancel.abort()
    }

    process.once('SIGINT', onSignal).once('SIGTERM', onSignal)
    let run: MonthsRun
    try {
      run = await runArchiveCommand(
        {db, archives, output: process.stdout, logger: this.logger},
        {
          month,
          fill,
          format: flags.format as OutputFormat,
          storeFrom: firstKeptDay(settings.store.retentionDays),
          linesPerSecond: settings.processing?.logLinesPerSecond ?? 0,
          signal: cancel.signal,
        },
      )
    } finally {
      process.off('SIGINT', onSignal).off('SIGTERM', onSignal)
    }

    try {
      await raiseCompletenessAlerts(db, settings.alerts.webhook, {months: run.results})
      if (settings.alerts.webhook) await flushAlerts({db, webhook: settings.alerts.webhook, logger: this.logger, source: settings.alerts.source})
    } catch (error) {
      this.logger.warn(`alerts: could not record or send alerts now (${safeErrorMessage(error)})`)
    }

    if (run.exitCode !== EXIT.ok) this.exit(EXIT.failed)
    return run
  }
}
