import {Writable} from 'node:stream'

import type {Logger} from '../../src/lib/logger.js'

/** A writable that keeps what is written, like stdout but inspectable. */
export class CaptureStream extends Writable {
  text = ''
  override _write(chunk: Buffer, _encoding: BufferEncoding, done: () => void): void {
    this.text += chunk.toString('utf8')
    done()
  }

  lines(): string[] {
    return this.text.split('\n').filter(Boolean)
  }
}

/** A logger that keeps every line with its level. */
export function captureLogger(): Logger & {lines: string[]; text(): string} {
  const lines: string[] = []
  const at = (level: string) => (message: string) => lines.push(`${level} ${message}`)
  return {
    lines,
    text: () => lines.join('\n'),
    debug: at('debug'),
    info: at('info'),
    success: at('success'),
    warn: at('warn'),
    error: at('error'),
  }
}
