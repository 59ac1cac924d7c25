import {createInterface} from 'node:readline/promises'

import {Args, Flags} from '@oclif/core'

import {BaseCommand} from '../../base-command.js'
import {MAX_STALE_AFTER_MINUTES} from '../../lib/config.js'
import {resetDay} from '../../lib/db/audit-log-repository.js'
import {parseDay} from '../../lib/dates.js'
import {EXIT, UsageError} from '../../lib/errors.js'
import {escapeControls} from '../../lib/text.js'

export default class DbReset extends BaseCommand {
  static override summary = "delete one day's record so that day can be processed again"

  static override description = `Asks you to type the date to confirm (or pass --confirm DATE when not at a terminal). \
A PROCESSING record whose run is alive is refused unless --force; that run will then fail to finish (it lost its claim).`

  static override examples = [
    '<%= config.bin %> <%= command.id %> 2024-09-28',
    {description: 'Without a prompt (scripts, heroku run --no-tty)', command: '<%= config.bin %> <%= command.id %> 2024-09-28 --confirm 2024-09-28'},
  ]

  static override args = {
    date: Args.string({description: 'the day whose record to delete, YYYY-MM-DD', required: true}),
  }

  static override flags = {
    confirm: Flags.string({description: 'the same date again, to confirm without a prompt', helpValue: 'YYYY-MM-DD'}),
    force: Flags.boolean({description: 'also delete a PROCESSING record whose run is alive'}),
    'stale-after': Flags.integer({description: 'minutes without a heartbeat after which a run counts as dead', default: 15, min: 1, max: MAX_STALE_AFTER_MINUTES}),
  }

  public async run(): Promise<{removed: boolean}> {
    const {args, flags} = await this.parse(DbReset)
    const day = parseDay(args.date)
    this.loadSettings({verbose: flags.verbose})
    await this.confirm(day, flags.confirm)
    const db = await this.openDb()
    await this.migrate(db)
    const result = await resetDay(db, day, {force: flags.force, staleAfterMinutes: flags['stale-after']})
    if (result.outcome === 'none') {
      this.log(`No record for ${day}: nothing to remove.`)
      return {removed: false}
    }

    const {row} = result
    if (result.outcome === 'refused-live') {
      const beat = row.heartbeat_at?.toISOString() ?? 'unknown'
      this.error(`${day} is being processed by a live run (last heartbeat ${beat}); nothing removed — wait for it, or add --force`, {
        exit: EXIT.failed,
      })
    }

    this.log(`Removed the record of ${day} (${escapeControls(row.status)}, ${row.events_count ?? 0} events, ${row.attempts} attempt(s)).`)
    this.log(`Run \`audit-logger process --date ${day}\` to fetch it again.`)
    return {removed: true}
  }

  private async confirm(day: string, confirmation: string | undefined): Promise<void> {
    if (confirmation !== undefined) {
      if (confirmation.trim() !== day) throw new UsageError(`--confirm ${confirmation} does not match ${day}`, `pass --confirm ${day}`)
      return
    }

    if (!process.stdin.isTTY) {
      throw new UsageError(`db reset deletes the record of ${day} and needs confirming`, `add --confirm ${day}`)
    }

    const prompt = createInterface({input: process.stdin, output: process.stderr})
    try {
      const answer = await prompt.question(`This deletes the record of ${day}. Type the date to confirm: `)
      if (answer.trim() !== day) throw new UsageError('confirmation did not match: nothing removed', `type ${day} exactly, or pass --confirm ${day}`)
    } finally {
      prompt.close()
    }
  }
}
