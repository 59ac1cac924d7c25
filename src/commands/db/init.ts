import {BaseCommand} from '../../base-command.js'

export default class DbInit extends BaseCommand {
  static override summary = 'create or upgrade the audit_events_log table (apply pending migrations)'

  static override description = `Idempotent: says which migrations ran, or that none were pending. An audit_events_log \
table made by the old Python tool is adopted in place with its rows. Runs in Heroku's release phase.`

  static override examples = ['<%= config.bin %> <%= command.id %>']

  public async run(): Promise<{applied: string[]}> {
    const {flags} = await this.parse(DbInit)
    this.loadSettings({verbose: flags.verbose})
    const db = await this.openDb()
    const applied = await this.migrate(db, false)
    return {applied}
  }
}
