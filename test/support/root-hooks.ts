/**
 * One database per test run, migrated once: TEST_DATABASE_URL points at it for every suite.
 * Every database the run creates is dropped at the end.
 */
import {createScratchDatabase, dropScratchDatabases, openTestDb} from './db.js'
import {migrateToLatest} from '../../src/lib/db/migrate.js'

export const mochaHooks = {
  async beforeAll(this: Mocha.Context) {
    this.timeout(60_000)
    const url = await createScratchDatabase('main')
    const db = openTestDb(url)
    try {
      await migrateToLatest(db)
    } finally {
      await db.destroy()
    }

    process.env.TEST_DATABASE_URL = url
  },

  async afterAll(this: Mocha.Context) {
    this.timeout(60_000)
    await dropScratchDatabases()
  },
}
