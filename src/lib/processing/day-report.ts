import {shortDigest} from './events-digest.js'
import type {DayResult} from './process-day.js'

export interface DayReportLine {
  level: 'success' | 'info' | 'warn' | 'error'
  message: string
}

/** The one line a single-day run ends with on stderr: what happened to the day, and how long it took. */
export function dayReportLine(result: DayResult): DayReportLine {
  const seconds = result.durationMs < 1000 ? `${result.durationMs} ms` : `${(result.durationMs / 1000).toFixed(1)} s`
  const attempt = result.attempt === undefined ? '' : `, attempt ${result.attempt}`
  switch (result.outcome) {
    case 'success': {
      const digest = result.digest ? `, digest ${shortDigest(result.digest)}` : ''
      const file = result.file ? `; wrote ${result.file}` : ''
      const pages = `${result.pages} page${result.pages === 1 ? '' : 's'}`
      const line = `${result.day} SUCCESS: ${result.events} events in ${pages}, ${seconds}${attempt}${digest}${file}`
      if (result.outputClosed) {
        const whole = result.stored ? `the whole day is in the event store (audit-logger events --date ${result.day})` : 'the whole day is in the file'
        return {level: 'warn', message: `${line}; stdout was closed by its reader before all were written there: ${whole}`}
      }

      return {level: 'success', message: line}
    }

    case 'done':
    case 'busy': {
      return {level: 'info', message: `${result.day} skipped: ${result.message}`}
    }

    case 'failed':
    case 'error': {
      return {level: 'error', message: `${result.day} ${result.outcome.toUpperCase()} after ${seconds}${attempt}: ${result.message}`}
    }

    case 'lost': {
      return {level: 'error', message: `${result.day} not recorded after ${seconds}${attempt}: ${result.message}`}
    }
  }
}
