/**
 * The embedded database from the command line, with real processes (bin/run.js) and no
 * PostgreSQL server: the README's newcomer path, the lock between processes, Heroku's dynos, and
 * which engine a run loads.
 */
import {existsSync, mkdtempSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {fileURLToPath} from 'node:url'

import {expect} from 'chai'

import {generateEvents} from '../fake-heroku/events.js'
import {type FakeHeroku, startFakeHeroku} from '../fake-heroku/server.js'
import {type CliResult, cliEnv, runCli, startCli} from '../support/cli.js'
import {itWithServer} from '../support/db.js'
import {freePort} from '../support/helpers.js'
import {MIGRATION_COUNT} from '../support/migrations.js'

const IMPORT_LOG_HOOK = fileURLToPath(new URL('../support/import-log.mjs', import.meta.url))
const DAY = '2025-06-15'
const OTHER_DAY = '2025-06-16'
const EVENTS = 137
const IN_USE_HINT = 'wait for it to finish, or set DATABASE_URL to use PostgreSQL'

function lines(text: string): string[] {
  return text.split('\n').filter((line) => line.length > 0)
}

/** The stderr lines that name the database, with consola's icon. */
function databaseLines(stderr: string): string[] {
  return lines(stderr).filter((line) => line.includes(' using '))
}

describe('the embedded database from the command line (real processes, no DATABASE_URL)', function () {
  this.timeout(120_000)
  let fake: FakeHeroku
  let scratch: string

  before(async () => {
    fake = await startFakeHeroku({events: {[DAY]: generateEvents(DAY, EVENTS), [OTHER_DAY]: generateEvents(OTHER_DAY, 3)}})
    scratch = mkdtempSync(join(tmpdir(), 'audit-logger-embedded-cli-'))
  })

  after(async () => {
    await fake?.close()
    if (scratch) rmSync(scratch, {recursive: true, force: true})
  })

  /** What the README tells a newcomer to export, with the data directory in a scratch folder. */
  function newcomerEnv(dataDir: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
    return cliEnv({
      HEROKU_API_URL: fake.url,
      HEROKU_API_TOKEN: fake.token,
      HEROKU_ACCOUNT_ID: 'acme',
      AUDIT_LOGGER_DATA_DIR: dataDir,
      ...extra,
    })
  }

  it('a newcomer’s path: process a past day, serve shows it, a second process is refused while serve runs, SIGTERM frees the directory', async () => {
    const dataDir = join(scratch, 'newcomer')
    const lockFile = join(dataDir, 'audit-logger.lock')
    const env = newcomerEnv(dataDir)

    // 1. `audit-logger process --date <a past day>` creates the embedded database and records the day.
    const processed = await runCli(['process', '--date', DAY], env)
    expect(processed.code, processed.stderr).to.equal(0)
    expect(lines(processed.stdout)).to.have.length(EVENTS)
    expect(databaseLines(processed.stderr)).to.deep.equal([`ℹ using embedded PostgreSQL (PGlite) at ${dataDir}`])
    expect(processed.stderr).to.include(`${DAY} SUCCESS`)
    expect(existsSync(join(dataDir, 'pgdata', 'PG_VERSION')), 'the cluster is on disk').to.equal(true)
    expect(existsSync(lockFile), 'process released the directory').to.equal(false)

    // 2. `audit-logger serve` shows the day.
    const port = await freePort()
    const server = startCli(['serve', '--port', String(port)], env)
    let serverErr = ''
    server.stderr!.on('data', (chunk: Buffer) => (serverErr += chunk.toString()))
    try {
      const deadline = Date.now() + 30_000
      while (!serverErr.includes('listening')) {
        if (server.exitCode !== null) expect.fail(`serve exited (${server.exitCode}): ${serverErr}`)
        if (Date.now() > deadline) expect.fail(`serve did not start: ${serverErr}`)
        await sleep(50)
      }

      expect(databaseLines(serverErr)).to.deep.equal([`ℹ using embedded PostgreSQL (PGlite) at ${dataDir}`])
      expect(readFileSync(lockFile, 'utf8'), 'serve holds the directory').to.equal(`${server.pid}\n`)
      const page = await fetch(`http://127.0.0.1:${port}/`)
      expect(page.status).to.equal(200)
      const html = await page.text()
      expect(html).to.include(`href="/logs/${DAY}"`)
      expect(html).to.match(/status-success">SUCCESS</)
      const api = await fetch(`http://127.0.0.1:${port}/api/logs/${DAY}`)
      expect(api.status).to.equal(200)
      expect(await api.json()).to.deep.include({date: DAY, status: 'SUCCESS', events: EVENTS})

      // 3. Meanwhile another process on the same directory fails fast, with one clear line, and claims nothing.
      const started = Date.now()
      const refused = await runCli(['process', '--date', OTHER_DAY], env)
      expect(Date.now() - started, 'fails within seconds').to.be.below(15_000)
      expect(refused.code).to.equal(2)
      expect(refused.stdout).to.equal('')
      expect(refused.stderr).to.equal(`Error: the embedded database at ${dataDir} is in use by another audit-logger process (pid ${server.pid}) — ${IN_USE_HINT}\n`)
      expect(fake.requestsForDay(OTHER_DAY)).to.have.length(0)
    } finally {
      // 4. SIGTERM: serve closes the database and releases the directory.
      server.kill('SIGTERM')
    }

    const stopped: CliResult = await server.result
    expect(stopped.code, stopped.stderr).to.equal(0)
    expect(stopped.stderr).to.include('received SIGTERM: closing')
    expect(existsSync(lockFile), 'serve released the directory').to.equal(false)

    // 5. The directory is free again, and the day is still there.
    const status = await runCli(['db', 'status', '--json'], env)
    expect(status.code, status.stderr).to.equal(0)
    const report = JSON.parse(status.stdout) as {records: Array<{date: string; status: string; events: number}>}
    expect(report.records.map((r) => ({date: r.date, status: r.status, events: r.events}))).to.deep.equal([{date: DAY, status: 'SUCCESS', events: EVENTS}])
  })

  it('a dry run and db status on a data directory never used create nothing (the plan: every day missing)', async () => {
    const dataDir = join(scratch, 'never-used')
    const result = await runCli(['process', '--date', DAY, '--dry-run'], newcomerEnv(dataDir))
    expect(result.code, result.stderr).to.equal(0)
    expect(databaseLines(result.stderr).join('\n')).to.include(`embedded PostgreSQL (PGlite) at ${dataDir}, which does not exist yet (and is not created)`)
    expect(result.stdout).to.include(DAY).and.match(/pending migration\(s\), so its records were not read/)
    expect(existsSync(dataDir), 'no directory made').to.equal(false)

    const status = await runCli(['db', 'status'], newcomerEnv(dataDir))
    expect(status.code, status.stderr).to.equal(0)
    expect(status.stdout).to.match(new RegExp(`${MIGRATION_COUNT} migration\\(s\\) pending.*\\n.*db init.*\\nEvent store: on, keeping 365 days \\(EVENT_RETENTION_DAYS\\)\\n {2}not created yet: its migration is pending\\n$`))
    expect(existsSync(dataDir), 'db status made no directory either').to.equal(false)
  })

  it('refuses to run on a Heroku dyno without DATABASE_URL, creating nothing', async () => {
    const dataDir = join(scratch, 'dyno')
    for (const dyno of ['scheduler.4021', 'web.1']) {
      const result = await runCli(['process', '--date', DAY], newcomerEnv(dataDir, {DYNO: dyno}))
      expect(result.code).to.equal(2)
      expect(result.stderr).to.equal(
        'Error: DATABASE_URL is not set, and the embedded database cannot live on a Heroku dyno (its disk is wiped on every restart) — add Heroku Postgres, which sets DATABASE_URL: heroku addons:create heroku-postgresql:essential-0\n',
      )
    }

    expect(existsSync(dataDir)).to.equal(false)
  })

  it('loads PGlite for the embedded database (so the recorder below can see it)', async () => {
    const importLog = join(scratch, 'imports-embedded.log')
    const result = await runWithImportLog(['db', 'init'], newcomerEnv(join(scratch, 'imports')), importLog)
    expect(result.code, result.stderr).to.equal(0)
    expect(readFileSync(importLog, 'utf8'), 'the recorder sees the embedded engine load').to.include('@electric-sql/pglite')
  })

  itWithServer('a DATABASE_URL run loads no PGlite, and names the server without its password', async () => {
    const url = new URL(process.env.TEST_DATABASE_URL!)
    url.password = 'Sentinel-Embedded-Cli-Pass'
    const importLog = join(scratch, 'imports-postgres.log')
    const result = await runWithImportLog(['db', 'status'], newcomerEnv(join(scratch, 'unused'), {DATABASE_URL: url.toString()}), importLog)
    expect(result.code, result.stderr).to.equal(0)
    expect(databaseLines(result.stderr)).to.deep.equal([`ℹ using PostgreSQL at ${url.hostname}:${url.port}${url.pathname}`])
    expect(result.stderr + result.stdout).to.not.include('Sentinel-Embedded-Cli-Pass')
    const loaded = readFileSync(importLog, 'utf8')
    expect(loaded, 'the recorder saw the command load').to.include('/dist/commands/db/status.js')
    expect(loaded).to.not.include('pglite')
    expect(existsSync(join(scratch, 'unused'))).to.equal(false)
  }, 'runs db status on DATABASE_URL')

  /** Runs bin/run.js with every module it resolves written to `importLog`. */
  function runWithImportLog(args: string[], env: NodeJS.ProcessEnv, importLog: string): Promise<CliResult> {
    return runCli(args, {...env, IMPORT_LOG: importLog, NODE_OPTIONS: `--import ${IMPORT_LOG_HOOK}`})
  }
})
