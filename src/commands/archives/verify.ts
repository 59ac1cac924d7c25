import {Flags} from '@oclif/core'

import {ArchivesCommand} from '../../archives-command.js'
import type {MonthsRun} from '../../lib/completeness/archive-months.js'

export default class ArchivesVerify extends ArchivesCommand {
  static override summary = "hold stored days against Heroku's monthly archives: recover what is missing, report what differs"

  static override description = `Downloads each month's archive (without the API token: its URL is pre-signed), checks its SHA-256 \
while it streams, inflates and parses it as a stream, and compares it by event id with the month's stored SUCCESS days. \
Events only in the archive are stored as recovered and written on stdout; events only in the store are reported by id. \
The result per month is recorded (see archives status). Nothing changes when the checksum fails. \
Costs one API request to list the archives and one per month checked; the downloads are not API requests.

Without --month: every archived month holding a stored day that has not been checked against its archive's current checksum.

Exit codes: 0 every month checked is consistent (after recovering); 1 a mismatch remains, a checksum failed, or a month \
could not be downloaded or read; 2 usage or configuration error.`

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    {description: 'One month, again', command: '<%= config.bin %> <%= command.id %> --month 2025-09'},
  ]

  static override flags = {
    ...ArchivesCommand.flags,
    month: Flags.string({description: 'the month to check, YYYY-MM (default: every month due)', helpValue: 'YYYY-MM'}),
  }

  public async run(): Promise<MonthsRun> {
    const {flags} = await this.parse(ArchivesVerify)
    return this.runMonths(flags, false)
  }
}
