/**
 * Every value registered here is scrubbed from any text before it is printed, rendered or stored.
 * Errors are mapped to safe messages at their source; this is the second line of defence.
 */
const secrets = new Set<string>()

const MASK = '[redacted]'

/** Remembers a secret (the API token, the database password) so redact() can hide it. */
export function registerSecret(value: string | undefined | null): void {
  // Very short values would mask ordinary words; real tokens and passwords are longer.
  if (value && value.length >= 4) {
    secrets.add(value)
    secrets.add(encodeURIComponent(value))
  }
}

/** Replaces every registered secret, and any password embedded in a URL, with a mask. */
export function redact(text: string): string {
  let result = text
  for (const secret of secrets) {
    if (result.includes(secret)) result = result.split(secret).join(MASK)
  }

  // user:password@host in any connection string, even one we never saw.
  return result.replaceAll(/(\b[a-z][a-z0-9+.-]*:\/\/[^:/@\s]*:)([^@\s]+)@/gi, `$1${MASK}@`)
}

/** The text of any thrown value, redacted. */
export function safeErrorMessage(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error)
  return redact(text)
}

/** For tests: forget every registered secret. */
export function clearSecrets(): void {
  secrets.clear()
}
