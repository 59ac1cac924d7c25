import {Args, Flags} from '@oclif/core'

import {BaseCommand} from '../../base-command.js'
import {findEvent} from '../../lib/db/event-queries.js'
import {EXIT, UsageError} from '../../lib/errors.js'
import {quietWhenReaderLeaves, showText} from '../../lib/events/export.js'
import {FilterError, checkEventId} from '../../lib/events/filter.js'
import {requireStoreOn, storeReadiness} from '../../lib/events/store-access.js'
import {oneLine} from '../../lib/text.js'

export default class EventsShow extends BaseCommand {
  static override summary = "print one stored event's JSON, as the API sent it"

  static override description = `Prints the event's JSON text exactly as stored (as the Heroku API sent it), or indented with \
--pretty. On a terminal, and with --pretty, characters a terminal would act on (controls, line separators, bidi overrides) \
are written as \\u escapes: the same JSON, safe to look at. Exit codes: 0 printed; 1 no event with that id is stored; 2 an id that cannot be one (longer than 256 characters, \
or with control characters), or the store is off (EVENT_STORE=off).`

  static override examples = [
    '<%= config.bin %> <%= command.id %> 6b0b4f2e-2d3c-4d57-9a59-0a4e3c1c2f11',
    {description: 'Indented, for reading', command: '<%= config.bin %> <%= command.id %> 6b0b4f2e-2d3c-4d57-9a59-0a4e3c1c2f11 --pretty'},
  ]

  static override args = {
    id: Args.string({description: "the event's id (as printed by `events`)", required: true}),
  }

  static override flags = {
    pretty: Flags.boolean({description: 'indent the JSON (two spaces)'}),
  }

  public async run(): Promise<{found: boolean}> {
    const {args, flags} = await this.parse(EventsShow)
    quietWhenReaderLeaves(process.stdout)
    let id: string
    try {
      id = checkEventId(args.id)
    } catch (error) {
      if (error instanceof FilterError) throw new UsageError(error.message, 'pass an id as `audit-logger events` prints it')
      throw error
    }

    const settings = this.loadSettings({verbose: flags.verbose})
    requireStoreOn(settings.store)
    const db = await this.openDb({createMissing: false})
    const row = (await storeReadiness(db)) === 'ready' ? await findEvent(db, id) : undefined
    if (!row) {
      this.logToStderr(`Error: no stored event has the id ${oneLine(id, 300)} — check the id, or its day may be outside the store (not collected yet, or pruned)`)
      this.exit(EXIT.failed)
    }

    process.stdout.write(showText(row.event_json, {pretty: flags.pretty, terminal: process.stdout.isTTY === true}))
    return {found: true}
  }
}
