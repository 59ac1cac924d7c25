import {BaseCommand} from '../../base-command.js'
import type {ArchiveMonth} from '../../lib/db/archive-queries.js'
import {archiveStatusReport, renderArchiveTable} from '../../lib/processing/archive-status.js'
import {jsonText} from '../../lib/text.js'

export default class ArchivesStatus extends BaseCommand {
  static override summary = "show the months verified against Heroku's monthly audit archives, newest first, with their counts"

  static override description = `One line per month: consistent, mismatch or checksum-failed; when it was verified; the \
archive's events; how many matched the store, were recovered from the archive, are only in the store, or belong to days \
never collected; the days and events imported; and the detail line. It only looks: no migration is applied, and an \
embedded database that does not exist yet is not created.`

  static override enableJsonFlag = true

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    {description: 'The months as a JSON array', command: '<%= config.bin %> <%= command.id %> --json'},
  ]

  public async run(): Promise<ArchiveMonth[]> {
    const {flags} = await this.parse(ArchivesStatus)
    this.loadSettings({verbose: flags.verbose})
    // A look creates nothing: an embedded database not made yet reads as empty, with every migration pending.
    const report = await archiveStatusReport(await this.openDb({createMissing: false}))
    if (!report.readable) this.logger.info('the archives migration has not run yet: run `audit-logger db init` (or any `process`) to apply it')
    if (!this.jsonEnabled()) process.stdout.write(`${renderArchiveTable(report.months).join('\n')}\n`)
    return report.months
  }

  /** The JSON with every control character \u-escaped (JSON.stringify leaves DEL, C1 and bidi controls raw). */
  protected override logJson(json: unknown): void {
    process.stdout.write(`${jsonText(json)}\n`)
  }
}
