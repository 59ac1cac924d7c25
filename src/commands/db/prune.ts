import {BaseCommand} from '../../base-command.js'
import {type PruneReport, describePrune, pruneStore} from '../../lib/events/store-access.js'

export default class DbPrune extends BaseCommand {
  static override summary = 'remove stored events of days older than EVENT_RETENTION_DAYS (default 365); the day records stay'

  static override description = `Keeps the events of the last EVENT_RETENTION_DAYS days (today, UTC, minus that many days \
is the first day kept) and removes the older ones: whole months are dropped at once, and only the month that straddles the \
boundary has rows deleted. process does the same at the end of each run; this does it now. The days' processing records \
stay. With EVENT_STORE=off it still prunes: what was stored earlier is kept no longer than the retention says.`

  static override enableJsonFlag = true

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    {description: 'Keep only the last 90 days', command: 'EVENT_RETENTION_DAYS=90 <%= config.bin %> <%= command.id %> --json'},
  ]

  public async run(): Promise<PruneReport> {
    const {flags} = await this.parse(DbPrune)
    const settings = this.loadSettings({verbose: flags.verbose})
    const db = await this.openDb()
    await this.migrate(db)
    if (!settings.store.enabled) this.logger.info('the event store is off (EVENT_STORE=off): process keeps no new events; those kept earlier are pruned all the same')
    const report = await pruneStore(db, settings.store.retentionDays)
    if (!this.jsonEnabled()) this.log(describePrune(report))
    return report
  }
}
