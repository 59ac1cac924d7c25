import {Flags} from '@oclif/core'

import {BaseCommand} from '../../base-command.js'
import {MAX_RANGE_DAYS} from '../../lib/dates.js'
import {DEFAULT_STATUS_DAYS, type StatusReport, renderStatusTable, statusReport} from '../../lib/processing/status-report.js'
import {jsonText} from '../../lib/text.js'

export default class DbStatus extends BaseCommand {
  static override summary = 'show the latest day records, the counts per status, the missing days, the event store and the migration state'

  static override description = `The event store's part: whether it is on (EVENT_STORE), how many days it keeps \
(EVENT_RETENTION_DAYS), how many events it holds from which day to which, and its size on disk (with bytes per event, \
to size a database plan). Per day: whether the settle re-read has run (SETTLED: yes +late -vanished, or archive for a day \
filled from Heroku's monthly archive), and one line on the months verified against those archives. It only looks: no migration is applied, and an embedded database that does not exist yet is not created.`

  static override enableJsonFlag = true

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    {description: 'The 30 latest records as JSON', command: '<%= config.bin %> <%= command.id %> --limit 30 --json'},
    {description: 'Look for missing days over the last 90 days', command: '<%= config.bin %> <%= command.id %> --days 90'},
  ]

  static override flags = {
    limit: Flags.integer({description: 'how many of the latest records to show', default: 10, min: 1, max: 10_000}),
    days: Flags.integer({
      description: 'how many days, ending yesterday (UTC), to check for days with no record',
      default: DEFAULT_STATUS_DAYS,
      min: 1,
      max: MAX_RANGE_DAYS,
    }),
  }

  public async run(): Promise<StatusReport> {
    const {flags} = await this.parse(DbStatus)
    const settings = this.loadSettings({verbose: flags.verbose})
    // A look creates nothing: an embedded database not made yet reads as empty, with every migration pending.
    const report = await statusReport(await this.openDb({createMissing: false}), flags.limit, {days: flags.days, store: settings.store, sink: settings.sink})
    if (!this.jsonEnabled()) process.stdout.write(renderStatusTable(report))
    return report
  }

  /** The JSON with every control character \u-escaped: stored text (an archive month's detail) may hold any. */
  protected override logJson(json: unknown): void {
    process.stdout.write(`${jsonText(json)}\n`)
  }
}
