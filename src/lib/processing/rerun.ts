import type {OutputFormat} from '../output/format-event.js'
import type {PlanMode} from './plan.js'
import type {RangeDayResult} from './run-range.js'

/** The flags of the run being repeated, as the user gave them (defaults left out). */
export interface RerunFlags {
  mode: PlanMode
  /** The range's last day. */
  to: string
  /** --days, with --catch-up. */
  days?: number
  force: boolean
  format: OutputFormat
  /** --output-dir, when given as a flag (OUTPUT_DIR applies by itself again). */
  outputDir?: string
  /** --stale-after, when not the default. */
  staleAfterMinutes?: number
  verbose?: boolean
}

/** A word the shell takes as it is; anything else single-quoted. */
function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`
}

/**
 * The command that finishes what a stopped range left: from the first day that is not done
 * (a FAILED, ERROR or lost day comes before the days not started), with the same flags.
 */
export function rerunCommand(bin: string, flags: RerunFlags, results: readonly RangeDayResult[]): string {
  const words = [bin, 'process']
  if (flags.mode === 'catch-up') {
    words.push('--catch-up')
    if (flags.days !== undefined) words.push('--days', String(flags.days))
  } else {
    const firstNotDone = results.find((r) => r.outcome !== 'success' && r.outcome !== 'done')?.day ?? flags.to
    words.push('--from', firstNotDone, '--to', flags.to)
    if (flags.force) words.push('--force')
  }

  if (flags.format !== 'text') words.push('--format', flags.format)
  if (flags.outputDir !== undefined) words.push('--output-dir', flags.outputDir)
  if (flags.staleAfterMinutes !== undefined) words.push('--stale-after', String(flags.staleAfterMinutes))
  if (flags.verbose) words.push('--verbose')
  const command = words.map((word) => shellWord(word)).join(' ')
  return flags.mode === 'catch-up' ? `${command} (the next scheduled catch-up does it too)` : command
}
