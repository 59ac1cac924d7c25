import {isConnectionError} from '../db/connection.js'
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

/** Runs one database step of the day job, marking its failure as the database's. */
export async function inDatabase<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work()
  } catch (error) {
    throw new DatabaseFailure(error)
  }
}

/**
 * Connection-level failures: unreachable, refused, terminated (pg_terminate_backend, a restart),
 * shutting down, out of connection slots, or not accepting connections at all.
 */
export function isDatabaseUnreachable(error: unknown): boolean {
  if (isConnectionError(error)) return true
  const {code, message} = (error ?? {}) as {code?: string; message?: string}
  if (code && (code.startsWith('08') || ['57P01', '57P02', '57P03', '53300'].includes(code))) return true
  return typeof message === 'string' && /(connection terminated|terminating connection|not currently accepting connections|the database system is (starting up|shutting down)|Connection closed)/i.test(message)
}
