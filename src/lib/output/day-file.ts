import {once} from 'node:events'
import {createWriteStream} from 'node:fs'
import {mkdir, open, readdir, rename, rm} from 'node:fs/promises'
import {join} from 'node:path'
import {pipeline} from 'node:stream/promises'
import {createGzip} from 'node:zlib'

/** The final name of a day's file: DIR/YYYY-MM-DD.ndjson.gz. */
export function dayFilePath(dir: string, day: string): string {
  return join(dir, `${day}.ndjson.gz`)
}

const tempPrefix = (day: string) => `.${day}.ndjson.gz.tmp-`

/** The temporary name while it is written: hidden, and unique per process. */
export function dayTempPath(dir: string, day: string, pid = process.pid): string {
  return join(dir, `${tempPrefix(day)}${pid}`)
}

/**
 * A day's gzipped JSON lines, written to a temporary file and only then renamed into place, so
 * the final name never holds half a day: a run that dies leaves at most a hidden `.tmp-<pid>`
 * file, which the day's next run removes. Renaming over an existing file replaces it atomically
 * (a forced day).
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
  await mkdir(dir, {recursive: true})
  const path = dayFilePath(dir, day)
  const tempPath = dayTempPath(dir, day)
  const gzip = createGzip()
  // 'w' rather than 'wx': a leftover from a killed process that had our pid is fair to overwrite.
  const file = createWriteStream(tempPath, {flags: 'w', mode: 0o644})
  // Opened before anything is fetched, so a directory we cannot write to fails the day at once.
  await once(file, 'open')
  const written = pipeline(gzip, file)
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
      await written
      // The data must be on disk before the name points at it, or a crash could leave an empty file.
      await fsync(tempPath, 'r+')
      await rename(tempPath, path)
      await fsync(dir, 'r').catch(() => {
        // Syncing a directory is not possible everywhere (it is on Linux); the rename stands anyway.
      })
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
 * writer of this day died (kill -9, a lost dyno) or was fenced out and can never finish it.
 */
async function removeLeftovers(dir: string, day: string, ours: string): Promise<void> {
  const names = await readdir(dir).catch(() => [] as string[])
  for (const name of names) {
    if (name.startsWith(tempPrefix(day)) && join(dir, name) !== ours) await rm(join(dir, name), {force: true}).catch(() => {})
  }
}

async function fsync(path: string, flags: string): Promise<void> {
  const handle = await open(path, flags)
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}
