import {access, constants} from 'node:fs/promises'

import {Flags} from '@oclif/core'
import type {Kysely} from 'kysely'

import {BaseCommand} from '../base-command.js'
import {type FinishedDay, dayStatuses, flushAlerts, raiseDayAlerts, raiseYesterdayAlert} from '../lib/alerts/alerts.js'
import {type AlertWebhook, type AlertsConfig, DEFAULT_CATCH_UP_DAYS, DEFAULT_RATE_LIMIT_RESERVE, MAX_CATCH_UP_DAYS, MAX_STALE_AFTER_MINUTES, type HerokuConfig} from '../lib/config.js'
import type {Database, ProcessStatus} from '../lib/db/schema.js'
import {parseProcessableDay, parseProcessableRange, todayUtc, yesterdayUtc} from '../lib/dates.js'
import {runDelivery} from '../lib/delivery/run-delivery.js'
import {EXIT, UsageError} from '../lib/errors.js'
import {type AuditClient, DEFAULTS as CLIENT_DEFAULTS, createAuditClient} from '../lib/heroku/client.js'
import type {Logger} from '../lib/logger.js'
import {ensureDirectory} from '../lib/output/day-file.js'
import {OUTPUT_FORMATS, type OutputFormat} from '../lib/output/format-event.js'
import {dayReportLine} from '../lib/processing/day-report.js'
import {type Plan, type PlanMode, catchUpWindow, planDays, renderPlan} from '../lib/processing/plan.js'
import {type DayResult, exitCodeFor, processDay} from '../lib/processing/process-day.js'
import {type EventStore, ensurePartitions, eventStoreFor} from '../lib/db/event-store.js'
import {retryOnLostConnection} from '../lib/processing/database-failure.js'
import {applyRetention, firstKeptDay, retentionLine} from '../lib/processing/retention.js'
import {createProgress} from '../lib/processing/progress.js'
import {type RerunFlags, rerunCommand} from '../lib/processing/rerun.js'
import {type RangeResult, renderRangeSummary, runRange} from '../lib/processing/run-range.js'
import {safeErrorMessage} from '../lib/secrets.js'
import {type MonthsRun, monthsNeverChecked, monthsToVerify, runArchiveMonths} from '../lib/completeness/archive-months.js'
import {type SettleRun, daysToSettle, raiseCompletenessAlerts, renderCompletenessPlan, settleDays} from '../lib/completeness/catch-up.js'
import {settleLine} from '../lib/completeness/settle-day.js'
import {createArchiveClient} from '../lib/heroku/archives.js'

/** The most months one catch-up checks against their archives (one download each); the rest wait for the next run. */
const MAX_CATCH_UP_MONTHS = 2

interface Target {
  mode: PlanMode
  from: string
  to: string
}

const DEFAULT_STALE_AFTER_MINUTES = 15

function ignoreStdoutError(): void {
  // Reported by the day job, which sees its own writes fail (see deliverDay).
}

/** Levels under which the progress bar and lines are not shown. */
const QUIET_LEVELS = new Set(['silent', 'fatal', 'error', 'warn'])

export default class Process extends BaseCommand {
  static override summary = 'fetch UTC days of audit-trail events, print them, and record each day\'s outcome'

  static override description = `Claims each day in the database, fetches every page of its events from the Heroku API, \
writes one line per event on stdout once the whole day is in, and records SUCCESS, FAILED or ERROR. \
Diagnostics, progress and a closing summary go to stderr. Pending database migrations are applied first.

One of: --date (one day; the default is yesterday), --from/--to (every day of the range, oldest first), \
or --catch-up (yesterday and every day of the last --days that is missing, FAILED, ERROR or abandoned by a crashed run). \
Done days are skipped, failed ones retried, days held by a live run left alone; one failing day does not stop the others. \
A range starts no new day once RateLimit-Remaining is below RATE_LIMIT_RESERVE (default 500): the rest are left untouched for the next run.

After its days, --catch-up reads each SUCCESS day of its window once more SETTLE_HOURS (default 24) after it was collected, \
storing and writing late events, and checks each month that is over and was never checked against Heroku's archive \
(CATCH_UP_ARCHIVES); see archives verify.

Each day's events are kept in the database with its SUCCESS (EVENT_STORE, on by default; EVENT_RETENTION_DAYS, default 365, \
prunes older days at the end of the run), and sent to SINK_URL when one is set (see deliver). On stdout they are paced at \
LOG_LINES_PER_SECOND (default 200 on a Heroku dyno, so Logplex keeps them; unpaced elsewhere).

Exit codes: 0 every day is SUCCESS now or was skipped (already done, held by a live run, or left for later by the rate budget); \
1 a day ended FAILED or ERROR, a claim was lost, a signal interrupted the run, or (--catch-up) a settle re-read failed or a month \
does not match its archive; 2 usage or configuration error (nothing was claimed).`

  // --from and --to go together; oclif's own usage line would list them as alternatives.
  static override usage = [
    '<%= command.id %> [--date YYYY-MM-DD | --from YYYY-MM-DD --to YYYY-MM-DD | --catch-up [--days N]] [--dry-run] [--output-dir DIR] [--force] [--format text|json] [--stale-after MINUTES] [--verbose]',
  ]

  static override examples = [
    {description: 'Heal the last week: yesterday plus any missing or failed day (the Heroku Scheduler job)', command: '<%= config.bin %> <%= command.id %> --catch-up'},
    {description: 'Process yesterday (UTC) only', command: '<%= config.bin %> <%= command.id %>'},
    {description: 'Process a given day', command: '<%= config.bin %> <%= command.id %> --date 2025-09-28'},
    {description: 'Every day of September, oldest first', command: '<%= config.bin %> <%= command.id %> --from 2025-09-01 --to 2025-09-30'},
    {description: 'See what a 30-day catch-up would fetch, without fetching or recording anything', command: '<%= config.bin %> <%= command.id %> --catch-up --days 30 --dry-run'},
    {description: 'Fetch a done day again, one JSON object per event, and keep a gzipped copy', command: '<%= config.bin %> <%= command.id %> --date 2025-09-28 --force --format json --output-dir ./archive'},
  ]

  static override flags = {
    date: Flags.string({
      description: 'the UTC day to process, YYYY-MM-DD (default: yesterday)',
      helpValue: 'YYYY-MM-DD',
      exclusive: ['from', 'to', 'catch-up'],
    }),
    from: Flags.string({
      description: 'first UTC day of a range to process, YYYY-MM-DD (with --to)',
      helpValue: 'YYYY-MM-DD',
      dependsOn: ['to'],
      exclusive: ['date', 'catch-up'],
    }),
    to: Flags.string({
      description: 'last UTC day of the range, included (with --from)',
      helpValue: 'YYYY-MM-DD',
      dependsOn: ['from'],
      exclusive: ['date', 'catch-up'],
    }),
    'catch-up': Flags.boolean({
      description: 'process yesterday and every day of the last --days that is missing, FAILED, ERROR or abandoned by a crashed run',
      exclusive: ['date', 'from', 'to', 'force'],
    }),
    days: Flags.integer({
      description: `with --catch-up: how many days to look back, yesterday included, 1–${MAX_CATCH_UP_DAYS} (default ${DEFAULT_CATCH_UP_DAYS}, or CATCH_UP_DAYS)`,
      helpValue: 'N',
      min: 1,
      max: MAX_CATCH_UP_DAYS,
      dependsOn: ['catch-up'],
    }),
    'dry-run': Flags.boolean({
      description: 'print which days would be fetched and why, and the API requests it would take; fetch and record nothing',
    }),
    'output-dir': Flags.string({
      description: 'also write each SUCCESS day to DIR/YYYY-MM-DD.ndjson.gz, atomically (default: OUTPUT_DIR)',
      helpValue: 'DIR',
    }),
    force: Flags.boolean({description: 'fetch days again even if they are already SUCCESS'}),
    format: Flags.string({description: 'how events are written on stdout', options: [...OUTPUT_FORMATS], default: 'text'}),
    'stale-after': Flags.integer({
      description: `minutes without a heartbeat after which a PROCESSING record is taken over, 1–${MAX_STALE_AFTER_MINUTES}`,
      helpValue: 'MINUTES',
      default: DEFAULT_STALE_AFTER_MINUTES,
      min: 1,
      max: MAX_STALE_AFTER_MINUTES,
    }),
  }

  /** Where diagnostics go; during a range, a logger that keeps clear of the progress bar. */
  private rangeLog?: Logger
  /** The days this run went through, for the alerts (set before a failure's exit). */
  private finishedDays: readonly FinishedDay[] = []

  public async run(): Promise<DayResult | RangeResult | Plan> {
    const {flags} = await this.parse(Process)
    // A reader that goes away (`| head -1`) makes stdout emit 'error' (EPIPE), which would crash the
    // process; the day job notices it on its own writes (see deliverDay) and reports it.
    if (!process.stdout.listeners('error').includes(ignoreStdoutError)) process.stdout.on('error', ignoreStdoutError)
    // Dates are checked before anything else, so a typo costs no connection.
    const asked = this.askedDays(flags)
    const settings = this.loadSettings({needsHeroku: true, verbose: flags.verbose})
    // The catch-up window needs CATCH_UP_DAYS, hence after the settings.
    const target: Target = asked ?? {mode: 'catch-up', ...catchUpWindow(flags.days ?? settings.processing?.catchUpDays ?? DEFAULT_CATCH_UP_DAYS)}

    const heroku = settings.heroku!
    const staleAfterMinutes = flags['stale-after']
    const planOptions = {
      ...target,
      force: flags.force,
      staleAfterMinutes,
      pageSize: CLIENT_DEFAULTS.pageSize,
      maxAttemptsPerRequest: heroku.maxAttempts ?? CLIENT_DEFAULTS.maxAttempts,
    }

    if (flags['dry-run']) {
      // Reads only, in a read-only transaction: no migration, no claim, no API request, and no
      // embedded database created where there was none.
      const db = await this.openDb({createMissing: false})
      const storeFrom = firstKeptDay(settings.store.retentionDays)
      const plan = await db
        .transaction()
        .setAccessMode('read only')
        .execute(async (trx) => {
          const planned = await planDays(trx, planOptions)
          // What the catch-up does after its days, when the table can tell (every migration applied).
          if (planned.mode !== 'catch-up' || !planned.stateKnown || !settings.store.enabled) return {planned, after: ''}
          const {settleHours} = settings.store
          const settle = settleHours === undefined ? undefined : {hours: settleHours, days: await daysToSettle(trx, {from: planned.from, to: planned.to, settleHours, storeFrom})}
          const months = settings.store.catchUpArchives === false ? undefined : await monthsNeverChecked(trx, {currentMonth: todayUtc().slice(0, 7), storeFrom})
          return {planned, after: renderCompletenessPlan({settle, months})}
        })
      process.stdout.write(renderPlan(plan.planned) + plan.after)
      return plan.planned
    }

    const outputDir = flags['output-dir'] ?? settings.processing?.outputDir
    if (outputDir) await this.checkOutputDir(outputDir)
    const db = await this.openDb()
    await this.migrate(db)

    const run = {
      format: flags.format as OutputFormat,
      force: flags.force,
      staleAfterMinutes,
      // Several beats per stale window, so one slow beat never looks like a crash.
      heartbeatIntervalMs: Math.min(30_000, (staleAfterMinutes * 60_000) / 5),
      outputDir,
      storeFrom: firstKeptDay(settings.store.retentionDays),
      linesPerSecond: settings.processing?.logLinesPerSecond ?? 0,
    }

    // A signal aborts the fetch; the day is then recorded FAILED rather than left PROCESSING.
    const cancel = new AbortController()
    const onSignal = (signal: NodeJS.Signals) => {
      const log = this.rangeLog ?? this.logger
      log.warn(`received ${signal}: stopping`)
      cancel.abort()
    }

    process.once('SIGINT', onSignal).once('SIGTERM', onSignal)
    const before = await this.statusesBefore(db, settings.alerts, target)
    const store = settings.store.enabled ? eventStoreFor(db) : undefined
    try {
      if (target.mode === 'date') return await this.runDay(db, heroku, target.from, {...run, store}, cancel.signal)
      // Read-only, so safe to try again on a fresh connection if its own was killed.
      const plan = await retryOnLostConnection(() => planDays(db, planOptions))
      const quiet = !flags.verbose && QUIET_LEVELS.has(settings.logLevel ?? 'info')
      const rerunFlags = {
        force: flags.force,
        format: run.format,
        outputDir: flags['output-dir'],
        staleAfterMinutes: staleAfterMinutes === DEFAULT_STALE_AFTER_MINUTES ? undefined : staleAfterMinutes,
        verbose: flags.verbose,
      }
      // Every month the range needs is made before any day holds the table (see ensurePartitions).
      // Not for days before the retention window: they are not stored, and retention would drop their months again.
      const stored = plan.attempt.filter((day) => day >= run.storeFrom)
      if (store) await ensurePartitions(db, stored).catch((error: unknown) => this.logger.warn(`event store: ${safeErrorMessage(error)}; each day tries again`))
      const ranged = {...run, store, days: flags.days, reserve: settings.processing?.rateLimitReserve, quiet, rerunFlags, settleHours: settings.store.settleHours, checkArchives: settings.store.catchUpArchives !== false, webhook: settings.alerts.webhook}
      return await this.runRange(db, heroku, plan, ranged, cancel.signal)
    } finally {
      // The run's alerts are recorded even after a signal (one quick insert): a day a signal
      // failed is then announced by the next run that sends alerts.
      await this.raiseRunAlerts(db, settings.alerts, before)
      // Stopped by a signal: leave now; the next run applies retention, delivers and sends the alerts.
      if (!cancel.signal.aborted) {
        await this.retention(db, settings.store.retentionDays)
        // A signal during delivery ends it between batches: the sink's position is kept, its lease released.
        const deliveryDeps = {db, logger: this.logger, userAgent: `audit-logger/${this.config.version}`, alerts: settings.alerts}
        if (settings.sink) await runDelivery(deliveryDeps, settings.sink, {retryStopped: false, signal: cancel.signal})
        // After delivery: a sink stopped now is announced by this run.
        if (!cancel.signal.aborted && settings.alerts.webhook) await flushAlerts({db, webhook: settings.alerts.webhook, logger: this.logger, source: settings.alerts.source})
      }

      process.off('SIGINT', onSignal).off('SIGTERM', onSignal)
    }
  }

  /** The asked-for days' statuses before the run, so that a FAILED day's SUCCESS is announced as its recovery. */
  private async statusesBefore(db: Kysely<Database>, alerts: AlertsConfig, target: Target): Promise<Map<string, ProcessStatus>> {
    if (!alerts.webhook) return new Map()
    try {
      return await dayStatuses(db, target)
    } catch (error) {
      this.logger.warn(`alerts: could not read the days' records (${safeErrorMessage(error)}); no recovery is announced this run`)
      return new Map()
    }
  }

  /**
   * Records the run's alerts (ALERT_WEBHOOK_URL): a day that ended FAILED or ERROR, a recovered
   * day, yesterday not SUCCESS past HEALTH_REQUIRE_YESTERDAY_AFTER. Never changes the exit code.
   */
  private async raiseRunAlerts(db: Kysely<Database>, alerts: AlertsConfig, before: ReadonlyMap<string, ProcessStatus>): Promise<void> {
    if (!alerts.webhook) return
    try {
      await raiseDayAlerts(db, alerts.webhook, before, this.finishedDays)
      await raiseYesterdayAlert(db, alerts, new Date())
    } catch (error) {
      this.logger.warn(`alerts: could not record alerts now (${safeErrorMessage(error)}); they are not announced`)
    }
  }

  /** Removes the events of days older than EVENT_RETENTION_DAYS; never changes the exit code. */
  private async retention(db: Kysely<Database>, retentionDays: number): Promise<void> {
    try {
      const line = retentionLine(await applyRetention(db, retentionDays), retentionDays)
      if (line) this.logger.info(line)
    } catch (error) {
      this.logger.warn(`retention: could not remove old events now (${safeErrorMessage(error)}); the next run tries again`)
    }
  }

  /**
   * The validated --date or --from/--to, or undefined for --catch-up. Exactly one of the three is
   * given: oclif's exclusive/dependsOn enforce it.
   */
  private askedDays(flags: {date?: string; from?: string; to?: string; 'catch-up': boolean}): Target | undefined {
    if (flags['catch-up']) return undefined
    if (flags.from !== undefined && flags.to !== undefined) return {mode: 'range', ...parseProcessableRange(flags.from, flags.to)}
    const day = flags.date === undefined ? yesterdayUtc() : parseProcessableDay(flags.date)
    return {mode: 'date', from: day, to: day}
  }

  /** An output directory that cannot be written is a usage error, found before any day is claimed. */
  private async checkOutputDir(dir: string): Promise<void> {
    try {
      // Level by level, never mkdir's recursive mode, which loops forever under /proc.
      await ensureDirectory(dir)
      await access(dir, constants.W_OK)
    } catch (error) {
      throw new UsageError(`cannot write to the output directory ${dir}: ${(error as NodeJS.ErrnoException).code ?? safeErrorMessage(error)}`, 'check --output-dir (or OUTPUT_DIR) and its permissions')
    }
  }

  private client(heroku: HerokuConfig, log: () => Logger, currentDay: () => string): AuditClient {
    return createAuditClient({
      ...heroku,
      userAgent: `audit-logger/${this.config.version}`,
      onNotice: (notice) => {
        const day = currentDay()
        if (notice.kind === 'retry') log().warn(`${day}: ${notice.reason}; retrying in ${(notice.waitMs / 1000).toFixed(1)} s (attempt ${notice.attempt + 1})`)
        else if (notice.kind === 'slow-down') log().warn(`${day}: RateLimit-Remaining is ${notice.rateLimitRemaining}; pausing ${notice.waitMs} ms between requests`)
        else log().warn(`${day}: Heroku API warning: ${notice.message}`)
      },
    })
  }

  private async runDay(
    db: Kysely<Database>,
    heroku: HerokuConfig,
    day: string,
    run: {format: OutputFormat; force: boolean; staleAfterMinutes: number; heartbeatIntervalMs: number; outputDir?: string; storeFrom?: string; linesPerSecond: number; store?: EventStore},
    signal: AbortSignal,
  ): Promise<DayResult> {
    const client = this.client(heroku, () => this.logger, () => day)
    this.logger.info(`processing ${day}${run.force ? ' (forced)' : ''}`)
    const {store, ...options} = run
    const result = await processDay({db, client, output: process.stdout, logger: this.logger, store}, {day, ...options, signal})
    const line = dayReportLine(result)
    this.logger[line.level](line.message)
    this.finishedDays = [result]
    if (exitCodeFor([result.outcome]) !== EXIT.ok) this.exit(EXIT.failed)
    return result
  }

  private async runRange(
    db: Kysely<Database>,
    heroku: HerokuConfig,
    plan: Plan,
    run: {
      format: OutputFormat
      force: boolean
      staleAfterMinutes: number
      heartbeatIntervalMs: number
      outputDir?: string
      storeFrom?: string
      linesPerSecond: number
      store?: EventStore
      days?: number
      reserve?: number
      quiet: boolean
      rerunFlags: Pick<RerunFlags, 'force' | 'format' | 'outputDir' | 'staleAfterMinutes' | 'verbose'>
      settleHours?: number
      checkArchives?: boolean
      webhook?: AlertWebhook
    },
    signal: AbortSignal,
  ): Promise<RangeResult> {
    const left = plan.days.length - plan.attempt.length
    if (plan.mode === 'catch-up') {
      const alone = left > 0 ? `; ${left} other day(s) are SUCCESS or held by a live run and are left alone` : ''
      this.logger.info(`catch-up over ${plan.from}..${plan.to}: ${plan.attempt.length} day(s) to process${alone}`)
      if (plan.attempt.length === 0) {
        this.logger.success(`nothing to catch up: every day of ${plan.from}..${plan.to} is SUCCESS or held by a live run`)
        if (run.store && !(await this.completeness(db, heroku, plan, {...run, store: run.store}, undefined, signal))) this.exit(EXIT.failed)
        return {results: [], exitCode: 0}
      }
    } else {
      this.logger.info(`processing ${plan.days.length} day(s), ${plan.from}..${plan.to}${run.force ? ' (forced)' : ''}`)
    }

    const progress = createProgress(process.stderr, this.logger, {quiet: run.quiet})
    const log = progress.wrap(this.logger)
    this.rangeLog = log
    let current = plan.attempt[0]
    const client = this.client(heroku, () => log, () => current)
    const result = await runRange(
      {db, client, output: process.stdout, logger: this.logger, progress, store: run.store},
      {
        days: plan.attempt,
        format: run.format,
        force: run.force,
        staleAfterMinutes: run.staleAfterMinutes,
        heartbeatIntervalMs: run.heartbeatIntervalMs,
        outputDir: run.outputDir,
        storeFrom: run.storeFrom,
        linesPerSecond: run.linesPerSecond,
        rateLimitReserve: run.reserve ?? DEFAULT_RATE_LIMIT_RESERVE,
        signal,
        onDayStart: (day) => (current = day),
      },
    )

    const rerun = rerunCommand(this.config.bin, {...run.rerunFlags, mode: plan.mode, to: plan.to, days: run.days}, result.results)
    this.logToStderr(renderRangeSummary(result, {rerun}).trimEnd())
    this.finishedDays = result.results
    let exitCode = result.exitCode
    // The days are done; a catch-up that was not cut short then proves them (see catch-up.ts).
    if (plan.mode === 'catch-up' && run.store && !result.stopped && !signal.aborted) {
      const lastReading = result.results.findLast((day) => day.rateLimitRemaining !== undefined)?.rateLimitRemaining
      const complete = await this.completeness(db, heroku, plan, {...run, store: run.store}, lastReading, signal)
      if (!complete) exitCode = EXIT.failed
    }

    if (exitCode !== EXIT.ok) this.exit(EXIT.failed)
    return result
  }

  /**
   * After a catch-up's days: the settle re-reads of its window (SETTLE_HOURS), then the archives
   * of months now over that were never checked (CATCH_UP_ARCHIVES; at most MAX_CATCH_UP_MONTHS a
   * run; `archives verify` also rechecks a month whose file changed), all under the rate budget. False when a re-read or a month failed, or a month does not match its archive.
   */
  private async completeness(
    db: Kysely<Database>,
    heroku: HerokuConfig,
    plan: Plan,
    run: {format: OutputFormat; storeFrom?: string; linesPerSecond: number; store: EventStore; reserve?: number; settleHours?: number; checkArchives?: boolean; webhook?: AlertWebhook},
    rateLimitRemaining: number | undefined,
    signal: AbortSignal,
  ): Promise<boolean> {
    const log = this.logger
    const reserve = run.reserve ?? DEFAULT_RATE_LIMIT_RESERVE
    let ok = true
    let remaining = rateLimitRemaining
    let settled: SettleRun | undefined
    if (run.settleHours !== undefined) {
      const days = await daysToSettle(db, {from: plan.from, to: plan.to, settleHours: run.settleHours, storeFrom: run.storeFrom})
      if (days.length > 0) {
        log.info(`settling ${days.length} day(s) collected over ${run.settleHours} h ago: reading each once more`)
        let current = days[0]
        const client = this.client(heroku, () => log, () => current)
        settled = await settleDays(
          {db, client: {fetchDay: (day, options) => ((current = day), client.fetchDay(day, options))}, store: run.store, output: process.stdout, logger: log},
          {days, format: run.format, linesPerSecond: run.linesPerSecond, reserve, rateLimitRemaining: remaining, signal},
        )
        for (const result of settled.results) {
          const line = settleLine(result)
          log[line.level](line.message)
          remaining = result.rateLimitRemaining ?? remaining
        }

        if (settled.results.some((result) => result.outcome === 'failed')) ok = false
        if (settled.stopped === 'budget') log.info(`settle: ${days.length - settled.results.length} day(s) left for a later run by the rate budget`)
      }
    }

    let months: MonthsRun | undefined
    const budgetLeft = reserve === 0 || remaining === undefined || remaining >= reserve
    if (run.checkArchives && !signal.aborted && budgetLeft && settled?.stopped === undefined) {
      try {
        const unchecked = await monthsNeverChecked(db, {currentMonth: todayUtc().slice(0, 7), storeFrom: run.storeFrom})
        const archives = createArchiveClient({...heroku, userAgent: `audit-logger/${this.config.version}`})
        const listed = unchecked.length > 0 ? await archives.listArchives(signal) : []
        const due = (await monthsToVerify(db, listed, {storeFrom: run.storeFrom, wholeMonthsOnly: true})).filter((info) => unchecked.includes(info.month)).slice(0, MAX_CATCH_UP_MONTHS)
        if (due.length > 0) {
          log.info(`checking ${due.length} month(s) against Heroku's archives: ${due.map((info) => info.month).join(', ')}`)
          months = await runArchiveMonths({db, store: run.store, archives, output: process.stdout, logger: log}, due.map((info) => ({month: info.month})), {
            fill: false,
            format: run.format,
            storeFrom: run.storeFrom,
            linesPerSecond: run.linesPerSecond,
            signal,
          })
          if (months.exitCode !== EXIT.ok) ok = false
        }
      } catch (error) {
        log.warn(`archives: could not list Heroku's archives now (${safeErrorMessage(error)}); the next catch-up tries again`)
      }
    }

    try {
      await raiseCompletenessAlerts(db, run.webhook, {settled: settled?.results, months: months?.results})
    } catch (error) {
      log.warn(`alerts: could not record alerts now (${safeErrorMessage(error)}); they are not announced`)
    }

    return ok
  }
}
