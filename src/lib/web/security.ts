import {createHash, createHmac, timingSafeEqual} from 'node:crypto'
import {BlockList, isIP} from 'node:net'

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

/** The selection as the token signs it: order and repeats do not change what is deleted. */
const selectionText = (dates: readonly string[]) => [...new Set(dates)].sort().join(',')

/**
 * Stateless CSRF tokens for the delete form: issued-at time plus an HMAC, keyed by the
 * credentials, over that time and the selection the confirmation page showed. Basic auth alone
 * does not stop a forged cross-site POST (the browser resends the credentials); a token only our
 * own confirmation page can show does, and it deletes exactly what that page listed, nothing
 * more or else. Keyed by the credentials, so every web dyno accepts it.
 */
export function createCsrf(credentials: Credentials, now: () => number = Date.now) {
  const key = createHash('sha256').update(`audit-logger csrf\0${credentials.username}\0${credentials.password}`).digest()
  const sign = (issuedAt: string, dates: readonly string[]) =>
    createHmac('sha256', key).update(`delete\0${issuedAt}\0${selectionText(dates)}`).digest('base64url')
  return {
    /** A token for deleting exactly `dates` (in any order), for the next hour. */
    issue(dates: readonly string[]): string {
      const issuedAt = String(now())
      return `${issuedAt}.${sign(issuedAt, dates)}`
    },
    /** Is `token` ours, under an hour old, and issued for exactly the selection `dates`? */
    verify(token: unknown, dates: readonly string[]): boolean {
      if (typeof token !== 'string') return false
      const match = /^(\d{1,16})\.([A-Za-z0-9_-]{43})$/.exec(token)
      if (!match) return false
      const age = now() - Number(match[1])
      if (age < 0 || age > CSRF_LIFETIME_MS) return false
      return timingSafeEqual(Buffer.from(match[2]), Buffer.from(sign(match[1], dates)))
    },
  }
}

const LOOPBACK = new BlockList()
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4')
LOOPBACK.addAddress('::1', 'ipv6')

/** 127.0.0.0/8 or ::1, in any spelling; an IPv4-mapped ::ffff:127.x counts too (a dual-stack socket). */
export function isLoopbackAddress(address: string | undefined): boolean {
  const family = address ? isIP(address) : 0
  return family !== 0 && LOOPBACK.check(address!, family === 6 ? 'ipv6' : 'ipv4')
}

/**
 * Is the client this machine? Judged by the socket's own peer, never by X-Forwarded-For (the app
 * trusts proxies, so request.ip is whatever a client claims). A proxy or tunnel on this machine
 * connects from loopback too, so a request it forwards for anyone else, saying so in
 * X-Forwarded-For, is not local either.
 */
export function isLocalClient(socketAddress: string | undefined, forwardedFor: string | string[] | undefined): boolean {
  if (!isLoopbackAddress(socketAddress)) return false
  const hops = [forwardedFor ?? []].flat().flatMap((header) => header.split(','))
  return hops.every((hop) => isLoopbackAddress(hop.trim()))
}
