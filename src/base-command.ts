import {Command, Errors, Flags} from '@oclif/core'
import type {ConsolaInstance} from 'consola'
import type {Kysely} from 'kysely'

import {type Config, loadConfig, withDotEnv} from './lib/config.js'
import {describeDbError, type OpenedDatabase, openDatabase} from './lib/db/connection.js'
import {migrateToLatest} from './lib/db/migrate.js'
import type {Database} from './lib/db/schema.js'
import {EXIT, UsageError, oneLineParseError} from './lib/errors.js'
import {MAX_LOG_MESSAGE, createLogger} from './lib/logger.js'
import {safeErrorMessage} from './lib/secrets.js'
import {oneLine} from './lib/text.js'

/**
 * The cross-cutting parts every command shares: configuration read once, a lazily opened
 * database that is always closed (an open pool keeps the process alive), a logger on stderr,
 * and errors turned into one safe line with the documented exit code.
 */
export abstract class BaseCommand extends Command {
  static override baseFlags = {
    verbose: Flags.boolean({description: 'say more on stderr (same as LOG_LEVEL=debug)', helpGroup: 'GLOBAL'}),
  }

  protected logger: ConsolaInstance = createLogger('info')
  private settings?: Config
  private database?: OpenedDatabase

  /** Reads the environment (and .env) once; `needsHeroku` also requires the API settings. */
  protected loadSettings(options: {needsHeroku?: boolean; verbose?: boolean} = {}): Config {
    this.settings = loadConfig(withDotEnv(process.env), options)
    this.logger = createLogger(options.verbose ? 'debug' : (this.settings.logLevel ?? 'info'))
    return this.settings
  }

  /**
   * Opens the database once, and says which on stderr: PostgreSQL at DATABASE_URL, or the embedded
   * one. Unreachable, or an embedded directory in use, is a usage error (exit 2) before anything is claimed.
   */
  protected async openDb(options: {createMissing?: boolean} = {}): Promise<Kysely<Database>> {
    if (this.database) return this.database.db
    const settings = this.settings ?? this.loadSettings()
    this.database = await openDatabase(settings.database, {
      ...options,
      onIdleError: (message) => this.logger.warn(`database connection dropped: ${message}`),
    })
    this.logger.info(`using ${this.database.describe}`)
    return this.database.db
  }

  /** Closes the database if open: ends the pool, or closes the embedded one and releases its directory. */
  protected async closeDb(): Promise<void> {
    const database = this.database
    this.database = undefined
    await database?.close()
  }

  /** Applies pending migrations, saying which ran. */
  protected async migrate(db: Kysely<Database>, quietWhenNone = true): Promise<string[]> {
    const settings = this.settings!
    let report
    try {
      report = await migrateToLatest(db)
    } catch (error) {
      throw new Error(`could not migrate the database: ${describeDbError(error, settings.database)}`)
    }

    if (report.adoptedRows !== undefined) {
      this.logger.info(`adopted the existing audit_events_log table with its ${report.adoptedRows} records`)
    }

    if (report.applied.length > 0) this.logger.info(`applied migrations: ${report.applied.join(', ')}`)
    else if (!quietWhenNone) this.logger.info('no migrations pending: the database is up to date')
    return report.applied
  }

  /**
   * Every failure becomes one unwrapped line on stderr and its exit code: 2 for usage and
   * configuration (oclif's flag errors included), 1 for the rest. Never a stack trace.
   */
  protected override async catch(error: Error & {oclif?: {exit?: number}}): Promise<unknown> {
    if (error instanceof Errors.ExitError) throw error
    const usage: unknown = error
    let line: string
    let exit: number
    if (usage instanceof UsageError) {
      line = usage.hint ? `${usage.message} — ${usage.hint}` : usage.message
      exit = EXIT.usage
    } else {
      line = error instanceof Errors.CLIError ? withDateHint(oneLineParseError(error.message), this.ctor.flags) : error.message
      exit = error.oclif?.exit ?? EXIT.failed
      if (!(error instanceof Errors.CLIError)) this.logger.debug(`stack: ${error.stack ?? ''}`)
    }

    // One line, whatever the message quotes (a server's answer, a stored value, oclif's own multi-line errors).
    this.logToStderr(`Error: ${oneLine(safeErrorMessage(line), MAX_LOG_MESSAGE)}`)
    this.exit(exit)
  }

  protected override async finally(error: Error | undefined): Promise<unknown> {
    await this.closeDb().catch(() => {})
    return super.finally(error)
  }
}

/** `process 2025-09-28`: a day given as an argument to a command that takes it as --date says so. */
function withDateHint(line: string, flags: Record<string, unknown> | undefined): string {
  const day = /^Unexpected arguments?: (\d{4}-\d{2}-\d{2})\b/.exec(line)?.[1]
  if (!day || !flags || !('date' in flags)) return line
  return `unexpected argument ${day}: a day is given as --date ${day} (or a range as --from and --to)`
}
