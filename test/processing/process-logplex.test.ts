/**
 * The day job's stdout survives Logplex, on both engines: no event line over MAX_LOG_LINE_BYTES
 * (an event with a 50 KB data is written with its data cut, and a note saying where it is whole),
 * while the store and the --output-dir file keep every event whole; and LOG_LINES_PER_SECOND paces
 * the lines, the claim kept alive meanwhile. The pace's clock is injected: no wall-clock assertion.
 */
import {mkdtempSync, readFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {gunzipSync} from 'node:zlib'

import {expect} from 'chai'
import type {Kysely} from 'kysely'

import {findDay} from '../../src/lib/db/audit-log-repository.js'
import {findEvent} from '../../src/lib/db/event-queries.js'
import {type EventStore, eventStoreFor} from '../../src/lib/db/event-store.js'
import type {Database} from '../../src/lib/db/schema.js'
import {createAuditClient} from '../../src/lib/heroku/client.js'
import type {PaceClock} from '../../src/lib/output/deliver.js'
import {dayFilePath} from '../../src/lib/output/day-file.js'
import {KEPT_FIELDS, MAX_LOG_LINE_BYTES} from '../../src/lib/output/format-event.js'
import {type ProcessDayOptions, processDay} from '../../src/lib/processing/process-day.js'
import {type AuditEvent, generateEvents} from '../fake-heroku/events.js'
import type {FakeHeroku} from '../fake-heroku/server.js'
import {CaptureStream, captureLogger} from '../support/capture.js'
import {describeOnEngines} from '../support/db.js'
import {useJobSuite} from '../support/job-suite.js'

const DAY = '2025-09-28'

/** A day with one event whose data is 50 KB (and one with a 12 KB owner email), among ordinary ones. */
function dayWithBigEvents(): {events: AuditEvent[]; big: AuditEvent; bigOwner: AuditEvent} {
  const events = generateEvents(DAY, 300)
  const big = {...events[100], data: {blob: 'x'.repeat(50_000), emoji: '🦆'.repeat(100)}}
  const bigOwner = {...events[200], owner: {id: 'owner-1', email: `${'o'.repeat(12_000)}@example.com`}}
  events[100] = big
  events[200] = bigOwner
  return {events, big, bigOwner}
}

/** Every line of the output, each checked against the limit (its newline counted). */
function checkedLines(text: string): string[] {
  const lines = text.split('\n').filter(Boolean)
  for (const line of lines) expect(Buffer.byteLength(line) + 1).to.be.at.most(MAX_LOG_LINE_BYTES)
  return lines
}

function lineOf(lines: string[], id: string): Record<string, unknown> {
  const line = lines.find((l) => l.includes(`"id":"${id}"`))
  expect(line, `the line of ${id}`).to.be.a('string')
  return JSON.parse(line!) as Record<string, unknown>
}

describeOnEngines('processDay: stdout that survives Logplex', (engine) => {
  let fake: FakeHeroku
  let db: Kysely<Database>

  useJobSuite((suite) => ({fake, db} = suite), {fake: {maxPageSize: 1000}, open: engine.open, rateLimitRemaining: 4500})

  /** `store: null` runs with the store off. */
  function run(options: Partial<ProcessDayOptions> = {}, store: EventStore | null = eventStoreFor(db), paceClock?: PaceClock) {
    const client = createAuditClient({apiUrl: fake.url, token: fake.token, accountId: 'acme', baseDelayMs: 5, maxDelayMs: 20, attemptTimeoutMs: 5000, maxAttempts: 2})
    const output = new CaptureStream()
    const logger = captureLogger()
    const done = processDay({db, client, output, logger, store: store ?? undefined, paceClock}, {day: DAY, format: 'json', force: false, staleAfterMinutes: 15, heartbeatIntervalMs: 20, ...options})
    return {output, logger, done}
  }

  it('an event with a 50 KB data: its line is under 10,000 bytes, valid JSON, its data a note; the store has it whole', async () => {
    const {events, big, bigOwner} = dayWithBigEvents()
    fake.setEvents(DAY, events)
    const {output, logger, done} = run()
    expect(await done).to.include({outcome: 'success', events: 300, stored: true})
    const lines = checkedLines(output.text)
    expect(lines).to.have.length(300)
    const cut = lineOf(lines, big.id)
    for (const field of KEPT_FIELDS) expect(cut[field], field).to.deep.equal((big as unknown as Record<string, unknown>)[field])
    expect(cut.data).to.deep.equal({cut: `data (${Buffer.byteLength(JSON.stringify(big.data))} bytes) left out to keep the line under 10000 bytes (Logplex)`, whole: `audit-logger events show ${big.id}`})
    // The other big field goes once data alone is not enough.
    expect(lineOf(lines, bigOwner.id)).to.not.have.property('owner')
    expect((await findEvent(db, big.id))?.event_json).to.equal(JSON.stringify(big))
    expect((await findEvent(db, bigOwner.id))?.event_json).to.equal(JSON.stringify(bigOwner))
    expect(logger.text()).to.include(`${DAY}: 2 event(s) too long for one log line (over 10000 bytes) written on stdout with their data cut; whole: audit-logger events show <this event's id>`)
  })

  it('text lines too: none over the limit, and the ordinary events exactly as before', async () => {
    const {events} = dayWithBigEvents()
    const huge = {...events[5], actor: {id: 'a', email: `${'e'.repeat(50_000)}@example.com`}}
    events[5] = huge
    fake.setEvents(DAY, events)
    const {output, done} = run({format: 'text'})
    expect((await done).outcome).to.equal('success')
    const lines = checkedLines(output.text)
    expect(lines).to.have.length(300)
    expect(lines[5]).to.include(`id=${huge.id}`).and.to.include(' cut="long values shortened')
    expect(lines[0]).to.not.include('cut=')
  })

  it('--output-dir keeps every event whole, with --format json too; the note then points at the file when the store is off', async () => {
    const {events, big} = dayWithBigEvents()
    fake.setEvents(DAY, events)
    const dir = mkdtempSync(join(tmpdir(), 'audit-logger-logplex-'))
    for (const store of [eventStoreFor(db), null]) {
      const {output, done} = run({outputDir: dir, force: true}, store)
      expect((await done).outcome).to.equal('success')
      const file = gunzipSync(readFileSync(dayFilePath(dir, DAY))).toString()
      expect(file).to.equal(events.map((e) => `${JSON.stringify(e)}\n`).join(''))
      const whole = (lineOf(checkedLines(output.text), big.id).data as {whole: string}).whole
      expect(whole).to.equal(store ? `audit-logger events show ${big.id}` : `in ${dayFilePath(dir, DAY)}`)
    }
  })

  it('with EVENT_STORE=off and no --output-dir, the note says the event was not kept whole', async () => {
    const {events, big} = dayWithBigEvents()
    fake.setEvents(DAY, events)
    const {output, done} = run({}, null)
    expect((await done).outcome).to.equal('success')
    expect((lineOf(checkedLines(output.text), big.id).data as {whole: string}).whole).to.equal('not kept: EVENT_STORE=off and no --output-dir is set')
  })

  it('LOG_LINES_PER_SECOND paces the day: bursts at the pace, each ending at a line end, and says how long it takes', async () => {
    const events = generateEvents(DAY, 2500)
    fake.setEvents(DAY, events)
    const sleeps: number[] = []
    let time = 0
    const clock: PaceClock = {now: () => time, sleep: async (ms) => void (sleeps.push(ms), (time += ms))}
    const {output, logger, done} = run({linesPerSecond: 100}, eventStoreFor(db), clock)
    expect((await done).outcome).to.equal('success')
    expect(checkedLines(output.text)).to.have.length(2500)
    // 2500 lines at 100/s: bursts of 10, one every 100 ms; the last starts 24.9 s after the first.
    expect(sleeps.reduce((a, b) => a + b, 0)).to.be.closeTo(24_900, 1e-6)
    expect(logger.text()).to.include(`${DAY}: writing 2500 lines at 100/s (~25 s; LOG_LINES_PER_SECOND)`)
  })

  it('with the store off, the claim keeps its heartbeat while a paced day is written', async () => {
    fake.setEvents(DAY, generateEvents(DAY, 40))
    let time = 0
    let beatsSeen = 0
    let last: number | undefined
    // Each pause of the pace lasts until the day's heartbeat has moved on: written while the run beats.
    const clock: PaceClock = {
      now: () => time,
      async sleep(ms) {
        for (let tries = 0; ; tries++) {
          if (tries > 2000) throw new Error('no heartbeat while the day was being written')
          const at = (await findDay(db, DAY))?.heartbeat_at?.getTime()
          if (last !== undefined && at !== undefined && at > last) break
          last ??= at
          await new Promise((resolve) => setTimeout(resolve, 5))
        }

        last = undefined
        beatsSeen++
        time += ms
      },
    }
    // 40 lines at 100/s: four bursts of 10, three pauses.
    const {output, done} = run({linesPerSecond: 100}, null, clock)
    expect((await done).outcome).to.equal('success')
    expect(output.lines()).to.have.length(40)
    expect(beatsSeen).to.equal(3)
  })
})
