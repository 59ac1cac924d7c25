import {inspect} from 'node:util'

import {type ConsolaInstance, type ConsolaReporter, createConsola} from 'consola'

import type {LogLevelName} from './config.js'
import {redact} from './secrets.js'
import {oneLine} from './text.js'

/** What the library needs from a logger; a consola instance fits. */
export interface Logger {
  debug(message: string): void
  info(message: string): void
  success(message: string): void
  warn(message: string): void
  error(message: string): void
}

const CONSOLA_LEVELS: Record<LogLevelName, number> = {
  silent: Number.NEGATIVE_INFINITY,
  fatal: 0,
  error: 0,
  warn: 1,
  info: 3,
  debug: 4,
  trace: 5,
}

/**
 * The most characters of one log message, after control characters are escaped. Far above any
 * message of ours; it bounds what outside text can cost: consola's width computation is
 * quadratic (a 200,000-character line took 48 s), and a log line is read, not archived.
 */
export const MAX_LOG_MESSAGE = 4000

/**
 * A message as it may reach stderr: secrets masked, then folded to one line with every control
 * character escaped visibly, and bounded. Redacting first, on the whole text, so neither the
 * folding nor the cut can split a secret into pieces that no longer match.
 */
export function safeLogMessage(args: readonly unknown[]): string {
  const text = args.map((arg) => (typeof arg === 'string' ? arg : arg instanceof Error ? arg.message : inspect(arg))).join(' ')
  return oneLine(redact(text), MAX_LOG_MESSAGE)
}

/** Hands each reporter the message made safe, so consola still formats it (icons, colors, newline) its own way. */
function sanitizing(reporter: ConsolaReporter): ConsolaReporter {
  return {log: (logObj, context) => reporter.log({...logObj, args: [safeLogMessage(logObj.args)]}, context)}
}

/**
 * A consola that writes every level to stderr (stdout carries only events). Every message is made
 * safe (safeLogMessage) before consola formats it, and every line passes through redact() again
 * on its way out of the process.
 */
export function createLogger(level: LogLevelName = 'info', stream: NodeJS.WriteStream = process.stderr): ConsolaInstance {
  const redacting = new Proxy(stream, {
    get(target, property) {
      if (property === 'write') return (chunk: unknown, ...rest: unknown[]) => target.write(redact(String(chunk)), ...(rest as []))
      const value = Reflect.get(target, property, target)
      return typeof value === 'function' ? value.bind(target) : value
    },
  })
  const logger = createConsola({level: CONSOLA_LEVELS[level], stdout: redacting, stderr: redacting, formatOptions: {date: false}})
  // consola picks its reporter (fancy on a terminal, basic in CI); each is wrapped, not replaced.
  logger.setReporters(logger.options.reporters.map((reporter) => sanitizing(reporter)))
  return logger
}
