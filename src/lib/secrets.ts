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

/** The scheme and `//` that open a URL with an authority (postgres://, http://). */
const SCHEME = /^[a-z][a-z0-9+.-]*:\/\//i

/**
 * Registers whatever a person may have meant as the password in `url`, however a URL parser
 * splits it. WHATWG's URL (and pg, which uses it) ends the user:password part at the first /, ?
 * or #, so `postgres://admin:/pw@host/db` parses with host `admin` and the password in the path,
 * where messages would quote it. What a person means is everything between the scheme's `//` and
 * the last `@`, after the first `:`; that is registered as written and decoded, and, when it holds
 * a character a parser may cut at (/ ? # @ :), so is each piece, since a message may quote a
 * piece as a host, port, path or database name. Over-masking a piece is harmless; printing it is not.
 */
export function registerUrlPassword(url: string): void {
  const scheme = SCHEME.exec(url)
  const at = url.lastIndexOf('@')
  if (!scheme || at < scheme[0].length) return
  const userinfo = url.slice(scheme[0].length, at)
  const colon = userinfo.indexOf(':')
  if (colon < 0) return
  const password = userinfo.slice(colon + 1)
  for (const candidate of [password, ...password.split(/[/?#@:]/)]) {
    registerSecret(candidate)
    registerSecret(decodedOrAsIs(candidate))
  }
}

/** `url` without anything up to its last `@`: no part of a user or password, however it was split. */
export function withoutUserinfo(url: string): string {
  const scheme = SCHEME.exec(url)
  const at = url.lastIndexOf('@')
  return scheme && at >= scheme[0].length ? `${scheme[0]}${url.slice(at + 1)}` : url
}

function decodedOrAsIs(text: string): string {
  try {
    return decodeURIComponent(text)
  } catch {
    return text
  }
}

/**
 * user:password@ in any URL, even one we never saw. The password runs to the last @ of its
 * word, so one holding an unencoded @, / or # is masked whole. Every part is bounded, so text
 * from outside costs linear time however it is made (an unbounded `[^@\s]+` made a long run of
 * `a://b:` quadratic).
 */
const URL_PASSWORD = /(\b[a-z][a-z0-9+.-]{0,31}:\/\/[^:/@\s]{0,256}:)(\S{1,1024})@/gi

/** What examples and hints write where a password goes; masking them would garble the hint. */
const PLACEHOLDER = /^(?:password|<password>|\[redacted\])$/i

/** Replaces every registered secret, and any password embedded in a URL, with a mask. */
export function redact(text: string): string {
  let result = text
  for (const secret of secrets) {
    if (result.includes(secret)) result = result.split(secret).join(MASK)
  }

  return result.replaceAll(URL_PASSWORD, (match, prefix: string, password: string) => (PLACEHOLDER.test(password) ? match : `${prefix}${MASK}@`))
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
