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

/**
 * oclif words a bad flag or argument over several lines ("Parsing --limit \n\tExpected an integer
 * less than or equal to 10000 but received: 99999\nSee more help with --help"); the commands say
 * it on one: "--limit: Expected an integer … — see --help".
 */
export function oneLineParseError(message: string): string {
  const lines = message
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && line !== 'See more help with --help' && !/^The following errors? occurred:$/.test(line))
  const parsing = /^Parsing (--\S+)$/.exec(lines[0] ?? '')
  if (parsing && lines.length > 1) lines.splice(0, 2, `${parsing[1]}: ${lines[1]}`)
  const text = withoutRepeatedConflicts(lines).reduce((joined, line) => (joined === '' ? line : `${joined}${joined.endsWith(':') ? ' ' : '; '}${line}`), '')
  return message.includes('See more help with --help') ? `${text} — see --help` : text
}

/** oclif's "--a=x cannot also be provided when using --b": the flags' names. */
const CONFLICT = /^--([\w-]+)(?:=\S*)? cannot also be provided when using --([\w-]+)$/

/** Flag pairs that need more than "not together": what to do instead. */
const CONFLICT_HINTS: Record<string, string> = {
  'catch-up force': '--catch-up only fetches days not yet done, so it takes no --force; to fetch done days again, name them: --from A --to B --force',
}

/**
 * oclif reports a conflict between two flags once from each side (`--date X --catch-up` gave it
 * twice); each pair is said once, in plain words, with a hint where one helps.
 */
function withoutRepeatedConflicts(lines: string[]): string[] {
  const said = new Set<string>()
  const kept: string[] = []
  for (const line of lines) {
    const conflict = CONFLICT.exec(line)
    if (!conflict) {
      kept.push(line)
      continue
    }

    const pair = [conflict[1], conflict[2]].sort().join(' ')
    if (said.has(pair)) continue
    said.add(pair)
    kept.push(CONFLICT_HINTS[pair] ?? `--${conflict[2]} and --${conflict[1]} cannot be used together`)
  }

  return kept
}
