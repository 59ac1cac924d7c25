import {randomBytes} from 'node:crypto'
import {constants} from 'node:fs'
import {type FileHandle, mkdir, open, readdir, rename, rm, stat} from 'node:fs/promises'
import {dirname, join, resolve} from 'node:path'
import {pipeline} from 'node:stream/promises'
import {createGzip} from 'node:zlib'

/** The final name of a day's file: DIR/YYYY-MM-DD.ndjson.gz. */
export function dayFilePath(dir: string, day: string): string {
  return join(dir, `${day}.ndjson.gz`)
}

const tempPrefix = (day: string) => `.${day}.ndjson.gz.tmp-`

/**
 * The temporary name while it is written: hidden, and unpredictable (the pid, for whoever looks,
 * and 16 random hex digits), so nobody can plant anything at it beforehand.
 */
export function dayTempPath(dir: string, day: string, pid = process.pid): string {
  return join(dir, `${tempPrefix(day)}${pid}-${randomBytes(8).toString('hex')}`)
}

/**
 * Creates `path` for writing, exclusively: fails with EEXIST when anything is there already (a
 * file, or a symbolic link, even a dangling one), and never follows a link. A name that was taken
 * is never reused nor truncated.
 */
export async function createExclusive(path: string, mode = 0o644): Promise<FileHandle> {
  // O_NOFOLLOW is 0 where it does not exist (Windows); O_EXCL already refuses links on POSIX.
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | (constants.O_NOFOLLOW ?? 0)
  return open(path, flags, mode)
}

/**
 * Makes sure `dir` is a directory, creating the missing levels one at a time. Node's
 * `mkdir(…, {recursive: true})` never returns under /proc (ENOENT for a directory whose parent
 * exists sends it back up, forever); here each level is tried once, so a path with N missing
 * levels costs at most N stats and N mkdirs, and the first that fails is the answer.
 */
export async function ensureDirectory(dir: string): Promise<void> {
  const missing: string[] = []
  const target = resolve(dir)
  let path = target
  for (;;) {
    const found = await stat(path).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return undefined
      throw error
    })
    if (found) {
      // The codes mkdir itself gives: EEXIST for the directory's own name, ENOTDIR for a level above.
      if (!found.isDirectory()) throw Object.assign(new Error(`${path} is not a directory`), {code: path === target ? 'EEXIST' : 'ENOTDIR'})
      break
    }

    missing.unshift(path)
    const parent = dirname(path)
    // The root always exists; reaching it without finding a directory is a filesystem we cannot use.
    if (parent === path) break
    path = parent
  }

  for (const level of missing) {
    await mkdir(level).catch(async (error: NodeJS.ErrnoException) => {
      // Another process may have made it meanwhile; anything but a directory is still an error.
      if (error.code !== 'EEXIST' || !(await stat(level)).isDirectory()) throw error
    })
  }
}

/**
 * A day's gzipped JSON lines, written to a temporary file and only then renamed into place, so
 * the final name never holds half a day: a run that dies leaves at most a hidden `.tmp-` file,
 * which the day's next run removes. Renaming over an existing file replaces it atomically (a
 * forced day), and replaces a symbolic link there rather than writing through it.
 */
export interface DayFile {
  readonly path: string
  readonly tempPath: string
  /** Appends JSON lines (text, or their UTF-8 bytes, which the file keeps), honouring back-pressure. */
  write(lines: string | Uint8Array): Promise<void>
  /** Finishes the gzip stream, fsyncs, and renames the file into place. */
  commit(): Promise<void>
  /** Stops writing and removes the temporary file; never throws. */
  discard(): Promise<void>
}

/** Call only while holding the day's claim: see removeLeftovers. */
export async function openDayFile(dir: string, day: string): Promise<DayFile> {
  await ensureDirectory(dir)
  const path = dayFilePath(dir, day)
  const tempPath = dayTempPath(dir, day)
  // Opened before anything is fetched, so a directory we cannot write to fails the day at once.
  const handle = await createExclusive(tempPath)
  const gzip = createGzip()
  // flush: the stream fsyncs the file it opened before closing it, so commit never reopens it by name.
  const written = pipeline(gzip, handle.createWriteStream({flush: true}))
  // Observed in write/commit/discard; a rejection must not go unhandled meanwhile.
  written.catch(() => {})
  await removeLeftovers(dir, day, tempPath)

  return {
    path,
    tempPath,
    async write(lines) {
      if (lines.length === 0) return
      // Racing the pipeline surfaces a disk error instead of waiting for a drain that never comes.
      if (!gzip.write(lines)) await Promise.race([new Promise((resolve) => gzip.once('drain', resolve)), written])
    },
    async commit() {
      gzip.end()
      // Synced and closed by then: the data must be on disk before the name points at it, or a
      // crash could leave an empty file.
      await written
      await rename(tempPath, path)
      await fsyncDirectory(dir)
    },
    async discard() {
      gzip.destroy()
      await written.catch(() => {})
      await rm(tempPath, {force: true}).catch(() => {})
    },
  }
}

/**
 * Removes other runs' temporary files for the day. The caller holds the day's claim, so any other
 * writer of this day died (kill -9, a lost dyno) or was fenced out and can never finish it. rm
 * removes a symbolic link itself, never what it points at.
 */
async function removeLeftovers(dir: string, day: string, ours: string): Promise<void> {
  const names = await readdir(dir).catch(() => [] as string[])
  for (const name of names) {
    if (name.startsWith(tempPrefix(day)) && join(dir, name) !== ours) await rm(join(dir, name), {force: true}).catch(() => {})
  }
}

async function fsyncDirectory(dir: string): Promise<void> {
  try {
    const handle = await open(dir, 'r')
    try {
      await handle.sync()
    } finally {
      await handle.close()
    }
  } catch {
    // Syncing a directory is not possible everywhere (it is on Linux); the rename stands anyway.
  }
}
