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

/**
 * Writes the spooled day to `output` and waits until `output` has taken the last of it, so that a
 * reader that went away is noticed here (as OutputClosed) rather than as a stray 'error' event
 * after the day was recorded. A pipe on Linux is written synchronously: its EPIPE arrives through
 * the write's callback and an 'error' event, not always through the write that hit it.
 */
export async function deliverDay(spool: Spool, output: NodeJS.WritableStream): Promise<void> {
  let failure: unknown
  const onError = (error: unknown) => (failure ??= error)
  output.on('error', onError)
  try {
    await spool.copyTo(output)
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
