import {type ConsolaInstance, createConsola} from 'consola'

import type {LogLevelName} from './config.js'
import {redact} from './secrets.js'

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
 * A consola that writes every level to stderr (stdout carries only events) and passes every line
 * through redact() before it leaves the process.
 */
export function createLogger(level: LogLevelName = 'info', stream: NodeJS.WriteStream = process.stderr): ConsolaInstance {
  const redacting = new Proxy(stream, {
    get(target, property) {
      if (property === 'write') return (chunk: unknown, ...rest: unknown[]) => target.write(redact(String(chunk)), ...(rest as []))
      const value = Reflect.get(target, property, target)
      return typeof value === 'function' ? value.bind(target) : value
    },
  })
  return createConsola({level: CONSOLA_LEVELS[level], stdout: redacting, stderr: redacting, formatOptions: {date: false}})
}
