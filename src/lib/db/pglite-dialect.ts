import {createRequire} from 'node:module'

import type {PGlite, Results} from '@electric-sql/pglite'
import {
  AbortedTransactionError,
  CompiledQuery,
  type DatabaseConnection,
  type DatabaseIntrospector,
  type Dialect,
  type DialectAdapter,
  type Driver,
  type Kysely,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type QueryCompiler,
  type QueryResult,
  type TransactionSettings,
} from 'kysely'
import pg from 'pg'

import {typeParsers} from './connection.js'

/*
 * A Kysely dialect over PGlite (PostgreSQL compiled to WebAssembly, in this process). The SQL is
 * PostgreSQL's, so the compiler, adapter and introspector are Kysely's own Postgres ones; only the
 * driver is ours. Its contract: a query gives the same JavaScript values as it does through pg
 * with connection.ts's settings, so the repositories cannot tell the engines apart.
 */

// pg's own conversion of JavaScript parameters to text (arrays, Dates, objects, Buffers). Public
// through pg's "./lib/*" export; pg is pinned, and test/db/embedded.test.ts checks the round trip.
const {prepareValue} = createRequire(import.meta.url)('pg/lib/utils') as {prepareValue: (value: unknown) => unknown}

type Parse = (value: string) => unknown

/**
 * The parser pg gets from connection.ts for this type (a `date` stays 'YYYY-MM-DD', a naive
 * `timestamp` is UTC, int8 becomes a number, the rest as pg-types parses them), so both engines
 * give the same values. PGlite passes the type id as a second argument; pg's parsers take one.
 */
function parserFor(oid: number): Parse {
  const parse = typeParsers.getTypeParser(oid, 'text') as Parse
  return (value) => parse(value)
}

// pg-types answers an unknown type (0 is InvalidOid) with one shared function that keeps the text.
const INVALID_OID: number = 0
const PG_TEXT = pg.types.getTypeParser(INVALID_OID, 'text')
// Built-in types have ids below 16384 (PostgreSQL's FirstNormalObjectId).
const PG_PARSED_OIDS = Array.from({length: 16_384}, (_, oid) => oid).filter((oid) => pg.types.getTypeParser(oid, 'text') !== PG_TEXT)

/**
 * Parsers for every type either library would convert: PGlite has its own (dates as Date,
 * numbers, booleans, arrays of every type) that differ from pg's, so each is replaced by pg's.
 */
function pgCompatibleParsers(pglite: PGlite): Record<number, Parse> {
  const oids = new Set([...PG_PARSED_OIDS, ...Object.keys(pglite.parsers).map(Number)])
  return Object.fromEntries([...oids].filter((oid) => Number.isInteger(oid)).map((oid) => [oid, parserFor(oid)]))
}

/**
 * Parameters arrive already converted by pg's prepareValue (text, or a Buffer sent as binary, as
 * pg does): PGlite must send them as they are, not convert them again (its bytea one rejects text).
 */
function passThroughSerializers(pglite: PGlite): Record<number, (value: string) => string> {
  const oids = Object.keys(pglite.serializers).map(Number).filter((oid) => Number.isInteger(oid))
  return Object.fromEntries(oids.map((oid) => [oid, (value: string) => value]))
}

/** A first-come, first-served lock: PGlite is one session, so one user at a time. */
class Mutex {
  #tail: Promise<void> = Promise.resolve()

  /** Resolves, in call order, with the function that lets the next caller in. */
  lock(): Promise<() => void> {
    let unlock!: () => void
    const released = new Promise<void>((resolve) => {
      unlock = resolve
    })
    const acquired = this.#tail.then(() => unlock)
    this.#tail = this.#tail.then(() => released)
    return acquired
  }
}

const QUERY_ERROR_EXTRAS = ['params', 'query', 'queryOptions'] as const

class PGliteConnection implements DatabaseConnection {
  readonly #pglite: PGlite
  readonly #options: {rowMode: 'object'; parsers: Record<number, Parse>; serializers: Record<number, (value: string) => string>}

  constructor(pglite: PGlite) {
    this.#pglite = pglite
    this.#options = {rowMode: 'object', parsers: pgCompatibleParsers(pglite), serializers: passThroughSerializers(pglite)}
  }

  async executeQuery<R>(compiledQuery: CompiledQuery): Promise<QueryResult<R>> {
    const result = await this.#run<R>(compiledQuery)
    const {command} = result
    // As Kysely's PostgresDriver does: commitTransaction reads the tag to spot an aborted transaction.
    if (command === 'COMMIT' || command === 'ROLLBACK') return {rows: [{command} as R]}
    const changes = command === 'INSERT' || command === 'UPDATE' || command === 'DELETE' || command === 'MERGE'
    // rowCount is the last statement's; affectedRows adds up every statement of a multi-statement query.
    return {rows: result.rows ?? [], numAffectedRows: changes ? BigInt(result.rowCount ?? result.affectedRows ?? 0) : undefined}
  }

  /** PGlite has no cursors: the whole result is read, then handed out in chunks. */
  async *streamQuery<R>(compiledQuery: CompiledQuery, chunkSize = 100): AsyncIterableIterator<QueryResult<R>> {
    if (!Number.isInteger(chunkSize) || chunkSize <= 0) throw new Error('chunkSize must be a positive integer')
    const {rows} = await this.executeQuery<R>(compiledQuery)
    for (let start = 0; start < rows.length; start += chunkSize) yield {rows: rows.slice(start, start + chunkSize)}
  }

  async #run<R>(compiledQuery: CompiledQuery): Promise<Results<R>> {
    try {
      // Like pg: without parameters, the simple protocol (several statements allowed); with them,
      // a prepared statement, whose parameter types PostgreSQL infers.
      if (compiledQuery.parameters.length === 0) {
        const results = await this.#pglite.exec(compiledQuery.sql, this.#options)
        return results.at(-1) as Results<R>
      }

      const parameters = compiledQuery.parameters.map((value) => prepareValue(value))
      return await this.#pglite.query<R>(compiledQuery.sql, parameters, this.#options)
    } catch (error) {
      // PGlite hangs the query and its parameters on the error; pg's errors carry neither, and a
      // parameter has no business in a log line.
      if (error && typeof error === 'object') for (const key of QUERY_ERROR_EXTRAS) delete (error as Record<string, unknown>)[key]
      throw error
    }
  }
}

export interface PGliteDialectConfig {
  /** The database, or a function that opens it (called once, on first use). The driver closes it on destroy. */
  pglite: PGlite | (() => Promise<PGlite>)
}

/** BEGIN with the isolation level and access mode asked for, on one connection (shared with the tests' directory driver). */
export async function beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
  const modes = [settings.isolationLevel && `isolation level ${settings.isolationLevel}`, settings.accessMode].filter(Boolean)
  await connection.executeQuery(CompiledQuery.raw(modes.length > 0 ? `start transaction ${modes.join(' ')}` : 'begin'))
}

/** COMMIT; PostgreSQL answers it with ROLLBACK when an earlier error aborted the transaction, which is thrown. */
export async function commitTransaction(connection: DatabaseConnection): Promise<void> {
  const {rows} = await connection.executeQuery<{command?: string}>(CompiledQuery.raw('commit'))
  if (rows[0]?.command === 'ROLLBACK') throw new AbortedTransactionError()
}

class PGliteDriver implements Driver {
  readonly #config: PGliteDialectConfig
  readonly #mutex = new Mutex()
  #pglite?: PGlite
  #connection?: PGliteConnection
  #unlock?: () => void
  #destroyed = false

  constructor(config: PGliteDialectConfig) {
    this.#config = config
  }

  async init(): Promise<void> {
    const pglite = typeof this.#config.pglite === 'function' ? await this.#config.pglite() : this.#config.pglite
    await pglite.waitReady
    this.#pglite = pglite
    this.#connection = new PGliteConnection(pglite)
  }

  /**
   * The one connection, held until released: a transaction's statements are never interleaved
   * with anyone else's. (So a query on `db` inside `db.transaction()` waits forever; use `trx`.)
   */
  async acquireConnection(): Promise<DatabaseConnection> {
    const unlock = await this.#mutex.lock()
    if (this.#destroyed || !this.#connection) {
      unlock()
      throw new Error('the embedded database has been closed')
    }

    this.#unlock = unlock
    return this.#connection
  }

  async releaseConnection(): Promise<void> {
    const unlock = this.#unlock
    this.#unlock = undefined
    unlock?.()
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

  async savepoint(connection: DatabaseConnection, name: string): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw(`savepoint ${quoteIdentifier(name)}`))
  }

  async rollbackToSavepoint(connection: DatabaseConnection, name: string): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw(`rollback to savepoint ${quoteIdentifier(name)}`))
  }

  async releaseSavepoint(connection: DatabaseConnection, name: string): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw(`release savepoint ${quoteIdentifier(name)}`))
  }

  /** Waits for the statement or transaction in progress, then closes the database. */
  async destroy(): Promise<void> {
    if (this.#destroyed) return
    this.#destroyed = true
    const unlock = await this.#mutex.lock()
    try {
      if (this.#pglite && !this.#pglite.closed) await this.#pglite.close()
    } finally {
      unlock()
    }
  }
}

function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`
}

export class PGliteDialect implements Dialect {
  readonly #config: PGliteDialectConfig

  constructor(config: PGliteDialectConfig) {
    this.#config = config
  }

  createDriver(): Driver {
    return new PGliteDriver(this.#config)
  }

  createQueryCompiler(): QueryCompiler {
    return new PostgresQueryCompiler()
  }

  createAdapter(): DialectAdapter {
    return new PostgresAdapter()
  }

  createIntrospector(db: Kysely<unknown>): DatabaseIntrospector {
    return new PostgresIntrospector(db)
  }
}
