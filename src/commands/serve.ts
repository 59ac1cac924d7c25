import {join} from 'node:path'

import {Flags} from '@oclif/core'
import closeWithGrace from 'close-with-grace'

import {BaseCommand} from '../base-command.js'
import {type AlertTimer, startAlertTimer} from '../lib/alerts/timer.js'
import {loadWebConfig} from '../lib/config.js'
import {UsageError} from '../lib/errors.js'
import {changeFeedFor} from '../lib/db/change-feed.js'
import {safeErrorMessage} from '../lib/secrets.js'
import {buildApp} from '../lib/web/app.js'
import {readVersionInfo} from '../lib/web/version.js'

export default class Serve extends BaseCommand {
  static override summary = 'serve the status page: the processing log, its summary, a 90-day calendar, deletes, and the stored events'

  static override description = `Listens on 0.0.0.0:$PORT (default 3000). With STATUS_PAGE_USERNAME and \
STATUS_PAGE_PASSWORD set, every route but /healthz needs HTTP basic auth and records can be deleted; with neither, the \
page is read-only, and the events views (personal data) answer only requests from this machine, and none on a \
Heroku dyno. Applies pending migrations first; SIGTERM and SIGINT finish in-flight requests, then exit.`

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    {description: 'On another port, with auth', command: 'STATUS_PAGE_USERNAME=ops STATUS_PAGE_PASSWORD=… <%= config.bin %> <%= command.id %> --port 8080'},
  ]

  static override flags = {
    port: Flags.integer({description: 'port to listen on (default $PORT or 3000)', min: 1, max: 65_535}),
  }

  public async run(): Promise<void> {
    const {flags} = await this.parse(Serve)
    const settings = this.loadSettings({verbose: flags.verbose})
    const web = loadWebConfig(process.env, flags.port)
    const db = await this.openDb()
    await this.migrate(db)
    if (!web.auth) {
      const events = web.onDyno ? 'the events views are refused on a dyno' : 'the events views answer only this machine'
      this.logger.warn(`the status page is read-only: set STATUS_PAGE_USERNAME and STATUS_PAGE_PASSWORD to require sign-in and enable deleting (until then ${events})`)
    }

    const root = this.config.root
    const version = readVersionInfo(process.env, {buildInfoPath: join(root, 'build-info.json'), projectDir: root, packageVersion: this.config.version})
    const changes = changeFeedFor(settings.database, this.logger)
    const app = await buildApp({db, config: web, version, logger: this.logger, changes, store: settings.store})

    // Heroku sends SIGTERM on every restart and allows 30 s: finish in-flight requests, then exit.
    // Answers sent while closing end their keep-alive connection, so close() need not wait it out.
    let closing = false
    let alertTimer: AlertTimer | undefined
    app.addHook('onSend', async (_request, reply) => {
      if (closing) reply.header('Connection', 'close')
    })
    closeWithGrace({delay: 20_000}, async ({signal, err}) => {
      if (err) this.logger.error(`stopping after an unexpected error: ${safeErrorMessage(err)}`)
      else this.logger.info(`received ${signal ?? 'exit'}: closing`)
      closing = true
      await app.close()
      await changes.close()
      // Cuts short a webhook request in flight; what it was sending waits for the next run.
      await alertTimer?.stop()
      // Ends the pool, or closes the embedded database and releases its directory for the next process.
      await this.closeDb()
    })
    const address = await app.listen({host: '0.0.0.0', port: web.port}).catch(async (error: NodeJS.ErrnoException) => {
      await app.close()
      await changes.close()
      throw portProblem(error, web.port)
    })
    this.logger.info(`status page listening on ${address.replace('0.0.0.0', 'localhost')}${web.auth ? ' (basic auth)' : ' (read-only)'}`)
    // ALERT_WEBHOOK_URL: the yesterday check and sending what waits, every 5 minutes.
    if (!closing) alertTimer = startAlertTimer({db, alerts: settings.alerts, logger: this.logger})
    // Keep the command alive: close-with-grace ends the process.
    await new Promise(() => {})
  }
}

/** A port taken or forbidden is the operator's to change: one line saying which, and how. */
export function portProblem(error: NodeJS.ErrnoException, port: number): Error {
  const how = 'pick another with --port N (or PORT=N)'
  if (error.code === 'EADDRINUSE') return new UsageError(`port ${port} is already in use by another program`, how)
  if (error.code === 'EACCES') return new UsageError(`port ${port} needs privileges this user does not have (ports below 1024 usually do)`, how)
  return error
}
