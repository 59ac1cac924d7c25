import {once} from 'node:events'
import {Writable} from 'node:stream'
import {finished} from 'node:stream/promises'
import {setTimeout as sleep} from 'node:timers/promises'

import type {Spool} from './spool.js'

/** The reader of the output went away (`… | head -1`, a closed pipe or socket) before the day was all written. */
export class OutputClosed extends Error {
  constructor(readonly code: string) {
    super(`stdout was closed by its reader (${code})`)
    this.name = 'OutputClosed'
  }
}

const CLOSED_CODES = new Set(['EPIPE', 'ERR_STREAM_DESTROYED', 'ERR_STREAM_WRITE_AFTER_END', 'ECONNRESET'])

/** Is this the error of writing to an output whose reader is gone? */
export function isOutputClosed(error: unknown): boolean {
  return error instanceof OutputClosed || CLOSED_CODES.has(String((error as {code?: unknown} | null)?.code))
}

/** The pacer's sense of time; tests pass one that only moves when it is slept on. */
export interface PaceClock {
  /** Milliseconds, monotonic. */
  now(): number
  /** Resolves after `ms`, or rejects once `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>
}

export const REAL_CLOCK: PaceClock = {
  now: () => performance.now(),
  sleep: (ms, signal) => sleep(ms, undefined, {signal}),
}

/** LOG_LINES_PER_SECOND: how fast the day's lines go out; absent or 0 = as fast as the reader takes them. */
export interface Pace {
  linesPerSecond: number
  clock?: PaceClock
  /** Stops a paced delivery (a signal, a lost claim): it can take minutes. */
  signal?: AbortSignal
}

/** A paced delivery stopped before the day was all written (a signal, a lost claim). */
export class DeliveryStopped extends Error {
  constructor(
    readonly linesWritten: number,
    readonly reason: unknown,
  ) {
    super(`stopped after ${linesWritten} of the day's lines were written on stdout`)
    this.name = 'DeliveryStopped'
  }
}

/** How long `lines` take at `linesPerSecond`, in seconds (0 when unpaced). */
export function pacedSeconds(lines: number, linesPerSecond: number): number {
  return linesPerSecond > 0 ? lines / linesPerSecond : 0
}

/**
 * Passes whole lines on to `output` at most `linesPerSecond` a second. Lines go in bursts of at
 * most a tenth of a second's worth (ten sleeps a second, not one per line); a burst that starts
 * with line n is written n / linesPerSecond seconds after the first line. A burst ends at a
 * newline: a chunk is split on line boundaries, never inside a line. After a stall (the reader was slow) the schedule starts again from where it is rather than
 * catching up in one burst. Errors of `output` are seen through `failure`.
 */
export class LinePacer extends Writable {
  /** Lines written so far. */
  lines = 0
  private start: number | undefined
  private readonly burst: number
  private readonly clock: PaceClock

  constructor(
    private readonly output: NodeJS.WritableStream,
    private readonly pace: Pace,
    private readonly failure: () => unknown = () => undefined,
  ) {
    // One chunk at a time: the spool waits for 'drain' rather than piling the day up here.
    super({highWaterMark: 1})
    this.burst = Math.max(1, Math.ceil(pace.linesPerSecond / 10))
    this.clock = pace.clock ?? REAL_CLOCK
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    this.pump(chunk).then(() => done(), (error: unknown) => done(error instanceof Error ? error : new Error(String(error))))
  }

  private async pump(chunk: Buffer): Promise<void> {
    const interval = 1000 / this.pace.linesPerSecond
    let position = 0
    while (position < chunk.length) {
      const now = this.clock.now()
      this.start ??= now
      const due = this.start + this.lines * interval
      if (due > now) {
        try {
          await this.clock.sleep(due - now, this.pace.signal)
        } catch (error) {
          throw new DeliveryStopped(this.lines, this.pace.signal?.reason ?? error)
        }
      } else if (now - due > 1000) {
        // Behind by more than a second (the reader stalled): no catching up in one burst.
        this.start = now - this.lines * interval
      }

      if (this.pace.signal?.aborted) throw new DeliveryStopped(this.lines, this.pace.signal.reason)
      // A burst of lines (a tenth of a second's worth); the next is due when they have had their time.
      let count = this.burst
      let end = position
      while (count > 0 && end < chunk.length) {
        const newline = chunk.indexOf(0x0a, end)
        end = newline === -1 ? chunk.length : newline + 1
        count--
        this.lines++
      }

      const ok = this.output.write(chunk.subarray(position, end))
      position = end
      const failed = this.failure()
      if (failed !== undefined) throw failed
      if (!ok) await once(this.output as NodeJS.EventEmitter, 'drain')
    }
  }
}

/**
 * Writes the spooled day to `output` and waits until `output` has taken the last of it, so that a
 * reader that went away is noticed here (as OutputClosed) rather than as a stray 'error' event
 * after the day was recorded. A pipe on Linux is written synchronously: its EPIPE arrives through
 * the write's callback and an 'error' event, not always through the write that hit it.
 *
 * With a `pace` (LOG_LINES_PER_SECOND), the lines go through a LinePacer. Unpaced, the spool's
 * chunks go straight to `output`, as before.
 */
export async function deliverDay(spool: Spool, output: NodeJS.WritableStream, pace?: Pace): Promise<void> {
  let failure: unknown
  const onError = (error: unknown) => (failure ??= error)
  output.on('error', onError)
  try {
    if (pace && pace.linesPerSecond > 0) {
      const pacer = new LinePacer(output, pace, () => failure)
      pacer.on('error', onError)
      await spool.copyTo(pacer)
      pacer.end()
      await finished(pacer)
    } else {
      await spool.copyTo(output)
    }

    // An empty write's callback runs once everything before it was handed over, or fails. A
    // write() put on the stream itself (a harness capturing stdout) may never call back: not awaited.
    if (!Object.hasOwn(output, 'write')) {
      await new Promise<void>((resolve, reject) => output.write('', (error?: Error | null) => (error ? reject(error) : resolve())))
    }
  } catch (error) {
    failure ??= error
  } finally {
    output.off('error', onError)
  }

  if (failure === undefined) return
  if (isOutputClosed(failure)) throw new OutputClosed(String((failure as {code?: unknown}).code ?? 'closed'))
  throw failure
}
