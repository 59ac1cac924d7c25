import {createHash, createHmac, timingSafeEqual} from 'node:crypto'

/** Equal-length digests, so neither the length nor the first differing byte leaks through timing. */
function sameSecret(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest()
  const b = createHash('sha256').update(expected).digest()
  return timingSafeEqual(a, b)
}

export interface Credentials {
  username: string
  password: string
}

/**
 * Checks an `Authorization: Basic …` header. Both halves are always compared, so a wrong user
 * name takes as long as a wrong password.
 */
export function checkBasicAuth(header: string | undefined, expected: Credentials): boolean {
  const match = /^Basic ([A-Za-z0-9+/=]+)$/i.exec(header?.trim() ?? '')
  if (!match) return false
  const decoded = Buffer.from(match[1], 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  if (colon === -1) return false
  const userOk = sameSecret(decoded.slice(0, colon), expected.username)
  const passwordOk = sameSecret(decoded.slice(colon + 1), expected.password)
  return userOk && passwordOk
}

const CSRF_LIFETIME_MS = 60 * 60 * 1000

/**
 * Stateless CSRF tokens: issued-at time plus an HMAC keyed by the credentials. Basic auth alone
 * does not stop a forged cross-site POST (the browser resends the credentials); a token only our
 * own confirmation page can show does. Keyed by the credentials, so every web dyno accepts it.
 */
export function createCsrf(credentials: Credentials, now: () => number = Date.now) {
  const key = createHash('sha256').update(`audit-logger csrf\0${credentials.username}\0${credentials.password}`).digest()
  const sign = (issuedAt: string) => createHmac('sha256', key).update(`delete\0${issuedAt}`).digest('base64url')
  return {
    issue(): string {
      const issuedAt = String(now())
      return `${issuedAt}.${sign(issuedAt)}`
    },
    verify(token: unknown): boolean {
      if (typeof token !== 'string') return false
      const match = /^(\d{1,16})\.([A-Za-z0-9_-]{43})$/.exec(token)
      if (!match) return false
      const age = now() - Number(match[1])
      if (age < 0 || age > CSRF_LIFETIME_MS) return false
      return timingSafeEqual(Buffer.from(match[2]), Buffer.from(sign(match[1])))
    },
  }
}
