import {isDatabaseUnreachable} from '../db/connection.js'
import {safeErrorMessage} from '../secrets.js'

/** A statement of the day job failed in the database (as opposed to the API, a file or stdout). */
export class DatabaseFailure extends Error {
  constructor(readonly reason: unknown) {
    super(safeErrorMessage(reason))
    this.name = 'DatabaseFailure'
  }

  /** Is the database out of reach (connection refused, terminated, not accepting any), rather than refusing one statement? */
  get unreachable(): boolean {
    return isDatabaseUnreachable(this.reason)
  }

  /** One line for the operator: what happened to the database, and why. */
  describe(): string {
    return `${this.unreachable ? 'lost the database' : 'the database failed'}: ${this.message}`
  }
}

/**
 * Runs one database step of the day job, marking its failure as the database's. An `idempotent`
 * step is tried again on a fresh connection when its connection was lost (retryOnLostConnection).
 */
export async function inDatabase<T>(work: () => Promise<T>, options: {idempotent?: boolean} = {}): Promise<T> {
  try {
    return await (options.idempotent ? retryOnLostConnection(work) : work())
  } catch (error) {
    throw new DatabaseFailure(error)
  }
}

export {isDatabaseUnreachable} from '../db/connection.js'

/** Pauses before the tries after the first: a terminated connection's pool needs a moment to notice. */
const RETRY_PAUSES_MS = [100, 400, 1000]

/**
 * Runs an idempotent database step; when it fails because its connection was lost (terminated,
 * reset, refused), runs it again on a fresh one, up to 4 tries in all over about 1.5 s. The pool
 * drops a dead client when it is released, so the next try gets a new connection. Only for steps
 * that are safe to repeat: a statement may have committed even though its answer was lost.
 */
export async function retryOnLostConnection<T>(work: () => Promise<T>, pause: (ms: number) => Promise<void> = sleep): Promise<T> {
  for (let tried = 0; ; tried++) {
    try {
      return await work()
    } catch (error) {
      if (tried >= RETRY_PAUSES_MS.length || !isDatabaseUnreachable(error)) throw error
      await pause(RETRY_PAUSES_MS[tried])
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
