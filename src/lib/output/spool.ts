import {randomBytes} from 'node:crypto'
import {once} from 'node:events'
import {WriteStream} from 'node:fs'
import {type FileHandle, open, unlink} from 'node:fs/promises'
import {Socket} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

/**
 * Where a day's encoded lines wait until the whole day is in and the fence is checked. A day of
 * 100,000 events is about 56 MB of JSON lines; kept as strings it sat on the JS heap (and in the
 * old generation, where every major GC walked it). The spool keeps it off the heap: in a temporary
 * file that is unlinked as soon as it is opened (nothing to clean up, even after kill -9; only
 * this process can read it, mode 0600), or, where no temporary file can be made, in Buffers.
 */
export interface Spool {
  /** Bytes appended to the spool; the caller may reuse `bytes` once the promise resolves. */
  write(bytes: Uint8Array): Promise<void>
  /** Total bytes spooled. */
  readonly size: number
  /**
   * Writes everything spooled to `output`, in order, honouring back-pressure. Every chunk written
   * ends where a `write` ended (a whole page of lines), never inside a line or a UTF-8 sequence.
   */
  copyTo(output: NodeJS.WritableStream): Promise<void>
  /** Releases the file or the buffers; never throws. */
  close(): Promise<void>
  readonly kind: 'file' | 'memory'
}

/** Chunks read back from the file are about this big (whole pages are merged up to it). */
const READ_CHUNK = 1 << 20

async function writeChunk(output: NodeJS.WritableStream, chunk: Uint8Array): Promise<void> {
  if (chunk.length > 0 && !output.write(chunk)) await once(output, 'drain')
}

/**
 * Is this a stream that hands each chunk to the operating system, done with it once the write's
 * callback has run? True for stdout and stderr (a file, a pipe or a terminal), sockets and file
 * streams, unless their write() has been replaced (test harnesses capture stdout that way, and keep
 * the chunks). Not for streams in general: a PassThrough passes the very same Buffer on to its reader.
 */
export function handsChunksToKernel(output: NodeJS.WritableStream): boolean {
  const known = output === process.stdout || output === process.stderr || output instanceof Socket || output instanceof WriteStream
  // A write() of its own that is not the class's (a harness put it there) may keep the chunks.
  return known && output.write === (Object.getPrototypeOf(output) as NodeJS.WritableStream).write
}

/** A spool in an unlinked temporary file under `dir` (default: the OS temporary directory). */
export async function openFileSpool(dir = tmpdir()): Promise<Spool> {
  const path = join(dir, `.audit-logger-spool-${process.pid}-${randomBytes(6).toString('hex')}`)
  const handle: FileHandle = await open(path, 'wx+', 0o600)
  // Unlinked at once: the open handle keeps the data; the name never outlives this line.
  let linked = true
  try {
    await unlink(path)
    linked = false
  } catch {
    // Not possible everywhere (Windows); close() removes it then.
  }

  const segments: number[] = []
  let size = 0
  let closed = false
  return {
    kind: 'file',
    get size() {
      return size
    },
    async write(bytes) {
      if (bytes.length === 0) return
      let written = 0
      while (written < bytes.length) {
        const {bytesWritten} = await handle.write(bytes, written, bytes.length - written, size + written)
        written += bytesWritten
      }

      segments.push(bytes.length)
      size += bytes.length
    },
    async copyTo(output) {
      // Reading 56 MB back into fresh 1 MB buffers piles up garbage outside the JS heap faster
      // than V8 collects it (+35 MB of RSS on the way out). A stream that hands bytes to the kernel
      // is done with a chunk once its callback has run, so its buffers go back to a small pool
      // then; any other stream keeps what it is given, so it gets a fresh buffer every time.
      // Nothing ever waits for a callback: with none back yet, a new buffer is made.
      const pooled = handsChunksToKernel(output)
      const pool: Buffer[] = []
      let position = 0
      let index = 0
      while (index < segments.length) {
        // Whole segments, merged up to READ_CHUNK; one bigger segment is read on its own.
        let length = segments[index++]
        while (index < segments.length && length + segments[index] <= READ_CHUNK) length += segments[index++]
        const free = pooled ? pool.findIndex((b) => b.length >= length) : -1
        const buffer = free === -1 ? Buffer.allocUnsafe(Math.max(length, READ_CHUNK)) : pool.splice(free, 1)[0]
        const chunk = buffer.subarray(0, length)
        let filled = 0
        while (filled < length) {
          const {bytesRead} = await handle.read(chunk, filled, length - filled, position + filled)
          if (bytesRead === 0) throw new Error(`the spooled day ended early: ${position + filled} of ${size} bytes`)
          filled += bytesRead
        }

        position += length
        const ok = pooled
          ? output.write(chunk, (error) => {
              if (!error) pool.push(buffer)
            })
          : output.write(chunk)
        if (!ok) await once(output, 'drain')
      }
    },
    async close() {
      if (closed) return
      closed = true
      await handle.close().catch(() => {})
      if (linked) await unlink(path).catch(() => {})
    },
  }
}

/** A spool in memory: Buffers off the JS heap, but in the process's RSS. */
export function openMemorySpool(): Spool & {take(): Buffer[]} {
  let chunks: Buffer[] = []
  let size = 0
  return {
    kind: 'memory',
    get size() {
      return size
    },
    async write(bytes) {
      if (bytes.length === 0) return
      chunks.push(Buffer.from(bytes))
      size += bytes.length
    },
    async copyTo(output) {
      for (const chunk of chunks) await writeChunk(output, chunk)
    },
    async close() {
      chunks = []
      size = 0
    },
    /** Hands over what was written, one Buffer per write, and empties the spool. */
    take() {
      const taken = chunks
      chunks = []
      size = 0
      return taken
    },
  }
}

/** How much of a day waits in memory before its spool moves to a temporary file. */
export const MEMORY_LIMIT = 4 << 20

/**
 * The day's spool: in memory while the day is small (most are: no file is opened at all), moved
 * to an unlinked temporary file as soon as it passes `limit` bytes, so a big day never holds more
 * than that in memory. Where no temporary file can be made (read-only /tmp…), it stays in memory,
 * and `onFallback` is told why.
 */
export async function openSpool(onFallback?: (reason: string) => void, dir?: string, limit = MEMORY_LIMIT): Promise<Spool> {
  const memory = openMemorySpool()
  let file: Spool | undefined
  let stayInMemory = false
  return {
    get kind() {
      return file ? 'file' : 'memory'
    },
    get size() {
      return (file ?? memory).size
    },
    async write(bytes) {
      if (!file && !stayInMemory && memory.size + bytes.length > limit) {
        try {
          file = await openFileSpool(dir)
        } catch (error) {
          stayInMemory = true
          onFallback?.(`${(error as NodeJS.ErrnoException).code ?? String(error)}`)
        }

        // What is in memory goes first, write by write, so chunks still end where writes ended.
        if (file) for (const chunk of memory.take()) await file.write(chunk)
      }

      await (file ?? memory).write(bytes)
    },
    copyTo: (output) => (file ?? memory).copyTo(output),
    async close() {
      await file?.close()
      await memory.close()
    },
  }
}
