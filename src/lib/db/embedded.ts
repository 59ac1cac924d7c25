import {existsSync, readFileSync, unlinkSync} from 'node:fs'
import {mkdir, open, readFile, stat, unlink} from 'node:fs/promises'
import path from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import {PGlite} from '@electric-sql/pglite'
import {Kysely} from 'kysely'

import {UsageError} from '../errors.js'
import {PGliteDialect} from './pglite-dialect.js'
import type {Database} from './schema.js'

export {defaultDataDir} from './data-dir.js'

/*
 * The embedded database: PostgreSQL compiled to WebAssembly (PGlite), stored in a data directory,
 * for trying the tool and for single-machine use. PGlite runs inside one process and knows nothing
 * of others, so two processes on one directory would corrupt it: a lock file keeps them apart.
 *
 *   DATA_DIR/pgdata/             the PostgreSQL cluster (initdb wants a directory of its own)
 *   DATA_DIR/audit-logger.lock   the pid of the process using it
 */

const LOCK_FILE = 'audit-logger.lock'
const CLUSTER_DIR = 'pgdata'

/** A lock file without a readable pid this old is a crash between creating and writing it. */
const UNWRITTEN_LOCK_STALE_MS = 2000
/** Breaking a stale lock takes a second, short-lived lock; one this old was left by a crash. */
const TAKEOVER_STALE_MS = 10_000

/**
 * PostgreSQL's settings at the engine's start, after PGlite's own (which these must repeat: the
 * option replaces them). Its shared memory lives in the WebAssembly memory, and all of it is
 * touched as the engine starts: with initdb's shared_buffers (128 MB, in the cluster's
 * postgresql.conf) that was ~150 MB of a later command's ~360 MB peak. 16 MB of buffers (and
 * wal_buffers, which follow them, 512 kB) leave ~30 MB resident: `db status` on a used directory
 * peaks ~125 MB lower, and a stored 100,000-event day is no slower (the pages it reads again are in
 * the OS's cache; see bench/run.ts engine-start and the README). A `-c` here overrides the cluster's
 * file, so directories made before this change get it too.
 */
const START = {startParams: [...PGlite.defaultStartParams, '-c', 'shared_buffers=16MB']}

/**
 * The empty cluster initdb makes, prebuilt by `npm run build` (scripts/prebuild-cluster.mjs): a
 * new data directory (or a dry run's in-memory stand-in) is unpacked from it rather than running
 * initdb here, which took ~4 s and ~900 MB. Found beside the build (dist/), whether this module
 * runs from dist/ or from src/; without a build, initdb runs as before.
 */
const PREBUILT_CLUSTER = [new URL('../../embedded-cluster.tar.gz', import.meta.url), new URL('../../../dist/embedded-cluster.tar.gz', import.meta.url)]

export function prebuiltCluster(): Blob | undefined {
  for (const url of PREBUILT_CLUSTER) {
    try {
      return new Blob([readFileSync(url)])
    } catch {
      // Not at this place: try the next.
    }
  }

  return undefined
}

export interface EmbeddedDb {
  db: Kysely<Database>
  /** Closes the database and releases the directory. Safe to call more than once. */
  close(): Promise<void>
  /** For the "which database" line on stderr: the path, nothing secret. */
  describe: string
  dataDir: string
}

export interface OpenEmbeddedOptions {
  /** How long to wait for another process to release the directory before giving up (default 2 s). */
  lockWaitMs?: number
  /** How often to look again while waiting (default 100 ms). */
  lockPollMs?: number
}

/**
 * Opens (creating on first use) the embedded database in `dataDir`, holding the directory for
 * this process until `close()` or exit. Another live process holding it is a UsageError after
 * a short wait; a lock left by a dead process is taken over. Migrations are the caller's, as
 * with connectDb.
 */
export async function openEmbeddedDb(dataDir: string, options: OpenEmbeddedOptions = {}): Promise<EmbeddedDb> {
  const dir = path.resolve(dataDir)
  try {
    await mkdir(path.join(dir, CLUSTER_DIR), {recursive: true})
  } catch (error) {
    throw new UsageError(
      `cannot create the embedded database directory ${dir} (${codeOf(error) ?? String(error)})`,
      'set AUDIT_LOGGER_DATA_DIR to a writable directory, or DATABASE_URL to use PostgreSQL',
    )
  }

  const lock = await acquireLock(dir, options)
  let pglite: PGlite
  try {
    const cluster = path.join(dir, CLUSTER_DIR)
    const prebuilt = existsSync(path.join(cluster, 'PG_VERSION')) ? undefined : prebuiltCluster()
    pglite = await PGlite.create(cluster, {...START, ...(prebuilt ? {loadDataDir: prebuilt} : {})})
  } catch (error) {
    lock.release()
    const reason = error instanceof Error ? error.message : String(error)
    throw new UsageError(
      `cannot open the embedded database at ${dir}: ${reason}`,
      'if another version of audit-logger made it, move the directory aside; or set DATABASE_URL to use PostgreSQL',
    )
  }

  const db = new Kysely<Database>({dialect: new PGliteDialect({pglite})})
  let closing: Promise<void> | undefined
  return {
    db,
    dataDir: dir,
    describe: `embedded PostgreSQL (PGlite) at ${dir}`,
    close() {
      closing ??= db.destroy().finally(() => lock.release())
      return closing
    },
  }
}

/** Has a database been created in `dataDir` (by an earlier run)? */
export function embeddedDatabaseExists(dataDir: string): boolean {
  return existsSync(path.join(path.resolve(dataDir), CLUSTER_DIR, 'PG_VERSION'))
}

/**
 * An empty in-memory database standing in for one not created yet, for a look that must create
 * nothing (a dry run): no directory, no lock, gone when closed.
 */
export async function openStandInEmbeddedDb(dataDir: string): Promise<EmbeddedDb> {
  const dir = path.resolve(dataDir)
  const prebuilt = prebuiltCluster()
  const db = new Kysely<Database>({dialect: new PGliteDialect({pglite: await PGlite.create({...START, ...(prebuilt ? {loadDataDir: prebuilt} : {})})})})
  let closing: Promise<void> | undefined
  return {
    db,
    dataDir: dir,
    describe: `embedded PostgreSQL (PGlite) at ${dir}, which does not exist yet (and is not created)`,
    close() {
      closing ??= db.destroy()
      return closing
    },
  }
}

interface Lock {
  /** Removes the lock file if it is still ours. Synchronous, so it also works in an 'exit' handler. */
  release(): void
}

async function acquireLock(dir: string, options: OpenEmbeddedOptions): Promise<Lock> {
  const lockPath = path.join(dir, LOCK_FILE)
  const deadline = Date.now() + (options.lockWaitMs ?? 2000)
  const pollMs = options.lockPollMs ?? 100
  for (;;) {
    if (await createLockFile(lockPath)) return holdLock(lockPath)
    const holder = await readHolder(lockPath)
    if (holder === undefined) continue // released while we looked: try again at once
    if (isStale(holder)) {
      await breakStaleLock(lockPath)
      continue
    }

    if (Date.now() >= deadline) {
      const who = holder.pid === undefined ? 'another audit-logger process' : `another audit-logger process (pid ${holder.pid})`
      throw new UsageError(
        `the embedded database at ${dir} is in use by ${who}`,
        'wait for it to finish, or set DATABASE_URL to use PostgreSQL',
      )
    }

    await sleep(pollMs)
  }
}

/** Creates the lock file with our pid; false if it exists. 'wx' makes the check and the create one step. */
async function createLockFile(lockPath: string): Promise<boolean> {
  let file
  try {
    file = await open(lockPath, 'wx')
  } catch (error) {
    if (codeOf(error) === 'EEXIST') return false
    throw new UsageError(`cannot lock the embedded database (${lockPath}: ${codeOf(error) ?? String(error)})`, 'check the directory’s permissions')
  }

  try {
    await file.writeFile(`${process.pid}\n`)
  } finally {
    await file.close()
  }

  return true
}

function holdLock(lockPath: string): Lock {
  const mine = `${process.pid}\n`
  let held = true
  const release = () => {
    if (!held) return
    held = false
    process.removeListener('exit', release)
    try {
      // Only our own: never remove a lock another process has since taken.
      if (readFileSync(lockPath, 'utf8') === mine) unlinkSync(lockPath)
    } catch {
      // Already gone.
    }
  }

  // A normal exit releases it; a kill leaves a dead pid behind, which the next process takes over.
  process.on('exit', release)
  return {release}
}

interface Holder {
  /** Undefined while the file is still being written, or if it holds no pid. */
  pid: number | undefined
  ageMs: number
}

async function readHolder(lockPath: string): Promise<Holder | undefined> {
  try {
    const [text, info] = await Promise.all([readFile(lockPath, 'utf8'), stat(lockPath)])
    const pid = /^\d+\n?$/.test(text) ? Number(text.trim()) : undefined
    return {pid: pid && pid > 0 ? pid : undefined, ageMs: Date.now() - info.mtimeMs}
  } catch (error) {
    if (codeOf(error) === 'ENOENT') return undefined
    throw error
  }
}

function isStale(holder: Holder): boolean {
  if (holder.pid === undefined) return holder.ageMs > UNWRITTEN_LOCK_STALE_MS
  return !isAlive(holder.pid)
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0) // signal 0: only asks whether the process exists
    return true
  } catch (error) {
    return codeOf(error) === 'EPERM' // exists, but belongs to someone else
  }
}

/**
 * Removes a dead process's lock. Two processes may find the same stale lock; if both removed it,
 * the slower one could remove the lock the faster one has just taken. So the look and the removal
 * happen under a second lock, and whoever does not get that lock starts over.
 */
async function breakStaleLock(lockPath: string): Promise<void> {
  const guardPath = `${lockPath}.takeover`
  let guard
  try {
    guard = await open(guardPath, 'wx')
  } catch (error) {
    if (codeOf(error) !== 'EEXIST') throw error
    const info = await stat(guardPath).catch(() => undefined)
    if (info && Date.now() - info.mtimeMs > TAKEOVER_STALE_MS) await unlink(guardPath).catch(() => {})
    else await sleep(20)
    return
  }

  try {
    const holder = await readHolder(lockPath)
    if (holder && isStale(holder)) await unlink(lockPath).catch(() => {})
  } finally {
    await guard.close()
    await unlink(guardPath).catch(() => {})
  }
}

function codeOf(error: unknown): string | undefined {
  return (error as {code?: string} | null)?.code
}
