import {redact} from './secrets.js'
import {oneLine} from './text.js'

/*
 * What the tool reads of an answer from a server it posts to (a sink, the alert webhook): outside
 * input, so bounded, and never a URL in what it says.
 */

/** The first `maxBytes` of an answer's body as text; the rest is never read. A body cut short gives what came. */
export async function answerStart(response: Response, maxBytes: number): Promise<string> {
  if (!response.body) return ''
  const reader = response.body.getReader()
  const chunks: Uint8Array[] = []
  let size = 0
  try {
    while (size < maxBytes) {
      const {done, value} = await reader.read()
      if (done) break
      chunks.push(value)
      size += value.byteLength
    }
  } catch {
    // A body cut short still tells what it told so far.
  } finally {
    reader.cancel().catch(() => {})
  }

  return new TextDecoder().decode(Buffer.concat(chunks).subarray(0, maxBytes))
}

/**
 * The system's word for a network failure (ECONNREFUSED, ENOTFOUND…), from the error or its
 * causes; else its message, redacted and short. Never a URL a code could hide.
 */
export function networkCause(error: unknown): string {
  let current: unknown = error
  for (let depth = 0; depth < 5 && current; depth++) {
    const code = (current as {code?: unknown}).code
    if (typeof code === 'string' && /^[A-Z][A-Z0-9_]{1,40}$/.test(code)) return code
    current = (current as {cause?: unknown}).cause
  }

  return oneLine(redact(error instanceof Error ? error.message : String(error)), 120)
}
