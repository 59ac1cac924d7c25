/**
 * Scenario 19: a sentinel API token and a sentinel database password, every error path forced at
 * debug level; neither sentinel may appear in any output or stored message.
 */
import {expect} from 'chai'
import type {Kysely} from 'kysely'

import type {Database} from '../../src/lib/db/schema.js'
import {generateEvents} from '../fake-heroku/events.js'
import {type FakeHeroku, startFakeHeroku} from '../fake-heroku/server.js'
import {type CliResult, cliEnv, runCli} from '../support/cli.js'
import {clearLog, describeWithServer, openTestDb} from '../support/db.js'

const TOKEN = 'HRKU-SENTINEL-TOKEN-5f1c0a7e9b3d4c2a8e6f'
const WRONG_TOKEN = 'HRKU-SENTINEL-WRONG-1a2b3c4d5e6f7a8b9c0d'
const PASSWORD = 'Sentinel-Db-Password-7731'
const DAY = '2025-05-05'

describeWithServer('secrets never leak (scenario 19)', function () {
  this.timeout(60_000)
  let fake: FakeHeroku
  let db: Kysely<Database>
  let env: NodeJS.ProcessEnv
  const outputs: Array<[string, CliResult]> = []
  // Every error_message the table held after each run.
  const stored: string[] = []

  before(async () => {
    fake = await startFakeHeroku({token: TOKEN, events: {[DAY]: generateEvents(DAY, 50)}})
    db = openTestDb(process.env.TEST_DATABASE_URL!)
    await clearLog(db)
    // Trust auth ignores the password, so the sentinel rides along in a URL that works.
    const url = new URL(process.env.TEST_DATABASE_URL!)
    url.password = PASSWORD
    env = cliEnv({
      DATABASE_URL: url.toString(),
      HEROKU_API_URL: fake.url,
      HEROKU_API_TOKEN: TOKEN,
      HEROKU_ACCOUNT_ID: 'acme',
      HEROKU_API_MAX_ATTEMPTS: '2',
      HEROKU_API_TIMEOUT: '1',
      LOG_LEVEL: 'trace',
    })
  })

  after(async () => {
    await clearLog(db)
    await db.destroy()
    await fake.close()
  })

  async function run(label: string, args: string[], extra: NodeJS.ProcessEnv = {}): Promise<CliResult> {
    const result = await runCli([...args, '--verbose'], {...env, ...extra})
    outputs.push([label, result])
    const rows = await db.selectFrom('audit_events_log').select('error_message').execute()
    stored.push(...rows.map((row) => row.error_message ?? ''))
    return result
  }

  it('forces every error path: no sentinel in any output or stored error_message', async () => {
    expect((await run('wrong token', ['process', '--date', DAY], {HEROKU_API_TOKEN: WRONG_TOKEN})).stderr).to.match(/401 unauthorized/)

    await run('reset', ['db', 'reset', DAY, '--confirm', DAY])
    fake.script([{kind: 'status', status: 500}, {kind: 'status', status: 500}])
    expect((await run('5xx', ['process', '--date', DAY])).stderr).to.match(/500/)

    await run('reset', ['db', 'reset', DAY, '--confirm', DAY])
    fake.script([{kind: 'truncated-json'}])
    expect((await run('malformed', ['process', '--date', DAY])).stderr).to.match(/malformed/)

    await run('reset', ['db', 'reset', DAY, '--confirm', DAY])
    fake.script([{kind: 'hang'}, {kind: 'reset'}])
    expect((await run('timeout and reset', ['process', '--date', DAY])).code).to.equal(1)

    await run('reset', ['db', 'reset', DAY, '--confirm', DAY])
    expect((await run('API unreachable', ['process', '--date', DAY], {HEROKU_API_URL: 'http://127.0.0.1:1'})).stderr).to.match(/could not reach/)

    const closed = `postgres://audit:${PASSWORD}@127.0.0.1:1/audit`
    expect((await run('database unreachable', ['process', '--date', DAY], {DATABASE_URL: closed})).code).to.equal(2)
    expect((await run('database unreachable (status)', ['db', 'status'], {DATABASE_URL: closed})).code).to.equal(2)
    expect((await run('unknown database', ['db', 'init'], {DATABASE_URL: `postgres://postgres:${PASSWORD}@127.0.0.1:5432/no_such_db_here`})).code).to.equal(2)
    expect((await run('malformed database URL', ['db', 'init'], {DATABASE_URL: `postgres://u:${PASSWORD}@host:port/x`})).code).to.equal(2)
    expect((await run('success', ['process', '--date', DAY])).code).to.equal(0)
    await run('status', ['db', 'status', '--limit', '50'])
    await run('status json', ['db', 'status', '--json'])

    for (const [label, {stdout, stderr}] of outputs) {
      for (const secret of [TOKEN, WRONG_TOKEN, PASSWORD]) {
        expect(stdout, `${label}: stdout`).not.to.include(secret)
        expect(stderr, `${label}: stderr`).not.to.include(secret)
      }
    }

    expect(stored.join('\n'), 'the error paths above did record failures').to.match(/401|500|malformed|could not reach/)
    for (const message of stored) {
      for (const secret of [TOKEN, WRONG_TOKEN, PASSWORD]) expect(message).not.to.include(secret)
    }
  })
}, 'starts bin/run.js processes on DATABASE_URL')
