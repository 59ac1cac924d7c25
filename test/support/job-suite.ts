import type {Kysely} from 'kysely'

import type {Database} from '../../src/lib/db/schema.js'
import {type FakeHeroku, type FakeHerokuOptions, startFakeHeroku} from '../fake-heroku/server.js'
import {cliEnv} from './cli.js'
import {clearLog, openTestDb} from './db.js'

export interface JobSuite {
  fake: FakeHeroku
  db: Kysely<Database>
  /** The environment a CLI run needs against this fake and the run's PostgreSQL database. */
  env: NodeJS.ProcessEnv
}

export interface JobSuiteOptions {
  fake?: FakeHerokuOptions
  /** Opens the suite's database (default: the run's PostgreSQL database, TEST_DATABASE_URL). */
  open?: () => Promise<Kysely<Database>>
  /** RateLimit-Remaining the fake starts each test with (default: the fake's own). */
  rateLimitRemaining?: number
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
    const db = options.open ? await options.open() : openTestDb(process.env.TEST_DATABASE_URL!)
    const env = cliEnv({DATABASE_URL: process.env.TEST_DATABASE_URL, HEROKU_API_URL: fake.url, HEROKU_API_TOKEN: fake.token, HEROKU_ACCOUNT_ID: 'acme'})
    suite = {fake, db, env}
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
