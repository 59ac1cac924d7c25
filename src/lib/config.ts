import {existsSync, readFileSync} from 'node:fs'
import {join} from 'node:path'
import {parseEnv} from 'node:util'

import {defaultDataDir} from './db/data-dir.js'
import {UsageError} from './errors.js'
import {registerSecret, registerUrlPassword} from './secrets.js'

export type Env = Record<string, string | undefined>

export type DatabaseSslMode = 'auto' | 'disable' | 'no-verify' | 'verify'

export const LOG_LEVELS = ['silent', 'fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const
export type LogLevelName = (typeof LOG_LEVELS)[number]

export interface EventFilters {
  type?: string
  action?: string
  actorEmail?: string
}

export interface HerokuConfig {
  apiUrl: string
  token: string
  accountId: string
  filters: EventFilters
  /** The version in the Accept header (HEROKU_API_VERSION), default 3. */
  apiVersion?: string
  /** Per-request timeout in ms (HEROKU_API_TIMEOUT, given in seconds). */
  attemptTimeoutMs?: number
  /** Tries per request (HEROKU_API_MAX_ATTEMPTS). */
  maxAttempts?: number
  /** The most bytes one page may hold once decoded (HEROKU_API_MAX_PAGE_BYTES). */
  maxPageBytes?: number
}

/** A PostgreSQL server, from DATABASE_URL. */
export interface PostgresDatabaseConfig {
  kind: 'postgres'
  url: string
  ssl: DatabaseSslMode
}

/** The embedded PostgreSQL (PGlite) in a data directory, when DATABASE_URL is not set. */
export interface EmbeddedDatabaseConfig {
  kind: 'embedded'
  dataDir: string
}

export type DatabaseConfig = PostgresDatabaseConfig | EmbeddedDatabaseConfig

/** Settings of `process` beyond the API; unset values fall back to the defaults below. */
export interface ProcessingConfig {
  /** CATCH_UP_DAYS: the window `process --catch-up` looks back over. */
  catchUpDays?: number
  /** RATE_LIMIT_RESERVE: a range starts no new day once RateLimit-Remaining is below this. */
  rateLimitReserve?: number
  /** OUTPUT_DIR: also write each SUCCESS day to DIR/YYYY-MM-DD.ndjson.gz. */
  outputDir?: string
  /**
   * LOG_LINES_PER_SECOND: the most event lines written on stdout per second, 0 = unpaced. Default:
   * DYNO_LOG_LINES_PER_SECOND on a Heroku dyno (DYNO is set), where stdout is Logplex; else 0.
   */
  logLinesPerSecond?: number
}

export const DEFAULT_CATCH_UP_DAYS = 7
export const MAX_CATCH_UP_DAYS = 90
export const DEFAULT_RATE_LIMIT_RESERVE = 500
/**
 * The pace of stdout on a dyno: what one Logplex HTTP drain keeps up with when its endpoint takes
 * about half a second per batch (see the README's "Logplex limits"): a drain sends one batch of
 * about 100 KB at a time and keeps at most 1,024 messages waiting (L10).
 */
export const DYNO_LOG_LINES_PER_SECOND = 200
export const MAX_LOG_LINES_PER_SECOND = 100_000
/** Heroku's pool per account: RateLimit-Remaining never exceeds it. */
export const RATE_LIMIT_POOL = 4500
/**
 * The longest --stale-after (and STALE_AFTER_MINUTES): a year. A run beats at least every 30 s,
 * so one silent for a year is dead beyond doubt; and now() minus it stays far inside
 * PostgreSQL's timestamps, where 99999999999 minutes (190,000 years) is "timestamp out of range".
 */
export const MAX_STALE_AFTER_MINUTES = 365 * 24 * 60

/** The event store (audit_events): whether `process` keeps events, and for how long. */
export interface StoreConfig {
  /** EVENT_STORE: on (default) or off. */
  enabled: boolean
  /** EVENT_RETENTION_DAYS: events of days older than this many days are removed (the records stay). */
  retentionDays: number
  /** SETTLE_HOURS: a SUCCESS day is read once more this many hours after it was collected; undefined = off. */
  settleHours?: number
  /** CATCH_UP_ARCHIVES: process --catch-up checks months now over against Heroku's archives (default on). */
  catchUpArchives?: boolean
}

export const DEFAULT_RETENTION_DAYS = 365
export const DEFAULT_SETTLE_HOURS = 24
export const MAX_SETTLE_HOURS = 168
export const MAX_RETENTION_DAYS = 3650

/** Where alerts go (ALERT_WEBHOOK_URL): a Slack-compatible incoming webhook. The URL is a secret. */
export interface AlertWebhook {
  url: string
  /** The URL's host (and port), the only part of it ever printed: "the alert webhook (hooks.slack.com)". */
  host: string
}

/** Alerts (see src/lib/alerts/alerts.ts): recorded and sent only when a webhook is configured. */
export interface AlertsConfig {
  webhook?: AlertWebhook
  /** HEALTH_REQUIRE_YESTERDAY_AFTER: from this UTC hour, yesterday not SUCCESS is announced. */
  requireYesterdayAfterHour?: number
  /** Names this deployment in each alert: HEROKU_APP_NAME when set. */
  source?: string
}

export interface Config {
  database: DatabaseConfig
  store: StoreConfig
  /** ALERT_WEBHOOK_URL and when yesterday is due (see src/lib/alerts). */
  alerts: AlertsConfig
  /** SINK_URL and its settings: where `process` and `deliver` send stored events. */
  sink?: SinkConfig
  /** Present only when the command needs the API (see loadConfig's `needsHeroku`). */
  heroku?: HerokuConfig
  /** Present only with `needsHeroku`, as only `process` uses it. */
  processing?: ProcessingConfig
  logLevel?: LogLevelName
}

export const DEFAULT_HEROKU_API_URL = 'https://api.heroku.com'

/**
 * Bounds of HEROKU_API_MAX_PAGE_BYTES: a real page of 1000 events is about 1 MB, so less than
 * 1 MiB would fail real days; a page is held several times over while parsed, so more than
 * 256 MiB could take gigabytes.
 */
export const PAGE_BYTES_RANGE = {min: 1024 * 1024, max: 256 * 1024 * 1024} as const

/**
 * Reads `.env` from `dir`, as the old tool did, without overriding variables already set.
 * A malformed file is a usage error rather than a silent partial read.
 */
export function withDotEnv(env: Env, dir: string = process.cwd()): Env {
  const path = join(dir, '.env')
  if (!existsSync(path)) return env
  let parsed: Env
  try {
    parsed = parseEnv(readFileSync(path, 'utf8'))
  } catch {
    throw new UsageError(`could not read ${path}`, 'fix or remove the .env file')
  }

  return {...parsed, ...definedOnly(env)}
}

function definedOnly(env: Env): Env {
  return Object.fromEntries(Object.entries(env).filter(([, value]) => value !== undefined))
}

/** Treats empty strings as unset, as a shell `FOO=` usually means "no value". */
function read(env: Env, name: string): string | undefined {
  const value = env[name]?.trim()
  return value ? value : undefined
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const ACCOUNT_NAME = /^[a-z0-9][a-z0-9-]{0,99}$/i
const FILTER_WORD = /^[a-z0-9][a-z0-9_.-]*$/i
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/

/**
 * DATABASE_URL names a PostgreSQL server; without it, the embedded database in the data directory.
 * Not on a Heroku dyno, though: its disk is wiped on every restart and no two dynos share it.
 */
function readDatabase(env: Env): DatabaseConfig {
  const url = read(env, 'DATABASE_URL')
  if (!url) {
    if (read(env, 'DYNO')) {
      throw new UsageError(
        'DATABASE_URL is not set, and the embedded database cannot live on a Heroku dyno (its disk is wiped on every restart)',
        'add Heroku Postgres, which sets DATABASE_URL: heroku addons:create heroku-postgresql:essential-0',
      )
    }

    return {kind: 'embedded', dataDir: defaultDataDir(env)}
  }

  // Before parsing: a password the parser mis-splits must be masked wherever a piece of it shows up.
  registerUrlPassword(url)
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw new UsageError('DATABASE_URL is not a valid URL', 'use the form postgres://user:password@host:5432/database')
  }

  registerSecret(decodeURIComponent(parsed.password))
  // pg also takes the password from the query string.
  registerSecret(parsed.searchParams.get('password'))
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    throw new UsageError(
      `DATABASE_URL must start with postgres:// or postgresql:// (it starts with ${parsed.protocol}//)`,
      'use the form postgres://user:password@host:5432/database',
    )
  }

  const ssl = (read(env, 'DATABASE_SSL') ?? 'auto').toLowerCase()
  if (!['auto', 'disable', 'no-verify', 'verify'].includes(ssl)) {
    throw new UsageError(`DATABASE_SSL must be auto, disable, no-verify or verify (got "${ssl}")`, 'unset it to use auto')
  }

  return {kind: 'postgres', url, ssl: ssl as DatabaseSslMode}
}

function readHeroku(env: Env): HerokuConfig {
  const token = read(env, 'HEROKU_API_TOKEN')
  if (!token) {
    throw new UsageError(
      'HEROKU_API_TOKEN is not set',
      "set it to an Enterprise Admin's API token, e.g. from `heroku authorizations:create`",
    )
  }

  registerSecret(token)
  if (/\s/.test(token)) {
    throw new UsageError('HEROKU_API_TOKEN contains whitespace', 'copy the token again without spaces or line breaks')
  }

  const accountId = read(env, 'HEROKU_ACCOUNT_ID') ?? read(env, 'HEROKU_ACCOUNT_ID_OR_NAME')
  if (!accountId) {
    throw new UsageError(
      'HEROKU_ACCOUNT_ID is not set',
      'set it to the enterprise account id (a UUID) or name (HEROKU_ACCOUNT_ID_OR_NAME is accepted too)',
    )
  }

  if (!UUID.test(accountId) && !ACCOUNT_NAME.test(accountId)) {
    throw new UsageError(
      `HEROKU_ACCOUNT_ID "${accountId}" is neither a UUID nor an account name`,
      'use the UUID or the name shown by `heroku enterprises`',
    )
  }

  const apiUrl = read(env, 'HEROKU_API_URL') ?? DEFAULT_HEROKU_API_URL
  // Credentials in the URL would go to whatever host it names, and fetch refuses them only once a
  // day is claimed. Any @ counts (a password may hold a / that ends the authority early), and the
  // URL is not quoted, so they are not printed either.
  if (apiUrl.includes('@')) {
    throw new UsageError('HEROKU_API_URL must not hold a user name or password (user:password@host)', 'remove them: the API token goes in HEROKU_API_TOKEN')
  }

  let parsedApiUrl: URL
  try {
    parsedApiUrl = new URL(apiUrl)
  } catch {
    throw new UsageError(`HEROKU_API_URL "${apiUrl}" is not a valid URL`, `unset it to use ${DEFAULT_HEROKU_API_URL}`)
  }

  if (parsedApiUrl.protocol !== 'https:' && parsedApiUrl.protocol !== 'http:') {
    throw new UsageError(`HEROKU_API_URL must be an http(s) URL (got ${parsedApiUrl.protocol})`, `unset it to use ${DEFAULT_HEROKU_API_URL}`)
  }

  const apiVersion = read(env, 'HEROKU_API_VERSION')
  if (apiVersion !== undefined && !/^3(\.[a-z0-9-]+)?$/i.test(apiVersion)) {
    throw new UsageError(`HEROKU_API_VERSION "${apiVersion}" is not a Platform API version`, 'use 3 or 3.audit-trail, or unset it')
  }

  const timeoutSeconds = readPositiveInteger(env, 'HEROKU_API_TIMEOUT', 3600)
  return {
    apiUrl: apiUrl.replace(/\/+$/, ''),
    token,
    accountId,
    filters: readFilters(env),
    apiVersion,
    attemptTimeoutMs: timeoutSeconds === undefined ? undefined : timeoutSeconds * 1000,
    maxAttempts: readPositiveInteger(env, 'HEROKU_API_MAX_ATTEMPTS', 20),
    maxPageBytes: readInteger(env, 'HEROKU_API_MAX_PAGE_BYTES', PAGE_BYTES_RANGE.min, PAGE_BYTES_RANGE.max),
  }
}

function readPositiveInteger(env: Env, name: string, max: number): number | undefined {
  const value = read(env, name)
  if (value === undefined) return undefined
  if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > max) {
    throw new UsageError(`${name} "${value}" is not a whole number from 1 to ${max}`, 'fix it or unset it to use the default')
  }

  return Number(value)
}

function readInteger(env: Env, name: string, min: number, max: number): number | undefined {
  const value = read(env, name)
  if (value === undefined) return undefined
  if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) {
    throw new UsageError(`${name} "${value}" is not a whole number from ${min} to ${max}`, 'fix it or unset it to use the default')
  }

  return Number(value)
}

function readProcessing(env: Env): ProcessingConfig {
  return {
    catchUpDays: readInteger(env, 'CATCH_UP_DAYS', 1, MAX_CATCH_UP_DAYS),
    // 0 turns the budget off; the pool never holds more than 4500.
    rateLimitReserve: readInteger(env, 'RATE_LIMIT_RESERVE', 0, RATE_LIMIT_POOL),
    outputDir: read(env, 'OUTPUT_DIR'),
    logLinesPerSecond: readInteger(env, 'LOG_LINES_PER_SECOND', 0, MAX_LOG_LINES_PER_SECOND) ?? (read(env, 'DYNO') ? DYNO_LOG_LINES_PER_SECOND : 0),
  }
}

function readFilters(env: Env): EventFilters {
  const filters: EventFilters = {}
  const type = read(env, 'FILTER_TYPE')
  const action = read(env, 'FILTER_ACTION')
  const actorEmail = read(env, 'FILTER_ACTOR_EMAIL')
  if (type !== undefined) {
    if (!FILTER_WORD.test(type)) throw new UsageError(`FILTER_TYPE "${type}" is not an event type`, 'use a type such as app, addon or collaborator, or unset it')
    filters.type = type
  }

  if (action !== undefined) {
    if (!FILTER_WORD.test(action)) throw new UsageError(`FILTER_ACTION "${action}" is not an event action`, 'use an action such as create, update or destroy, or unset it')
    filters.action = action
  }

  if (actorEmail !== undefined) {
    if (!EMAIL.test(actorEmail)) throw new UsageError(`FILTER_ACTOR_EMAIL "${actorEmail}" is not an email address`, "use the actor's email, or unset it")
    filters.actorEmail = actorEmail
  }

  return filters
}

function readLogLevel(env: Env): LogLevelName | undefined {
  const level = read(env, 'LOG_LEVEL')?.toLowerCase()
  if (level === undefined) return undefined
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    throw new UsageError(`LOG_LEVEL "${level}" is not a log level`, `use one of ${LOG_LEVELS.join(', ')}`)
  }

  return level as LogLevelName
}

/**
 * Reads and validates the environment once. Throws a UsageError naming the first variable that
 * is missing or malformed. `needsHeroku` asks for the API settings too (only `process` does).
 */
export function loadConfig(env: Env, options: {needsHeroku?: boolean} = {}): Config {
  const logLevel = readLogLevel(env)
  // Secrets are registered before anything else can fail and print them.
  registerSecret(read(env, 'HEROKU_API_TOKEN'))
  const heroku = options.needsHeroku ? readHeroku(env) : undefined
  const processing = options.needsHeroku ? readProcessing(env) : undefined
  const store = readStore(env)
  return {database: readDatabase(env), store, sink: readSink(env, store), alerts: readAlerts(env), heroku, processing, logLevel}
}

/**
 * ALERT_WEBHOOK_URL, an http(s) URL. Its path (and query) hold the webhook's token, so the whole
 * URL, its path, its last path segment and its query values are registered as secrets before it
 * is checked, and no message quotes it: only its host is ever named.
 */
function readAlertWebhook(env: Env): AlertWebhook | undefined {
  const url = read(env, 'ALERT_WEBHOOK_URL')
  if (url === undefined) return undefined
  registerSecret(url)
  registerUrlPassword(url)
  const how = 'set it to the incoming webhook URL (https://hooks.slack.com/services/…), or unset it to send no alerts'
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw new UsageError('ALERT_WEBHOOK_URL is not a valid URL', how)
  }

  registerUrlSecrets(parsed)
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') {
    throw new UsageError(`ALERT_WEBHOOK_URL must be an http(s) URL (it starts with ${parsed.protocol}//)`, how)
  }

  if (url.includes('@')) {
    throw new UsageError('ALERT_WEBHOOK_URL must not hold a user name or password (user:password@host)', how)
  }

  return {url: parsed.href, host: parsed.host}
}

/** The shortest piece of a URL registered as a secret on its own (Slack's token has 24 characters). */
const MIN_URL_SECRET_PIECE = 12

/**
 * A URL whose path or query may be the credential itself (a Slack webhook, a Sumo Logic intake):
 * the whole of it, its path and query, and each piece long enough to be a token, as written and
 * decoded, so an answer that echoes only the token is masked too. Pieces only when long enough to
 * be a token: a short word ("alerts", "json") masked in every message would garble them, and the
 * URL itself is never printed anyway.
 */
function registerUrlSecrets(parsed: URL): void {
  registerSecret(parsed.href)
  const tokenLike = (piece: string) => piece.length >= MIN_URL_SECRET_PIECE
  const pathAndQuery = `${parsed.pathname}${parsed.search}`
  if (tokenLike(pathAndQuery)) registerSecret(pathAndQuery)
  for (const segment of parsed.pathname.split('/')) {
    if (!tokenLike(segment)) continue
    registerSecret(segment)
    registerSecret(decodedOrKept(segment))
  }

  for (const value of parsed.searchParams.values()) if (tokenLike(value)) registerSecret(value)
}

function decodedOrKept(text: string): string {
  try {
    return decodeURIComponent(text)
  } catch {
    return text
  }
}

function readAlerts(env: Env): AlertsConfig {
  const webhook = readAlertWebhook(env)
  const requireYesterdayAfterHour = readInteger(env, 'HEALTH_REQUIRE_YESTERDAY_AFTER', 0, 23)
  const source = read(env, 'HEROKU_APP_NAME')
  return {webhook, requireYesterdayAfterHour, ...(source ? {source} : {})}
}

function readStore(env: Env): StoreConfig {
  const value = (read(env, 'EVENT_STORE') ?? 'on').toLowerCase()
  if (!['on', 'off'].includes(value)) throw new UsageError(`EVENT_STORE must be on or off (got "${value}")`, 'unset it to keep every event (on)')
  const settle = read(env, 'SETTLE_HOURS')
  const settleHours = settle?.toLowerCase() === 'off' ? undefined : (readInteger(env, 'SETTLE_HOURS', 0, MAX_SETTLE_HOURS) ?? DEFAULT_SETTLE_HOURS)
  const archives = (read(env, 'CATCH_UP_ARCHIVES') ?? 'on').toLowerCase()
  if (!['on', 'off'].includes(archives)) throw new UsageError(`CATCH_UP_ARCHIVES must be on or off (got "${archives}")`, 'unset it to have catch-up check months against their archives (on)')
  return {
    enabled: value === 'on',
    catchUpArchives: archives === 'on',
    retentionDays: readInteger(env, 'EVENT_RETENTION_DAYS', 1, MAX_RETENTION_DAYS) ?? DEFAULT_RETENTION_DAYS,
    ...(settleHours === undefined ? {} : {settleHours}),
  }
}

export interface WebConfig {
  /** Basic auth for every route but /healthz; absent = the page is read-only. */
  auth?: {username: string; password: string}
  port: number
  /** Minutes without a heartbeat after which a PROCESSING record may be deleted without force. */
  staleAfterMinutes: number
  /** UTC hour from which /healthz answers 503 unless yesterday is SUCCESS (HEALTH_REQUIRE_YESTERDAY_AFTER). */
  requireYesterdayAfterHour?: number
  /**
   * Running on a Heroku dyno (DYNO is set). Without credentials the events views (personal data)
   * are then refused: a dyno is reachable from the internet. loadWebConfig always sets it.
   */
  onDyno?: boolean
}

/** The status page's settings: both credentials or neither, and a valid port. */
export function loadWebConfig(env: Env, portFlag?: number): WebConfig {
  const username = read(env, 'STATUS_PAGE_USERNAME')
  const password = env.STATUS_PAGE_PASSWORD && env.STATUS_PAGE_PASSWORD.length > 0 ? env.STATUS_PAGE_PASSWORD : undefined
  registerSecret(password)
  if ((username === undefined) !== (password === undefined)) {
    const missing = username === undefined ? 'STATUS_PAGE_USERNAME' : 'STATUS_PAGE_PASSWORD'
    throw new UsageError(
      `${missing} is not set but ${missing === 'STATUS_PAGE_USERNAME' ? 'STATUS_PAGE_PASSWORD' : 'STATUS_PAGE_USERNAME'} is`,
      'set both to protect the page with basic auth, or neither to serve it read-only',
    )
  }

  const port = portFlag ?? readPositiveInteger(env, 'PORT', 65_535) ?? 3000
  const staleAfterMinutes = readPositiveInteger(env, 'STALE_AFTER_MINUTES', MAX_STALE_AFTER_MINUTES) ?? 15
  const requireYesterdayAfterHour = readInteger(env, 'HEALTH_REQUIRE_YESTERDAY_AFTER', 0, 23)
  return {
    auth: username && password ? {username, password} : undefined,
    port,
    staleAfterMinutes,
    requireYesterdayAfterHour,
    onDyno: read(env, 'DYNO') !== undefined,
  }
}

export const SINK_FORMATS = ['ndjson', 'splunk-hec'] as const
export type SinkFormat = (typeof SINK_FORMATS)[number]

/** An HTTP intake that gets every stored event, at least once (see src/lib/delivery). */
export interface SinkConfig {
  /** SINK_URL: never printed whole (a path or query may hold a token); see `target`. */
  url: string
  format: SinkFormat
  /** SINK_TOKEN: `Authorization: Splunk <token>` for splunk-hec, `Bearer <token>` for ndjson. */
  token?: string
  /** What is shown of the sink: its format and host. */
  target: string
  /** Most events in one request (SINK_BATCH_EVENTS). */
  batchEvents: number
  /** Most bytes in one request's body (SINK_BATCH_BYTES); an event bigger than this goes alone. */
  batchBytes: number
  /** Per-request timeout in ms (SINK_TIMEOUT, given in seconds). */
  timeoutMs: number
  /** Tries per batch in one run (SINK_MAX_ATTEMPTS) before the run leaves it for the next. */
  maxAttempts: number
}

export const DEFAULT_SINK_BATCH_EVENTS = 1000
/** Splunk's HTTP Event Collector refuses bodies over 1 MB by default (max_content_length). */
export const DEFAULT_SINK_BATCH_BYTES = 1_000_000

function readSink(env: Env, store: StoreConfig): SinkConfig | undefined {
  const url = read(env, 'SINK_URL')
  const token = read(env, 'SINK_TOKEN')
  registerSecret(token)
  if (url === undefined) {
    if (token !== undefined) throw new UsageError('SINK_TOKEN is set but SINK_URL is not', 'set SINK_URL to the intake, or unset SINK_TOKEN')
    return undefined
  }

  // A path or query may be the credential itself (Sumo Logic, some webhooks): hide both.
  registerSecret(url)
  if (url.includes('@')) {
    throw new UsageError('SINK_URL must not hold a user name or password (user:password@host)', 'remove them and put the credential in SINK_TOKEN')
  }

  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw new UsageError('SINK_URL is not a valid URL', 'use the form https://intake.example.com/path')
  }

  registerUrlSecrets(parsed)
  // A short token in the query (?token=…) is a secret all the same.
  for (const value of parsed.searchParams.values()) registerSecret(value)
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') {
    throw new UsageError(`SINK_URL must be an http(s) URL (it starts with ${parsed.protocol}//)`, 'use the form https://intake.example.com/path')
  }

  const format = (read(env, 'SINK_FORMAT') ?? 'ndjson').toLowerCase()
  if (!(SINK_FORMATS as readonly string[]).includes(format)) {
    throw new UsageError(`SINK_FORMAT must be ${SINK_FORMATS.join(' or ')} (got "${format}")`, 'unset it to post newline-delimited JSON (ndjson)')
  }

  if (format === 'splunk-hec' && token === undefined) {
    throw new UsageError('SINK_FORMAT=splunk-hec needs SINK_TOKEN', "set SINK_TOKEN to the HTTP Event Collector token (Splunk: Settings > Data inputs > HTTP Event Collector)")
  }

  if (!store.enabled) {
    throw new UsageError('SINK_URL is set but the event store is off (EVENT_STORE=off): sinks are fed from the store', 'unset EVENT_STORE (it is on by default), or unset SINK_URL')
  }

  return {
    url,
    format: format as SinkFormat,
    token,
    target: `${format} ${parsed.protocol}//${parsed.host}`,
    batchEvents: readInteger(env, 'SINK_BATCH_EVENTS', 1, 10_000) ?? DEFAULT_SINK_BATCH_EVENTS,
    batchBytes: readInteger(env, 'SINK_BATCH_BYTES', 10_000, 100_000_000) ?? DEFAULT_SINK_BATCH_BYTES,
    timeoutMs: (readPositiveInteger(env, 'SINK_TIMEOUT', 600) ?? 30) * 1000,
    maxAttempts: readPositiveInteger(env, 'SINK_MAX_ATTEMPTS', 20) ?? 5,
  }
}
