import {Flags} from '@oclif/core'

import {BaseCommand} from '../../base-command.js'
import {MAX_STALE_AFTER_MINUTES} from '../../lib/config.js'
import {type CleanedDay, cleanupStale} from '../../lib/db/audit-log-repository.js'

export default class DbCleanup extends BaseCommand {
  static override summary = 'mark PROCESSING records whose run stopped sending heartbeats as ERROR'

  static override description = `A run that crashed leaves its day PROCESSING. Records without a heartbeat for \
--stale-after minutes (judged by the database's clock) become ERROR with a reason naming the last heartbeat, so the \
next process run retries them. Live runs and every other record are left alone.`

  static override enableJsonFlag = true

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    {description: 'Treat runs silent for an hour as dead', command: '<%= config.bin %> <%= command.id %> --stale-after 60'},
  ]

  static override flags = {
    'stale-after': Flags.integer({description: 'minutes without a heartbeat after which a run counts as dead', default: 15, min: 1, max: MAX_STALE_AFTER_MINUTES}),
  }

  public async run(): Promise<{cleaned: CleanedDay[]}> {
    const {flags} = await this.parse(DbCleanup)
    this.loadSettings({verbose: flags.verbose})
    const db = await this.openDb()
    await this.migrate(db)
    const cleaned = await cleanupStale(db, flags['stale-after'])
    if (!this.jsonEnabled()) {
      this.log(`Cleaned up ${cleaned.length} stale PROCESSING record(s)${cleaned.length > 0 ? ':' : '.'}`)
      for (const {day, lastSignOfLife} of cleaned) {
        this.log(`  ${day} -> ERROR (last heartbeat ${lastSignOfLife?.toISOString() ?? 'never'})`)
      }
    }

    return {cleaned}
  }
}
