import {Flags} from '@oclif/core'

import {BaseCommand} from '../../base-command.js'
import {type StatusReport, renderStatusTable, statusReport} from '../../lib/processing/status-report.js'

export default class DbStatus extends BaseCommand {
  static override summary = 'show the latest day records, the counts per status and the migration state'

  static override enableJsonFlag = true

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    {description: 'The last 30 days as JSON', command: '<%= config.bin %> <%= command.id %> --limit 30 --json'},
  ]

  static override flags = {
    limit: Flags.integer({description: 'how many of the latest records to show', default: 10, min: 1, max: 10_000}),
  }

  public async run(): Promise<StatusReport> {
    const {flags} = await this.parse(DbStatus)
    this.loadSettings({verbose: flags.verbose})
    const report = await statusReport(await this.openDb(), flags.limit)
    if (!this.jsonEnabled()) process.stdout.write(renderStatusTable(report))
    return report
  }
}
