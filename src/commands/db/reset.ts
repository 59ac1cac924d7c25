import {createInterface} from 'node:readline/promises'

import {Args, Flags} from '@oclif/core'

import {BaseCommand} from '../../base-command.js'
import {MAX_STALE_AFTER_MINUTES} from '../../lib/config.js'
import {findDay, resetDay} from '../../lib/db/audit-log-repository.js'
import type {AuditLogRow} from '../../lib/db/schema.js'
import {parseDay} from '../../lib/dates.js'
import {EXIT, UsageError} from '../../lib/errors.js'
import {escapeControls} from '../../lib/text.js'

export default class DbReset extends BaseCommand {
  static override summary = "delete one day's record so that day can be processed again"

  static override description = `Shows the record (status, events, attempts, last heartbeat) and asks you to type the date \
to confirm (or pass --confirm DATE when not at a terminal); with no record it says so and asks nothing. A PROCESSING record \
whose run is alive (a heartbeat within --stale-after minutes) is refused unless --force; that run will then fail to finish \
(it lost its claim).`

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
    'stale-after': Flags.integer({
      description: `minutes without a heartbeat after which a PROCESSING record's run counts as dead, so no --force is needed to delete it, 1–${MAX_STALE_AFTER_MINUTES}`,
      helpValue: 'MINUTES',
      default: 15,
      min: 1,
      max: MAX_STALE_AFTER_MINUTES,
    }),
  }

  public async run(): Promise<{removed: boolean}> {
    const {args, flags} = await this.parse(DbReset)
    const day = parseDay(args.date)
    this.loadSettings({verbose: flags.verbose})
    if (flags.confirm !== undefined && flags.confirm.trim() !== day) {
      throw new UsageError(`--confirm ${escapeControls(flags.confirm)} does not match ${day}`, `pass --confirm ${day}`)
    }

    const db = await this.openDb()
    await this.migrate(db)
    // What would go is shown before asking; nothing to ask about when there is no record.
    const found = await findDay(db, day)
    if (!found) {
      this.log(`No record for ${day}: nothing to remove.`)
      return {removed: false}
    }

    if (flags.confirm === undefined) await this.confirm(day, describeRecord(found))
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

  private async confirm(day: string, record: string): Promise<void> {
    if (!process.stdin.isTTY) {
      throw new UsageError(`db reset would delete the record of ${day} (${record}) and needs confirming`, `add --confirm ${day}`)
    }

    const prompt = createInterface({input: process.stdin, output: process.stderr})
    try {
      const answer = await prompt.question(`This deletes the record of ${day} (${record}). Type the date to confirm: `)
      if (answer.trim() !== day) throw new UsageError('confirmation did not match: nothing removed', `type ${day} exactly, or pass --confirm ${day}`)
    } finally {
      prompt.close()
    }
  }
}

/** A record as the confirmation shows it: status, events, attempts, last heartbeat. */
function describeRecord(row: AuditLogRow): string {
  const beat = row.heartbeat_at ? `last heartbeat ${row.heartbeat_at.toISOString()}` : 'no heartbeat'
  return `${escapeControls(row.status)}, ${row.events_count ?? 0} events, ${row.attempts} attempt(s), ${beat}`
}
