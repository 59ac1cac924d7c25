import {Flags} from '@oclif/core'

import {BaseCommand} from '../../base-command.js'
import {DEFAULT_EVENT_DAYS, EXPORT_FORMATS, type ExportFormat, type ExportResult, MAX_EXPORT_LIMIT, describeFilter, eventFlagsFilter, exportEvents, quietWhenReaderLeaves} from '../../lib/events/export.js'
import {requireStoreOn, storeReadiness} from '../../lib/events/store-access.js'

export default class Events extends BaseCommand {
  static override summary = 'print stored events, oldest first, filtered by day, actor, type, action, app or IP address'

  static override description = `Reads the event store (each day process collects, kept as the API sent it) and writes one \
line per matching event on stdout, oldest first: the text line process prints, the stored JSON (--format json), or CSV \
with a header. Days: --date D, or --from D --to D (both included), or by default the last ${DEFAULT_EVENT_DAYS} days \
ending yesterday (UTC). Every filter is an exact match, and they combine. The events are read in batches, so any number \
can be written to a file; a reader that stops early (| head) ends the command quietly. Text and CSV show control \
characters escaped (CSV cells that a spreadsheet would run as a formula start with a '); JSON is the stored text, \
with control characters written as \\u escapes when stdout is a terminal.

Exit codes: 0 the events were written, or none matched (one line on stderr says so); 2 a bad flag value, the store off \
(EVENT_STORE=off), the database unreachable, or migrations pending (run db init).`

  static override examples = [
    {description: 'Everything Ann did in September, as one JSON object per line', command: '<%= config.bin %> <%= command.id %> --actor ann@example.com --from 2025-09-01 --to 2025-09-30 --format json'},
    {description: 'The last 7 days (ending yesterday, UTC)', command: '<%= config.bin %> <%= command.id %>'},
    {description: 'Who destroyed apps on a given day', command: '<%= config.bin %> <%= command.id %> --date 2025-09-28 --type app --action destroy'},
    {description: 'What came from one address, as a spreadsheet', command: '<%= config.bin %> <%= command.id %> --ip 203.0.113.7 --from 2025-01-01 --to 2025-09-30 --format csv > from-ip.csv'},
    {description: 'The first 20 events touching an app', command: '<%= config.bin %> <%= command.id %> --app billing-api --limit 20'},
  ]

  static override flags = {
    date: Flags.string({description: 'one day (UTC), YYYY-MM-DD', helpValue: 'YYYY-MM-DD', exclusive: ['from', 'to']}),
    from: Flags.string({description: `first day, included (with --to; default: the last ${DEFAULT_EVENT_DAYS} days ending yesterday, UTC)`, helpValue: 'YYYY-MM-DD', dependsOn: ['to'], exclusive: ['date']}),
    to: Flags.string({description: 'last day, included (with --from; default: yesterday, UTC)', helpValue: 'YYYY-MM-DD', dependsOn: ['from'], exclusive: ['date']}),
    actor: Flags.string({description: "only events by this user (the actor's email)", helpValue: 'EMAIL'}),
    type: Flags.string({description: 'only events of this type (app, addon, collaborator…)', helpValue: 'TYPE'}),
    action: Flags.string({description: 'only events with this action (create, update, destroy…)', helpValue: 'ACTION'}),
    app: Flags.string({description: "only events about this app (the app's name)", helpValue: 'NAME'}),
    ip: Flags.string({description: 'only events made from this IP address', helpValue: 'ADDRESS'}),
    format: Flags.string({description: 'text (as process prints), json (the stored JSON, one per line) or csv', options: [...EXPORT_FORMATS], default: 'text'}),
    limit: Flags.integer({description: `at most this many events (default: every match; at most ${MAX_EXPORT_LIMIT})`, min: 1, max: MAX_EXPORT_LIMIT, helpValue: 'N'}),
  }

  public async run(): Promise<ExportResult> {
    const {flags} = await this.parse(Events)
    quietWhenReaderLeaves(process.stdout)
    // Values are checked before anything else, so a typo costs no connection.
    const filter = eventFlagsFilter(flags)
    const settings = this.loadSettings({verbose: flags.verbose})
    requireStoreOn(settings.store)
    const db = await this.openDb({createMissing: false})
    const what = describeFilter(filter)
    if ((await storeReadiness(db)) === 'missing') {
      this.logger.info(`no events match (${what}): nothing is stored yet — process stores each day it collects`)
      return {events: 0, more: false, outputClosed: false}
    }

    const result = await exportEvents(db, filter, process.stdout, {format: flags.format as ExportFormat, limit: flags.limit, terminal: process.stdout.isTTY === true})
    if (result.outputClosed) this.logger.debug(`stdout was closed by its reader after ${result.events} event(s): stopped`)
    else if (result.events === 0) this.logger.info(`no events match (${what})`)
    else if (result.more) this.logger.info(`${result.events} events (${what}); stopped at --limit ${flags.limit}, more match`)
    else this.logger.info(`${result.events} event(s) (${what})`)
    return result
  }
}
