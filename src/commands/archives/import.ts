import {Flags} from '@oclif/core'

import {ArchivesCommand} from '../../archives-command.js'
import type {MonthsRun} from '../../lib/completeness/archive-months.js'

export default class ArchivesImport extends ArchivesCommand {
  static override summary = "fill a month's days that have no record from Heroku's archive alone, without one events-API call"

  static override description = `Downloads the month's archive (checksum checked while it streams) and records every day it covers \
that has no record as SUCCESS, with its events stored, its digest computed and its source noted as the archive. Days already \
collected are left alone and compared, as archives verify does, from the same download. Imported events reach the sinks; \
they are not written on stdout (recovered ones are). Costs one API request; a new deployment gets a past month for one \
request instead of one per day.

Days before EVENT_RETENTION_DAYS are not imported (retention would remove them at once), nor today.

Exit codes: 0 the month is consistent; 1 a mismatch remains, the checksum failed, or the archive could not be downloaded or \
read (nothing changed then); 2 usage or configuration error.`

  static override examples = [{description: 'A new deployment: September from the archive', command: '<%= config.bin %> <%= command.id %> --month 2025-09'}]

  static override flags = {
    ...ArchivesCommand.flags,
    month: Flags.string({description: 'the month to fill, YYYY-MM', helpValue: 'YYYY-MM', required: true}),
  }

  public async run(): Promise<MonthsRun> {
    const {flags} = await this.parse(ArchivesImport)
    return this.runMonths(flags, true)
  }
}
