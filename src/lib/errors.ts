/** Exit codes, as documented in the README and every command's help. */
export const EXIT = {
  ok: 0,
  failed: 1,
  usage: 2,
} as const

/**
 * An error the user can fix: bad input, missing configuration, an unreachable database.
 * Commands print its message as one line with the hint, and exit 2. Nothing has been claimed.
 */
export class UsageError extends Error {
  constructor(
    message: string,
    readonly hint?: string,
  ) {
    super(message)
    this.name = 'UsageError'
  }
}
