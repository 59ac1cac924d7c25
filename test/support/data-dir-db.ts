/**
 * A test's view of an embedded data directory that commands use too (real bin/run.js processes, or
 * oclif's runCommand in this process). A directory admits one opener at a time, this process
 * included, so the view holds it only while it runs a statement or a transaction: each use opens
 * the directory (taking its lock, as any run does) and closes it after, leaving it free for the
 * next command. A command that runs while the test is looking waits for the lock, as it would
 * for another process; a test that must look while a run holds the directory needs a server.
 */
import {
  CompiledQuery,
  type DatabaseConnection,
  type Driver,
  Kysely,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type QueryResult,
  type TransactionSettings,
} from 'kysely'

import {type EmbeddedDb, openEmbeddedDb} from '../../src/lib/db/embedded.js'
import {migrateToLatest} from '../../src/lib/db/migrate.js'
import {beginTransaction, commitTransaction} from '../../src/lib/db/pglite-dialect.js'
import type {Database} from '../../src/lib/db/schema.js'

class DirectoryConnection implements DatabaseConnection {
  constructor(readonly embedded: EmbeddedDb) {}

  executeQuery<R>(compiledQuery: CompiledQuery): Promise<QueryResult<R>> {
    return this.embedded.db.executeQuery<R>(compiledQuery)
  }

  async *streamQuery<R>(compiledQuery: CompiledQuery): AsyncIterableIterator<QueryResult<R>> {
    yield await this.executeQuery<R>(compiledQuery)
  }
}

/** One connection = the directory opened for it; released = closed, and its lock with it. */
class DirectoryDriver implements Driver {
  constructor(private readonly dataDir: string) {}

  async init(): Promise<void> {}

  async acquireConnection(): Promise<DatabaseConnection> {
    // Another look of this test, or a command still closing, holds the directory: wait for it.
    return new DirectoryConnection(await openEmbeddedDb(this.dataDir, {lockWaitMs: 30_000, lockPollMs: 20}))
  }

  beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    return beginTransaction(connection, settings)
  }

  commitTransaction(connection: DatabaseConnection): Promise<void> {
    return commitTransaction(connection)
  }

  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('rollback'))
  }

  async releaseConnection(connection: DatabaseConnection): Promise<void> {
    await (connection as DirectoryConnection).embedded.close()
  }

  async destroy(): Promise<void> {}
}

/** The database in `dataDir` (created and migrated now if new), opened only while in use. */
export async function openDataDirDb(dataDir: string): Promise<Kysely<Database>> {
  const embedded = await openEmbeddedDb(dataDir)
  try {
    await migrateToLatest(embedded.db)
  } finally {
    await embedded.close()
  }

  return new Kysely<Database>({
    dialect: {
      createAdapter: () => new PostgresAdapter(),
      createDriver: () => new DirectoryDriver(dataDir),
      createIntrospector: (db) => new PostgresIntrospector(db),
      createQueryCompiler: () => new PostgresQueryCompiler(),
    },
  })
}
