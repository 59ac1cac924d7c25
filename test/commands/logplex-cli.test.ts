/**
 * `process` through the command line, as on a dyno: an event too big for one Logplex line is
 * written cut on stdout, and `events show` gives it whole from the store; a bad
 * LOG_LINES_PER_SECOND is a usage error (exit 2) before anything is claimed.
 */
import {expect} from 'chai'
import type {Kysely} from 'kysely'

import {findDay} from '../../src/lib/db/audit-log-repository.js'
import type {Database} from '../../src/lib/db/schema.js'
import {addDays, todayUtc} from '../../src/lib/dates.js'
import {MAX_LOG_LINE_BYTES} from '../../src/lib/output/format-event.js'
import {generateEvents} from '../fake-heroku/events.js'
import type {FakeHeroku} from '../fake-heroku/server.js'
import {runCli} from '../support/cli.js'
import {describeOnEngines} from '../support/db.js'
import {useJobSuite} from '../support/job-suite.js'

describeOnEngines('process: stdout within Logplex limits (real processes)', function (engine) {
  this.timeout(60_000)
  let fake: FakeHeroku
  let db: Kysely<Database>
  let env: NodeJS.ProcessEnv
  const day = addDays(todayUtc(), -3)

  useJobSuite((suite) => ({fake, db, env} = suite), {engine: engine.name})

  it('writes the 50 KB event in under 10,000 bytes, valid JSON with a note; `events show` gives it whole', async () => {
    const events = generateEvents(day, 30)
    const big = {...events[10], data: {blob: 'b'.repeat(50_000)}}
    events[10] = big
    fake.setEvents(day, events)
    const result = await runCli(['process', '--date', day, '--format', 'json'], {...env, LOG_LINES_PER_SECOND: '1000'})
    expect(result.code, result.stderr).to.equal(0)
    const lines = result.stdout.split('\n').filter(Boolean)
    expect(lines).to.have.length(30)
    for (const line of lines) expect(Buffer.byteLength(line) + 1).to.be.at.most(MAX_LOG_LINE_BYTES)
    const cut = JSON.parse(lines[10]) as {id: string; data: {whole: string}}
    expect(cut.id).to.equal(big.id)
    expect(cut.data.whole).to.equal(`audit-logger events show ${big.id}`)
    expect(lines.filter((line, k) => k !== 10 && line !== JSON.stringify(events[k])), 'the others as the API sent them').to.deep.equal([])
    const shown = await runCli(['events', 'show', big.id], env)
    expect(shown.code, shown.stderr).to.equal(0)
    expect(shown.stdout.trimEnd()).to.equal(JSON.stringify(big))
  })

  it('refuses a bad LOG_LINES_PER_SECOND with one line and exit 2, claiming nothing', async () => {
    const result = await runCli(['process', '--date', day], {...env, LOG_LINES_PER_SECOND: 'fast'})
    expect(result.code, result.stderr).to.equal(2)
    expect(result.stderr).to.include('LOG_LINES_PER_SECOND "fast" is not a whole number from 0 to 100000')
    expect(result.stdout).to.equal('')
    expect(await findDay(db, day)).to.equal(undefined)
  })
})
