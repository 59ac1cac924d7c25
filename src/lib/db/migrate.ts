import {promises as fs} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import {FileMigrationProvider, type Kysely, type MigrationResultSet, Migrator, sql} from 'kysely'

/** src/migrations when run from source, dist/migrations when built. */
const MIGRATION_FOLDER = fileURLToPath(new URL('../../migrations', import.meta.url))

export function createMigrator(db: Kysely<any>): Migrator {
  return new Migrator({db, provider: new FileMigrationProvider({fs, path, migrationFolder: MIGRATION_FOLDER})})
}

export interface MigrationReport {
  /** Names of the migrations this call applied, oldest first. */
  applied: string[]
  /** Rows found in an audit_events_log made by the old tool, adopted in place. */
  adoptedRows?: number
}

/** Rows of an audit_events_log that exists before our first migration ran: the old tool's. */
async function rowsOfUnmanagedTable(db: Kysely<any>): Promise<number | undefined> {
  const found = await sql<{table: string | null; migrations: string | null}>`
    SELECT to_regclass('audit_events_log')::text AS table, to_regclass('kysely_migration')::text AS migrations
  `.execute(db)
  const {table, migrations} = found.rows[0] ?? {}
  if (!table || migrations) return undefined
  const count = await sql<{n: number}>`SELECT count(*)::int AS n FROM audit_events_log`.execute(db)
  return count.rows[0]?.n
}

/**
 * Applies every pending migration. Safe when several processes start at once: Kysely's migrator
 * holds an advisory lock and runs each batch in one transaction, so the losers find nothing to do.
 */
export async function migrateToLatest(db: Kysely<any>): Promise<MigrationReport> {
  // Nothing pending (every run but the first after an upgrade): Kysely's migrator is not started.
  // It looks for its tables by listing every table with its columns, by name, which fails with
  // "relation … does not exist" when another run drops a month partition meanwhile (retention).
  if ((await pendingMigrations(db)).length === 0) return {applied: [], adoptedRows: undefined}
  const adoptedRows = await rowsOfUnmanagedTable(db)
  let result: MigrationResultSet = await createMigrator(db).migrateToLatest()
  // The same race while migrations are pending: the listing is simply taken again.
  if (isUndefinedTable(result.error)) result = await createMigrator(db).migrateToLatest()
  if (result.error) {
    const failed = result.results?.find((r) => r.status === 'Error')
    const reason = result.error instanceof Error ? result.error.message : String(result.error)
    throw new Error(`migration ${failed?.migrationName ?? ''} failed: ${reason}`.replace('  ', ' '))
  }

  const applied = (result.results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName)
  return {applied, adoptedRows: applied.length > 0 ? adoptedRows : undefined}
}

/** PostgreSQL's undefined_table: a relation dropped between a catalog listing and a lookup by its name. */
function isUndefinedTable(error: unknown): boolean {
  return (error as {code?: unknown} | undefined)?.code === '42P01'
}

export interface MigrationState {
  name: string
  executedAt?: Date
}

export async function migrationState(db: Kysely<any>): Promise<MigrationState[]> {
  const migrations = await createMigrator(db).getMigrations()
  return migrations.map((m) => ({name: m.name, executedAt: m.executedAt}))
}

/** A file Kysely's FileMigrationProvider takes as a migration, and the migration's name. */
function migrationName(file: string): string | undefined {
  if (file.endsWith('.d.ts') || file.endsWith('.d.mts')) return undefined
  const match = /^(.*)\.(?:js|ts|mjs|mts)$/.exec(file)
  return match?.[1]
}

/**
 * The migrations not yet applied, oldest first, from the folder's listing and kysely_migration:
 * unlike migrationState, no migration's code is loaded, so a command that only reads starts sooner.
 */
export async function pendingMigrations(db: Kysely<any>): Promise<string[]> {
  const names = (await fs.readdir(MIGRATION_FOLDER)).map((file) => migrationName(file)).filter((name): name is string => name !== undefined)
  const table = await sql<{exists: boolean}>`SELECT to_regclass('kysely_migration') IS NOT NULL AS exists`.execute(db)
  // No table yet: nothing applied.
  const applied = table.rows[0]?.exists ? (await sql<{name: string}>`SELECT name FROM kysely_migration`.execute(db)).rows : []
  const done = new Set(applied.map((row) => row.name))
  return names.filter((name) => !done.has(name)).sort()
}
