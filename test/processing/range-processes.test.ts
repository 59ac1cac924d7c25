/**
 * Ranges with real processes (bin/run.js): many runners over many dates (scenario 2), a run
 * killed while it writes its day file, a range stopped by SIGTERM, and the progress lines a
 * non-terminal stderr gets (Heroku logs).
 */
import {existsSync, mkdtempSync, readdirSync, readFileSync, statSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {gunzipSync} from 'node:zlib'

import {expect} from 'chai'
import {type Kysely, sql} from 'kysely'

import {findDay} from '../../src/lib/db/audit-log-repository.js'
import type {Database} from '../../src/lib/db/schema.js'
import {daysBetween} from '../../src/lib/dates.js'
import {dayFilePath} from '../../src/lib/output/day-file.js'
import {eventsDigest} from '../../src/lib/processing/events-digest.js'
import {type AuditEvent, generateEvents} from '../fake-heroku/events.js'
import type {FakeHeroku} from '../fake-heroku/server.js'
import {type CliResult, runCli, startCli} from '../support/cli.js'
import {describeWithServer} from '../support/db.js'
import {useJobSuite} from '../support/job-suite.js'
import {waitUntil} from '../support/helpers.js'

const PAGE = 10

describeWithServer('ranges with real processes', function () {
  this.timeout(120_000)
  let fake: FakeHeroku
  let db: Kysely<Database>
  let env: NodeJS.ProcessEnv

  // Small pages, so a day of 25 events takes three requests.
  useJobSuite((suite) => ({fake, db, env} = suite), {fake: {maxPageSize: PAGE}, rateLimitRemaining: 4500})

  it('scenario 2: 8 runs over the same 30 dates: every date SUCCESS exactly once, every event written once', async () => {
    const days = daysBetween('2025-01-20', '2025-02-18')
    expect(days).to.have.length(30)
    const events = new Map<string, AuditEvent[]>()
    for (const [i, day] of days.entries()) {
      // 0 to 25 events a day: one to three pages.
      const list = generateEvents(day, (i * 7) % 26)
      events.set(day, list)
      fake.setEvents(day, list)
    }

    // Every request is a little slow, so the runs overlap and race for the same days.
    fake.script(Array.from({length: 200}, () => ({kind: 'delay' as const, ms: 30})))
    const runs = Array.from({length: 8}, () => startCli(['process', '--from', days[0], '--to', days.at(-1)!, '--format', 'json'], env))
    const results: CliResult[] = await Promise.all(runs.map((r) => r.result))

    for (const result of results) expect(result.code, result.stderr).to.equal(0)
    const rows = await db.selectFrom('audit_events_log').selectAll().orderBy('process_date').execute()
    expect(rows.map((r) => r.process_date)).to.deep.equal(days)
    for (const row of rows) {
      const list = events.get(row.process_date)!
      expect(row, row.process_date).to.include({status: 'SUCCESS', attempts: 1, events_count: list.length})
      expect(row.events_digest).to.equal(eventsDigest(list.map((e) => e.id)))
      const pages = Math.max(1, Math.ceil(list.length / PAGE))
      expect(fake.requestsForDay(row.process_date), `${row.process_date}: fetched once, ${pages} page(s)`).to.have.length(pages)
    }

    const written = results.flatMap((r) => r.stdout.split('\n').filter(Boolean)).map((line) => (JSON.parse(line) as {id: string}).id)
    const expected = [...events.values()].flat().map((e) => e.id)
    expect(written.length, 'no event written twice').to.equal(expected.length)
    expect(written.toSorted()).to.deep.equal(expected.toSorted())
    // Each run reports every date: done by itself, by another run, or being done by another.
    for (const result of results) expect(result.stderr).to.match(/30 day\(s\): /)
  })

  it('a run killed while writing its day file never leaves a half file under the final name, and the next run clears its leftover', async () => {
    const day = '2025-03-10'
    const dir = mkdtempSync(join(tmpdir(), 'audit-logger-kill-'))
    fake.setEvents(day, generateEvents(day, 25))
    // Page 1 is answered (and written to the temporary file); page 2 never is.
    fake.script([{kind: 'delay', ms: 0}, {kind: 'hang'}], {day})
    const run = startCli(['process', '--date', day, '--output-dir', dir], env)
    const temp = () => readdirSync(dir).find((name) => name.startsWith(`.${day}.ndjson.gz.tmp-`))
    await waitUntil('page 2 requested and page 1 on disk', () => {
      const name = temp()
      return fake.requestsForDay(day).length >= 2 && name !== undefined && statSync(join(dir, name)).size > 0
    })
    run.kill('SIGKILL')
    const killed = await run.result
    expect(killed.signal).to.equal('SIGKILL')
    expect(killed.stdout).to.equal('')
    expect(existsSync(dayFilePath(dir, day)), 'no file under the final name').to.equal(false)
    expect(readdirSync(dir)).to.have.length(1)
    expect(temp()).to.match(new RegExp(`^\\.${day}\\.ndjson\\.gz\\.tmp-${run.pid}-[0-9a-f]{16}$`))
    expect(() => gunzipSync(readFileSync(join(dir, temp()!))), 'the leftover is a half file').to.throw()
    expect((await findDay(db, day))?.status).to.equal('PROCESSING')

    // The next run takes the dead claim over and writes the whole day.
    await sql`UPDATE audit_events_log SET heartbeat_at = now() - interval '16 minutes' WHERE process_date = ${day}`.execute(db)
    const again = await runCli(['process', '--date', day, '--output-dir', dir], env)
    expect(again.code, again.stderr).to.equal(0)
    const lines = gunzipSync(readFileSync(dayFilePath(dir, day))).toString().split('\n').filter(Boolean)
    expect(lines.map((l) => JSON.parse(l))).to.deep.equal(generateEvents(day, 25))
    expect(readdirSync(dir), 'the dead run’s leftover removed by the run that took the day over').to.deep.equal([`${day}.ndjson.gz`])
    expect(await findDay(db, day)).to.include({status: 'SUCCESS', attempts: 2})
  })

  it('SIGTERM during a range: the running day FAILED, later days untouched, exit 1', async () => {
    fake.script([{kind: 'hang'}], {day: '2025-04-02'})
    const run = startCli(['process', '--from', '2025-04-01', '--to', '2025-04-03'], env)
    await waitUntil('the request for the second day', () => fake.requestsForDay('2025-04-02').length > 0)
    run.kill('SIGTERM')
    const result = await run.result
    expect(result.code).to.equal(1)
    expect((await findDay(db, '2025-04-01'))?.status).to.equal('SUCCESS')
    expect((await findDay(db, '2025-04-02'))?.status).to.equal('FAILED')
    expect(await findDay(db, '2025-04-03')).to.equal(undefined)
    expect(result.stderr).to.match(/2025-04-03 +not started +- +- +- +interrupted/)
    expect(result.stderr).to.match(/Interrupted: 1 day\(s\) were not started\. Run again: audit-logger process --from 2025-04-02 --to 2025-04-03$/m)
  })

  it('reports progress as one plain line per finished day when stderr is not a terminal, and keeps stdout to events', async () => {
    for (const day of ['2025-04-01', '2025-04-03']) fake.setEvents(day, generateEvents(day, 12))
    const result = await runCli(['process', '--from', '2025-04-01', '--to', '2025-04-03', '--format', 'json'], env)
    expect(result.code, result.stderr).to.equal(0)
    const progress = result.stderr.split('\n').filter((line) => /\[\d\/3\]/.test(line))
    expect(progress).to.have.length(3)
    expect(progress[0]).to.match(/\[1\/3\] 2025-04-01 SUCCESS: 12 events in 2 pages, \d+\.\d s, RateLimit-Remaining \d+$/)
    expect(progress[1]).to.match(/\[2\/3\] 2025-04-02 SUCCESS: 0 events in 1 page/)
    expect(progress[2]).to.match(/\[3\/3\] 2025-04-03 SUCCESS: 12 events in 2 pages/)
    expect(result.stderr, 'no terminal redraws in a log').not.to.include('\r')
    const stdout = result.stdout.split('\n').filter(Boolean)
    expect(stdout).to.have.length(24)
    for (const line of stdout) expect(() => JSON.parse(line)).not.to.throw()
  })
}, 'starts bin/run.js processes that share the database')
