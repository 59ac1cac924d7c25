import type {Logger} from '../logger.js'
import {oneLine} from '../text.js'
import type {RangeDayResult} from './run-range.js'

/**
 * Progress of a range on stderr. On a terminal: one line redrawn in place (a bar with day N of M).
 * Elsewhere (Heroku logs, a pipe): one plain line per finished day, as a redrawn line would be
 * noise in a log. Either way stdout, which carries the events, is never touched.
 */
export interface Progress {
  start(total: number): void
  dayStarted(day: string): void
  dayFinished(result: RangeDayResult): void
  /** Ends the bar (a newline on a terminal). */
  stop(): void
  /** A logger whose lines do not tangle with the bar: it is cleared before and redrawn after. */
  wrap(logger: Logger): Logger
}

export interface BarState {
  total: number
  finished: number
  /** The day being processed now, if any. */
  current?: string
  ok: number
  failed: number
  skipped: number
}

/** The label a day's outcome gets in progress lines and the summary. */
export function outcomeLabel(outcome: RangeDayResult['outcome']): string {
  switch (outcome) {
    case 'success': {
      return 'SUCCESS'
    }

    case 'failed': {
      return 'FAILED'
    }

    case 'error': {
      return 'ERROR'
    }

    case 'lost': {
      return 'LOST'
    }

    case 'done': {
      return 'skipped (done)'
    }

    case 'busy': {
      return 'skipped (live run)'
    }

    case 'not-started': {
      return 'not started'
    }
  }
}

/** The terminal bar, e.g. `[#######.............] 7/20  2025-09-08  ok 6  failed 0  skipped 1`. Pure, for tests. */
export function renderBar(state: BarState, width = 20): string {
  const ratio = state.total === 0 ? 1 : Math.min(1, state.finished / state.total)
  const filled = Math.round(ratio * width)
  const bar = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`
  const counter = `${state.finished}/${state.total}`
  const current = state.current ? `  ${state.current}` : ''
  return `${bar} ${counter}${current}  ok ${state.ok}  failed ${state.failed}  skipped ${state.skipped}`
}

/** The line for one finished day, when stderr is not a terminal. Pure, for tests. */
export function renderDayLine(result: RangeDayResult, index: number, total: number): string {
  const position = `[${index}/${total}]`
  const label = outcomeLabel(result.outcome)
  if (result.outcome === 'success') {
    const seconds = (result.durationMs / 1000).toFixed(1)
    const remaining = result.rateLimitRemaining === undefined ? '' : `, RateLimit-Remaining ${result.rateLimitRemaining}`
    return `${position} ${result.day} ${label}: ${result.events} events in ${result.pages} page${result.pages === 1 ? '' : 's'}, ${seconds} s${remaining}`
  }

  // The message may quote a server or a stored record: one line, controls escaped, bounded.
  return `${position} ${result.day} ${label}${result.message ? `: ${oneLine(result.message, 500)}` : ''}`
}

function counters() {
  return {total: 0, finished: 0, ok: 0, failed: 0, skipped: 0} as BarState
}

function count(state: BarState, result: RangeDayResult): void {
  state.finished++
  state.current = undefined
  if (result.outcome === 'success') state.ok++
  else if (result.outcome === 'done' || result.outcome === 'busy') state.skipped++
  else state.failed++
}

/** Redraws one line in place: carriage return, the bar, clear to the end of the line. */
export function terminalProgress(stream: NodeJS.WritableStream): Progress {
  const state = counters()
  let drawn = false
  const clear = () => {
    if (drawn) stream.write('\r\u001B[2K')
    drawn = false
  }

  const draw = () => {
    stream.write(`\r\u001B[2K${renderBar(state)}`)
    drawn = true
  }

  return {
    start(total) {
      state.total = total
      draw()
    },
    dayStarted(day) {
      state.current = day
      draw()
    },
    dayFinished(result) {
      count(state, result)
      draw()
    },
    stop() {
      if (drawn) stream.write('\n')
      drawn = false
    },
    wrap(logger) {
      const around = (log: (message: string) => void) => (message: string) => {
        const redraw = drawn
        clear()
        log(message)
        if (redraw) draw()
      }

      return {
        debug: around((m) => logger.debug(m)),
        info: around((m) => logger.info(m)),
        success: around((m) => logger.success(m)),
        warn: around((m) => logger.warn(m)),
        error: around((m) => logger.error(m)),
      }
    },
  }
}

/** One info line per finished day, through the logger (so LOG_LEVEL applies). */
export function lineProgress(logger: Logger): Progress {
  const state = counters()
  return {
    start(total) {
      state.total = total
    },
    dayStarted() {},
    dayFinished(result) {
      count(state, result)
      // One plain line per day, failed ones too, with the error symbol: the closing table repeats them.
      const failed = result.outcome === 'failed' || result.outcome === 'error' || result.outcome === 'lost'
      logger[failed ? 'error' : 'info'](renderDayLine(result, state.finished, state.total))
    },
    stop() {},
    wrap: (inner) => inner,
  }
}

/** The terminal bar when `stream` is a TTY, one line per day otherwise; nothing when `quiet` (LOG_LEVEL below info). */
export function createProgress(stream: NodeJS.WriteStream, logger: Logger, options: {quiet?: boolean} = {}): Progress {
  if (options.quiet) return {start() {}, dayStarted() {}, dayFinished() {}, stop() {}, wrap: (inner) => inner}
  return stream.isTTY ? terminalProgress(stream) : lineProgress(logger)
}
