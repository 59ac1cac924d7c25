import {Flags} from '@oclif/core'

import {BaseCommand} from '../base-command.js'
import {flushAlerts} from '../lib/alerts/alerts.js'
import {forgetSinksExcept} from '../lib/db/sink-queries.js'
import {type DeliveryReport, sinkName} from '../lib/delivery/deliver-events.js'
import {runDelivery} from '../lib/delivery/run-delivery.js'
import {EXIT, UsageError} from '../lib/errors.js'
import {escapeControls} from '../lib/text.js'

export default class Deliver extends BaseCommand {
  static override summary = 'send every stored event the sink (SINK_URL) has not accepted yet, and any alert waiting'

  static override description = `Delivery is at least once, from the event store: the sink's position is kept in the database, \
so a sink that was down or slow gets everything it missed, oldest day first, in batches bounded by SINK_BATCH_EVENTS and \
SINK_BATCH_BYTES. process does the same after storing each run's days; this drains the backlog on its own (a Scheduler job, \
or by hand). A sink that refused a batch (a 4xx other than 429) is stopped: process leaves it alone, and this command tries it \
again, so run it once the cause (a token, the URL) is fixed.

Exit codes: 0 nothing is left to deliver; 1 events are still waiting (the sink is down, slow or stopped; see the line it \
prints); 2 usage or configuration error (no SINK_URL, EVENT_STORE=off).`

  static override enableJsonFlag = true

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    {description: 'As a Scheduler job, after fixing SINK_TOKEN', command: '<%= config.bin %> <%= command.id %> --json'},
  ]

  static override flags = {
    'forget-other-sinks': Flags.boolean({
      description: 'first remove every sink but SINK_URL\'s, with its backlog (after SINK_URL changed: an old sink is otherwise kept, and its backlog grows)',
      default: false,
    }),
  }

  public async run(): Promise<DeliveryReport> {
    const {flags} = await this.parse(Deliver)
    const settings = this.loadSettings({verbose: flags.verbose})
    if (!settings.sink) {
      throw new UsageError('SINK_URL is not set: there is no sink to deliver to', 'set SINK_URL (and SINK_FORMAT, SINK_TOKEN) to an HTTP intake; see the README on sinks')
    }

    const db = await this.openDb()
    await this.migrate(db)
    if (flags['forget-other-sinks']) {
      const removed = await forgetSinksExcept(db, sinkName(settings.sink))
      this.logger.info(removed.length > 0 ? `forgot ${removed.length} other sink(s) and their backlog: ${removed.map((target) => escapeControls(target)).join(', ')}` : 'no other sink to forget')
    }

    const deps = {db, logger: this.logger, userAgent: `audit-logger/${this.config.version}`, alerts: settings.alerts}
    // A signal (a dyno stopping) ends the run between batches: the position is kept, the lease released.
    const cancel = new AbortController()
    const onSignal = (signal: NodeJS.Signals) => {
      this.logger.warn(`received ${signal}: stopping; the next run resumes from the same position`)
      cancel.abort()
    }

    process.once('SIGINT', onSignal).once('SIGTERM', onSignal)
    let report: DeliveryReport | undefined
    try {
      report = await runDelivery(deps, settings.sink, {retryStopped: true, signal: cancel.signal})
    } finally {
      process.off('SIGINT', onSignal).off('SIGTERM', onSignal)
    }

    await flushAlerts({db, webhook: settings.alerts.webhook, logger: this.logger, source: settings.alerts.source})
    if (!report || report.pending > 0 || report.outcome !== 'done') {
      if (this.jsonEnabled() && report) this.logJson(report)
      this.exit(EXIT.failed)
    }

    return report
  }
}
