/**
 * Chooses the run's engines before any test file loads (top-level await), then gives the run one
 * database, migrated once:
 *
 * - a PostgreSQL server answers: a throw-away database on it, in TEST_DATABASE_URL, dropped at
 *   the end; suites declared with describeOnEngines also run on the embedded engine;
 * - none answers and CI is not set: the embedded engine alone (TEST_DATABASE_URL stays unset and
 *   openTestDb() hands out the embedded database); the suites that need a server are declared
 *   skipped and named, loudly, at the start and at the end;
 * - none answers under CI: the run stops here. CI must prove everything.
 */
import {mkdirSync} from 'node:fs'
import {join} from 'node:path'

import {migrateToLatest} from '../../src/lib/db/migrate.js'
import {
  adminTarget,
  closeEmbedded,
  createScratchDatabase,
  dropScratchDatabases,
  openTestDb,
  prepareEmbedded,
  probeServer,
  runTempDir,
  serverAvailable,
  setServerAvailable,
  suitesNotRun,
} from './db.js'

const onCi = Boolean(process.env.CI) && !['0', 'false'].includes(process.env.CI!.toLowerCase())

const whyNoServer = await probeServer()
if (whyNoServer !== undefined && onCi) {
  throw new Error(
    `CI=${process.env.CI}: the tests need the PostgreSQL server at ${adminTarget()} (TEST_DATABASE_ADMIN_URL), and it did not answer: ${whyNoServer}`,
  )
}

setServerAvailable(whyNoServer === undefined)

// A command run without DATABASE_URL uses the embedded database in its default directory: in
// tests, never the developer's own (~/.local/share/audit-logger).
process.env.AUDIT_LOGGER_DATA_DIR = join(runTempDir(), 'default-data-dir')

// Every temporary folder the tests make (mkdtemp in os.tmpdir(), which reads TMPDIR each time) goes
// inside the run's own, removed at the end: a run leaves nothing in the system's temp directory.
// Test files load after this file, so even the folders they make at import land there.
const runTmp = join(runTempDir(), 'tmp')
mkdirSync(runTmp)
process.env.TMPDIR = runTmp

function shout(lines: string[]): void {
  const bar = '!'.repeat(100)
  console.warn(`\n${bar}\n${lines.map((line) => `!! ${line}`).join('\n')}\n${bar}\n`)
}

if (whyNoServer !== undefined) {
  shout([
    `NO POSTGRESQL SERVER at ${adminTarget()} (${whyNoServer}):`,
    'the tests run on the embedded engine (PGlite) only. The suites that need a server are skipped and listed at the end.',
    'Start PostgreSQL (or set TEST_DATABASE_ADMIN_URL) to run everything; CI=true requires it.',
  ])
}

export const mochaHooks = {
  async beforeAll(this: Mocha.Context) {
    this.timeout(60_000)
    if (!serverAvailable()) {
      await prepareEmbedded()
      return
    }

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
    await closeEmbedded()
    if (serverAvailable()) await dropScratchDatabases()
    const skipped = suitesNotRun()
    if (skipped.length > 0) {
      shout([
        `NOT RUN: ${skipped.length} suites and tests need a PostgreSQL server at ${adminTarget()}, and none answered:`,
        ...skipped.map(({title, why}) => `  - ${title} (${why})`),
      ])
    }
  },
}
