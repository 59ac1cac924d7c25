/**
 * Nothing from outside acts on a terminal: every line the tool prints (events in text format,
 * the logger, the error line, progress, the range summary, db status and db reset) is free of
 * control characters, which show escaped instead. Event fields, server messages, stored records
 * and environment values all count as outside.
 */
import {spawn} from 'node:child_process'
import {fileURLToPath, pathToFileURL} from 'node:url'

import {expect} from 'chai'
import type {Kysely} from 'kysely'

import {migrateToLatest} from '../../src/lib/db/migrate.js'
import type {Database} from '../../src/lib/db/schema.js'
import type {AuditEvent} from '../../src/lib/heroku/types.js'
import {MAX_LOG_MESSAGE, createLogger} from '../../src/lib/logger.js'
import {LineEncoder, formatEvent} from '../../src/lib/output/format-event.js'
import {renderDayLine} from '../../src/lib/processing/progress.js'
import {type RangeDayResult, renderRangeSummary} from '../../src/lib/processing/run-range.js'
import {renderStatusTable, type StatusReport} from '../../src/lib/processing/status-report.js'
import {registerSecret} from '../../src/lib/secrets.js'
import {generateEvents} from '../fake-heroku/events.js'
import type {FakeHeroku} from '../fake-heroku/server.js'
import {CaptureStream} from '../support/capture.js'
import {cliEnv, runCli} from '../support/cli.js'
import {openDataDirDb} from '../support/data-dir-db.js'
import {describeOnEngines, insertRecord, openTestDb} from '../support/db.js'
import {type JobSuite, useJobSuite} from '../support/job-suite.js'

/** Sets the terminal's title, moves up a line and erases it, returns, backspaces, then C1, DEL, a line separator and a bidi override. */
const HOSTILE = '\u001B]0;pwned\u0007\u001B[1A\u001B[2K\r\b\b\u009B2J\u007F\u2028\u202Egnp.exe'

/** Any character that can act on a terminal or forge a line; `\n` only ends lines, so it is checked per line. */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u0009\u000B-\u001F\u007F-\u009F\u2028\u2029\u202A-\u202E\u2066-\u2069]/

function expectControlFree(text: string, what: string): void {
  for (const [index, line] of text.split('\n').entries()) {
    expect(CONTROL.test(line), `${what}, line ${index + 1} holds a control character: ${JSON.stringify(line)}`).to.equal(false)
  }
}

/** A generated event whose text fields carry terminal escapes. */
function hostileEvent(base: AuditEvent): AuditEvent {
  return {
    ...base,
    actor: {id: base.actor?.id ?? 'u', email: `evil${HOSTILE}@example.com`},
    app: {id: base.app?.id ?? 'a', name: `web${HOSTILE}`},
    type: `app${HOSTILE}`,
    action: 'crea\u007Fte',
  } as AuditEvent
}

const DAY = '2025-06-06'

describe('text output of hostile events', () => {
  const [plain, second] = generateEvents(DAY, 2) as unknown as AuditEvent[]
  const event = hostileEvent(plain)

  it('escapes every control character visibly, in the quoted and the bare form alike', () => {
    const line = formatEvent(event, 'text')
    expect(line.endsWith('\n')).to.equal(true)
    expect(line.slice(0, -1)).not.to.include('\n')
    expectControlFree(line, 'the text line')
    // C0 as JSON escapes; what JSON leaves raw (C1, DEL, U+2028, bidi) as \x / \u escapes.
    expect(line).to.include('actor.email="evil\\u001b]0;pwned\\u0007\\u001b[1A\\u001b[2K\\r\\b\\b\\x9B2J\\x7F\\u2028\\u202Egnp.exe@example.com"')
    // A plain-looking word with only a DEL or a C1 control in it is quoted, not left bare.
    expect(line).to.include('action="crea\\x7Fte"')
    expect(formatEvent({...plain, type: 'app\u009B'} as AuditEvent, 'text')).to.include('type="app\\x9B"')
    // A literal backslash is quoted (and doubled), so an escape in a line is never text in disguise.
    expect(formatEvent({...plain, type: 'app\\x1B'} as AuditEvent, 'text')).to.include('type="app\\\\x1B"')
  })

  it('the encoder gives the same safe lines as formatEvent', () => {
    const bytes = new LineEncoder('text').encode([event, second])
    expect(bytes.toString('utf8')).to.equal(formatEvent(event, 'text') + formatEvent(second, 'text'))
  })

  it('json: valid JSON, one line per event, no C0 control (JSON escapes them), and the API’s bytes kept as they were', () => {
    const body = Buffer.from(JSON.stringify([event, second]))
    const cut = new LineEncoder('json').encode([event, second], body).toString('utf8')
    const serialized = new LineEncoder('json').encode([event, second]).toString('utf8')
    for (const out of [cut, serialized]) {
      const lines = out.split('\n').filter(Boolean)
      expect(lines.map((l) => JSON.parse(l) as unknown)).to.deep.equal([event, second])
      // eslint-disable-next-line no-control-regex
      for (const line of lines) expect(/[\u0000-\u001F]/.test(line), line).to.equal(false)
    }

    // Cut from the API's bytes, so C1, DEL, U+2028 and bidi controls stay as the API sent them:
    // JSON lines are for machines (a drain, a SIEM, jq), and are exactly what the API said.
    expect(cut).to.equal(`${JSON.stringify(event)}\n${JSON.stringify(second)}\n`)
  })
})

describe('the logger', () => {
  function capture(level: 'info' | 'debug' = 'debug') {
    const stream = new CaptureStream()
    return {stream, logger: createLogger(level, stream as unknown as NodeJS.WriteStream)}
  }

  it('writes each message as one line, control characters escaped, consola’s newline kept', () => {
    const {stream, logger} = capture()
    logger.warn(`boom${HOSTILE}\nERROR 2024-01-01 FORGED LINE\r\n\u001B[32m✔ all good`)
    logger.info('second')
    // Two messages, two lines (off CI, consola's fancy reporter sets a warning apart with blank lines).
    expect(stream.text.split('\n').filter(Boolean)).to.have.length(2)
    expect(stream.text.endsWith('second\n')).to.equal(true)
    expectControlFree(stream.text, 'the logger')
    expect(stream.lines()[0]).to.include('boom\\x1B]0;pwned\\x07\\x1B[1A\\x1B[2K \\x08\\x08\\x9B2J\\x7F \\u202Egnp.exe ERROR 2024-01-01 FORGED LINE \\x1B[32m✔ all good')
  })

  it('bounds a message before consola sees it', () => {
    const {stream, logger} = capture()
    logger.error(`${'x'.repeat(200_000)}${HOSTILE}`)
    expect(stream.lines()).to.have.length(1)
    expect(stream.lines()[0].length).to.be.below(5000)
    expect(stream.lines()[0].length).to.be.within(MAX_LOG_MESSAGE, MAX_LOG_MESSAGE + 20)
    expect(stream.lines()[0].endsWith('…')).to.equal(true)
  })

  it('masks a secret before folding, so whitespace inside it cannot break the match', () => {
    registerSecret('Sp4ce  Pass\tword-9917')
    const {stream, logger} = capture()
    logger.info('password is Sp4ce  Pass\tword-9917, see')
    expect(stream.text).to.include('password is [redacted], see')
    expect(stream.text).not.to.include('Sp4ce')
  })

  it('on a terminal (consola’s fancy reporter, colors on): colored, one safe line, and a 300,000-character message costs no time', async function () {
    this.timeout(40_000)
    const logger = pathToFileURL(fileURLToPath(new URL('../../src/lib/logger.ts', import.meta.url))).href
    const code = `
      const {createLogger} = await import(${JSON.stringify(logger)})
      const log = createLogger('info')
      log.warn('y'.repeat(300000) + ${JSON.stringify(HOSTILE)})
      log.info(${JSON.stringify(`done ${HOSTILE}\nFORGED`)})
    `
    // No CI and no TEST in the environment, so consola picks its fancy reporter, as on a terminal.
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      env: {PATH: process.env.PATH, HOME: process.env.HOME, FORCE_COLOR: '1'},
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stderr = ''
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
    const killer = setTimeout(() => child.kill('SIGKILL'), 20_000)
    const [exitCode, signal] = await new Promise<[number | null, string | null]>((resolve) => child.on('close', (c, s) => resolve([c, s])))
    clearTimeout(killer)
    expect(signal, 'finished within 20 s (the quadratic width computation took minutes)').to.equal(null)
    expect(exitCode, stderr).to.equal(0)
    // eslint-disable-next-line no-control-regex
    const sgr = /\u001B\[[\d;]*m/g
    expect(stderr, 'consola’s own colors are kept').to.match(sgr)
    expectControlFree(stderr.replaceAll(sgr, ''), 'the fancy logger')
    const lines = stderr.replaceAll(sgr, '').split('\n').filter(Boolean)
    expect(lines).to.have.length(2)
    expect(lines[1]).to.match(/done \\x1B]0;pwned\\x07.* FORGED$/)
  })
})

describe('other lines on stderr', () => {
  it('progress: a day’s line quotes its message as one safe line', () => {
    const result = {day: DAY, outcome: 'failed', events: 0, pages: 1, durationMs: 5, message: `Heroku API answered 500: ${HOSTILE}\nFORGED`} as RangeDayResult
    const line = renderDayLine(result, 1, 3)
    expectControlFree(line, 'the progress line')
    expect(line).not.to.include('\n')
    expect(line).to.match(/^\[1\/3\] 2025-06-06 FAILED: Heroku API answered 500: \\x1B]0;pwned.* FORGED$/)
  })

  it('the range summary: every line free of control characters, the database’s message included', () => {
    const summary = renderRangeSummary(
      {
        results: [
          {day: DAY, outcome: 'error', events: 0, pages: 0, durationMs: 5, message: `database error: ${HOSTILE}`},
          {day: '2025-06-07', outcome: 'not-started', events: 0, pages: 0, durationMs: 0},
        ],
        stopped: {reason: 'database', daysLeft: 1, message: `connection lost ${HOSTILE}\nFORGED`},
        exitCode: 1,
      },
      {rerun: `audit-logger process --from 2025-06-07 --to 2025-06-07 --output-dir '/tmp/x\u001B[2J'`},
    )
    expectControlFree(summary, 'the range summary')
    expect(summary).to.match(/Stopped: the database cannot be reached \(connection lost \\x1B]0;pwned.* FORGED\)/)
  })

  it('db status’s table shows a stored status and error_message escaped, whoever wrote them', () => {
    const report: StatusReport = {
      records: [{date: DAY, status: `FAIL${HOSTILE}`.slice(0, 20), events: 0, attempts: 1, durationSeconds: 1, error: `boom${HOSTILE}\nFORGED`, updatedAt: null, digest: null, settled_at: null, late_events: null, vanished_events: null, recovered_events: null, source: null, settled_digest: null}],
      counts: {[`FAIL${HOSTILE}`.slice(0, 20)]: 1},
      total: 1,
      migrations: {applied: ['m1'], pending: []},
      window: {from: DAY, to: DAY, days: 1},
      missing: [],
      store: {enabled: true, events: 0, oldestDay: null, newestDay: null, bytes: 0, partitions: 0, retentionDays: 365},
      delivery: [
        {
          sink: 'x',
          target: `ndjson ${HOSTILE}`,
          configured: true,
          pendingEvents: 3,
          pendingDays: 1,
          oldestPendingDay: DAY,
          deliveredEvents: 0,
          lastSuccessAt: null,
          lastError: null,
          stoppedAt: '2025-06-07T00:00:00.000Z',
          stopReason: `HTTP 400: ${HOSTILE}\nFORGED`,
        },
      ],
      archives: [
        {
          month: `2025-06${HOSTILE}`,
          status: 'mismatch',
          verified_at: '2025-07-01T03:00:00.000Z',
          checksum: null,
          archive_created_at: null,
          covered_to: null,
          size: null,
          archive_events: 1,
          days_compared: 1,
          matched: 0,
          recovered: 0,
          only_in_store: 1,
          not_collected: 0,
          imported_days: 0,
          imported_events: 0,
          detail: `only in store: ${HOSTILE}`,
        },
      ],
    }
    const table = renderStatusTable(report)
    expect(table).to.match(/^Archives: 1 month — 0 consistent, 1 mismatch, 0 checksum-failed; latest verified 2025-07-01 03:00 UTC \(2025-06.*\\x1B/m)
    expectControlFree(table, 'db status')
    expect(table).to.include('FAIL\\x1B]0;pwned\\x07')
    expect(table).to.match(/STOPPED since 2025-06-07T00:00:00.000Z: HTTP 400: .*FORGED/)
  })

  it('a configuration error quoting a hostile value is one safe line (exit 2)', async () => {
    const {code, stdout, stderr} = await runCli(['process', '--date', DAY], cliEnv({
      HEROKU_API_TOKEN: 'HRKU-terminal-safety-0000000000',
      HEROKU_ACCOUNT_ID: `acme${HOSTILE}\nERROR 2024-01-01 FORGED LINE`,
    }))
    expect(code).to.equal(2)
    expect(stdout).to.equal('')
    expect(stderr.trimEnd().split('\n'), stderr).to.have.length(1)
    expectControlFree(stderr, 'the error line')
    expect(stderr).to.match(/^Error: HEROKU_ACCOUNT_ID "acme\\x1B]0;pwned\\x07.* ERROR 2024-01-01 FORGED LINE" is neither a UUID nor an account name — /)
  })
})

describeOnEngines('hostile text, end to end (real processes)', function (engine) {
  this.timeout(60_000)
  let fake: FakeHeroku
  let env: NodeJS.ProcessEnv
  let emptyDbVars: JobSuite['emptyDbVars']

  useJobSuite((suite) => ({fake, env, emptyDbVars} = suite), {engine: engine.name})

  it('process: text lines on stdout carry no control character; json lines are valid and C0-free', async () => {
    const events = (generateEvents(DAY, 3) as unknown as AuditEvent[]).map((e, i) => (i === 1 ? hostileEvent(e) : e))
    fake.setEvents(DAY, events as never)
    const text = await runCli(['process', '--date', DAY], env)
    expect(text.code, text.stderr).to.equal(0)
    expect(text.stdout.split('\n').filter(Boolean)).to.have.length(3)
    expectControlFree(text.stdout, 'stdout (text)')
    expectControlFree(text.stderr, 'stderr')

    const json = await runCli(['process', '--date', DAY, '--force', '--format', 'json'], env)
    expect(json.code, json.stderr).to.equal(0)
    const lines = json.stdout.split('\n').filter(Boolean)
    expect(lines.map((l) => JSON.parse(l) as unknown)).to.deep.equal(events)
    // eslint-disable-next-line no-control-regex
    for (const line of lines) expect(/[\u0000-\u001F]/.test(line)).to.equal(false)
  })

  it('db status and db reset print a record written by another tool (ESC bytes in status and error_message) escaped', async () => {
    const fresh = await emptyDbVars('terminal')
    // A new database of the suite's engine: a scratch one on the server, or a new data directory (opened only while in use).
    const db: Kysely<Database> = fresh.DATABASE_URL ? openTestDb(fresh.DATABASE_URL) : await openDataDirDb(fresh.AUDIT_LOGGER_DATA_DIR)
    try {
      await migrateToLatest(db)
      await insertRecord(db, {day: DAY, status: 'FAIL\u001B[2J\r', error: `old tool: ${HOSTILE}\nFORGED\u001B[32m OK`})
      const status = await runCli(['db', 'status'], cliEnv(fresh))
      expect(status.code, status.stderr).to.equal(0)
      expect(status.stdout).to.include('FAIL\\x1B[2J\\x0D')
      expectControlFree(status.stdout, 'db status')
      expectControlFree(status.stderr, 'db status (stderr)')

      const reset = await runCli(['db', 'reset', DAY, '--confirm', DAY], cliEnv(fresh))
      expect(reset.code, reset.stderr).to.equal(0)
      expect(reset.stdout).to.include('Removed the record of 2025-06-06 (FAIL\\x1B[2J\\x0D')
      expectControlFree(reset.stdout, 'db reset')
    } finally {
      await db.destroy()
    }
  })
})
