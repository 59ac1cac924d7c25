import {mkdtempSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import type {Kysely} from 'kysely'

import type {Database} from '../../src/lib/db/schema.js'
import {type FakeHeroku, type FakeHerokuOptions, startFakeHeroku} from '../fake-heroku/server.js'
import {cliEnv} from './cli.js'
import {openDataDirDb} from './data-dir-db.js'
import {type EngineName, clearLog, createScratchDatabase, openTestDb} from './db.js'

export interface JobSuite {
  fake: FakeHeroku
  db: Kysely<Database>
  /** The environment a CLI run needs against this fake and the suite's database. */
  env: NodeJS.ProcessEnv
  /** The variables naming the suite's database to a command: DATABASE_URL, or AUDIT_LOGGER_DATA_DIR without it. */
  dbVars: Record<string, string | undefined>
  /** What to change in dbVars for a new, empty database on the suite's engine (nothing created yet on the embedded one). */
  emptyDbVars(label: string): Promise<Record<string, string>>
}

export interface JobSuiteOptions {
  fake?: FakeHerokuOptions
  /** Opens the suite's database (default: the run's PostgreSQL database, TEST_DATABASE_URL). */
  open?: () => Promise<Kysely<Database>>
  /** RateLimit-Remaining the fake starts each test with (default: the fake's own). */
  rateLimitRemaining?: number
  /**
   * 'embedded': the commands use a data directory of the suite's own (AUDIT_LOGGER_DATA_DIR, no
   * DATABASE_URL), and `db` opens it only while in use (data-dir-db.ts), so that real processes and
   * commands run in this process can open it in turn. Default: the run's PostgreSQL database.
   */
  engine?: EngineName
}

/** A suite's database on its engine (as useJobSuite opens it), for suites that need no fake API. */
export async function openSuiteDatabase(options: Pick<JobSuiteOptions, 'engine' | 'open'>): Promise<Pick<JobSuite, 'db' | 'dbVars' | 'emptyDbVars'>> {
  const newDataDir = (label: string) => mkdtempSync(join(tmpdir(), `audit-logger-${label}-`))
  if (options.engine === 'embedded') {
    const dataDir = newDataDir('job-suite')
    return {
      db: await openDataDirDb(dataDir),
      dbVars: {DATABASE_URL: undefined, AUDIT_LOGGER_DATA_DIR: dataDir},
      emptyDbVars: async (label) => ({AUDIT_LOGGER_DATA_DIR: join(newDataDir(label), 'data')}),
    }
  }

  return {
    db: options.open ? await options.open() : openTestDb(process.env.TEST_DATABASE_URL!),
    dbVars: {DATABASE_URL: process.env.TEST_DATABASE_URL},
    emptyDbVars: async (label) => ({DATABASE_URL: await createScratchDatabase(label)}),
  }
}

/**
 * The hooks the day-job suites share: a fake Heroku API and a database, opened once and closed at
 * the end; before each test the fake forgets its scripts and requests and the table is emptied.
 * `use` gets them once they are open, to set the suite's own variables:
 *
 *   useJobSuite((suite) => ({fake, db, env} = suite), {fake: {events: …}})
 */
export function useJobSuite(use: (suite: JobSuite) => void, options: JobSuiteOptions = {}): void {
  let suite: JobSuite | undefined

  before(async () => {
    const fake = await startFakeHeroku(options.fake)
    const database = await openSuiteDatabase(options)
    const env = cliEnv({...database.dbVars, HEROKU_API_URL: fake.url, HEROKU_API_TOKEN: fake.token, HEROKU_ACCOUNT_ID: 'acme'})
    suite = {fake, env, ...database}
    use(suite)
  })

  after(async () => {
    await suite?.db.destroy()
    await suite?.fake.close()
  })

  beforeEach(async () => {
    suite!.fake.reset()
    if (options.rateLimitRemaining !== undefined) suite!.fake.setRateLimitRemaining(options.rateLimitRemaining)
    await clearLog(suite!.db)
  })
}
