/**
 * Stdout survives Logplex: no line `process` writes is longer than MAX_LOG_LINE_BYTES (its newline
 * included), whatever the event, and a cut line is still valid JSON that keeps the event's id,
 * type, action, actor, app and created_at whole whenever they fit, with a note saying where the
 * whole event is.
 */
import {expect} from 'chai'

import type {AuditEvent} from '../../src/lib/heroku/types.js'
import {CUT_MARKER, KEPT_FIELDS, LineEncoder, type LineLimit, MAX_LOG_LINE_BYTES, cutEventLine, formatEvent, wholeEventNote} from '../../src/lib/output/format-event.js'
import {generateEvents, mulberry32} from '../fake-heroku/events.js'

const STORE: LineLimit = {maxBytes: MAX_LOG_LINE_BYTES, whole: {kind: 'store'}}
const base = generateEvents('2025-05-05', 20, {seed: 3}) as unknown as AuditEvent[]
const bytes = (text: string) => Buffer.byteLength(text, 'utf8')

/** The lines of an encoded page, each checked against the limit (its newline counted). */
function linesOf(buffer: Buffer, limit = MAX_LOG_LINE_BYTES): string[] {
  const text = buffer.toString('utf8')
  expect(text.endsWith('\n'), 'every line ends with its newline').to.equal(true)
  const lines = text.slice(0, -1).split('\n')
  for (const line of lines) expect(bytes(line) + 1, `a line of ${bytes(line) + 1} bytes`).to.be.at.most(limit)
  return lines
}

/** Each event on stdout, by every path the encoder has: the API's bytes, pretty-printed bytes, no bytes. */
function everyPath(events: AuditEvent[], format: 'json' | 'text', limit: LineLimit = STORE): string[][] {
  const encoder = () => new LineEncoder(format, 1024, limit)
  return [
    linesOf(encoder().encode(events, Buffer.from(JSON.stringify(events)))),
    linesOf(encoder().encode(events, Buffer.from(JSON.stringify(events, null, 2)))),
    linesOf(encoder().encode(events)),
  ]
}

const PIECES = ['a', 'é', '€', '🦆', '\u0000', '\u001B', '"', '\\', '\n', '\u2028', '\u202E', '\ud800', '\udfff', ' ', '=']

/** A string of about `length` UTF-16 units drawn from PIECES (multi-byte, escapes, lone surrogates). */
function hostileString(next: () => number, length: number): string {
  let text = ''
  while (text.length < length) text += PIECES[Math.floor(next() * PIECES.length)].repeat(1 + Math.floor(next() * 50))
  return text
}

/** Sizes from tiny to far over the limit. */
function size(next: () => number): number {
  return [0, 5, 60, 300, 3000, 9000, 12_000, 60_000][Math.floor(next() * 8)]
}

/** An event with any of its parts made hostile: big, many, nested, multi-byte, escaped. */
function hostileEvent(next: () => number, k: number): AuditEvent {
  const event: Record<string, unknown> = {...base[k % base.length]}
  const pick = () => next() < 0.35
  if (pick()) event.data = {blob: hostileString(next, size(next))}
  if (pick()) event.data = Object.fromEntries(Array.from({length: Math.floor(next() * 3000)}, (_, i) => [`k${i}`, {v: i, s: hostileString(next, 3)}]))
  if (pick()) event.actor = {id: hostileString(next, size(next)), email: hostileString(next, size(next))}
  if (pick()) event.app = {id: 'app', name: hostileString(next, size(next)), extra: Object.fromEntries(Array.from({length: Math.floor(next() * 2000)}, (_, i) => [`f${i}`, i]))}
  if (pick()) event.id = hostileString(next, size(next))
  if (pick()) event.type = hostileString(next, size(next))
  if (pick()) event.action = hostileString(next, size(next))
  if (pick()) event.created_at = hostileString(next, size(next))
  if (pick()) event.owner = {id: 'o', email: hostileString(next, size(next))}
  if (pick()) event[hostileString(next, size(next))] = hostileString(next, size(next))
  if (pick()) for (let i = 0; i < Math.floor(next() * 500); i++) event[`extra_${i}`] = hostileString(next, 40)
  if (pick()) event.actor = hostileString(next, size(next))
  if (pick()) event.app = [hostileString(next, size(next)), 1, null]
  if (pick()) event.data = null
  if (pick()) delete event.data
  // Not strings where strings belong: a text line stringifies them (an array joins its items).
  if (pick()) event.actor = {email: [hostileString(next, size(next)), hostileString(next, size(next))]}
  if (pick()) event.id = [hostileString(next, size(next))]
  if (pick()) event.app = {name: {toString: hostileString(next, size(next))}}
  if (pick()) event.type = Array.from({length: Math.floor(next() * 3000)}, (_, i) => i)
  return event as AuditEvent
}

/** The top-level members as JSON text, to compare a cut line's kept fields with the event's. */
const asJson = (value: unknown) => JSON.stringify(value)

describe('no line over MAX_LOG_LINE_BYTES', () => {
  it('is 10,000 bytes, newline included', () => {
    expect(MAX_LOG_LINE_BYTES).to.equal(10_000)
  })

  it('an event with a 50 KB data: its data becomes a note saying where it is whole; everything else stays', () => {
    const big = {...base[0], data: {blob: 'x'.repeat(50_000)}, owner: {id: 'o1', email: 'owner@example.com'}} as AuditEvent
    for (const [line] of everyPath([big], 'json')) {
      const parsed = JSON.parse(line) as Record<string, unknown>
      for (const field of [...KEPT_FIELDS, 'owner', 'enterprise_account', 'request']) expect(asJson(parsed[field]), field).to.equal(asJson((big as Record<string, unknown>)[field]))
      expect(Object.keys(parsed), 'the fields keep their order').to.deep.equal(Object.keys(big))
      expect(parsed.data).to.deep.equal({
        cut: `data (${bytes(JSON.stringify(big.data))} bytes) left out to keep the line under ${MAX_LOG_LINE_BYTES} bytes (Logplex)`,
        whole: `audit-logger events show ${big.id}`,
      })
    }
  })

  it('a line that fits is written exactly as before: the API\'s own bytes, or the same text line', () => {
    const page = JSON.stringify(base)
    expect(new LineEncoder('json', 1024, STORE).encode(base, Buffer.from(page)).toString()).to.equal(new LineEncoder('json').encode(base, Buffer.from(page)).toString())
    expect(new LineEncoder('text', 1024, STORE).encode(base).toString()).to.equal(base.map((e) => formatEvent(e, 'text')).join(''))
    const encoder = new LineEncoder('json', 1024, STORE)
    encoder.encode(base, Buffer.from(page))
    expect(encoder.cut).to.equal(0)
  })

  it('only the long event of a page is cut, and the encoder counts it', () => {
    const page = [base[0], {...base[1], data: {blob: 'y'.repeat(20_000)}}, base[2]] as AuditEvent[]
    const encoder = new LineEncoder('json', 1024, STORE)
    const lines = linesOf(encoder.encode(page, Buffer.from(JSON.stringify(page))))
    expect(encoder.cut).to.equal(1)
    expect(lines[0]).to.equal(JSON.stringify(base[0]))
    expect(lines[2]).to.equal(JSON.stringify(base[2]))
    expect((JSON.parse(lines[1]) as {data: {cut: string}}).data.cut).to.match(/^data \(20011 bytes\) left out/)
  })

  it('a line just at the limit is kept whole; one byte more is cut', () => {
    const event = (pad: number) => ({...base[0], data: {blob: 'z'.repeat(pad)}}) as AuditEvent
    const room = MAX_LOG_LINE_BYTES - 1 - bytes(JSON.stringify(event(0)))
    const fits = event(room)
    expect(bytes(JSON.stringify(fits)) + 1).to.equal(MAX_LOG_LINE_BYTES)
    for (const [line] of everyPath([fits], 'json')) expect(line).to.equal(JSON.stringify(fits))
    for (const [line] of everyPath([event(room + 1)], 'json')) expect(line).to.include('"cut":')
  })

  it('a text line stays within the limit when a field is an array or object (a hostile API), not a string', () => {
    const hostile = [
      {...base[0], actor: {email: ['a'.repeat(50_000)]}},
      {...base[0], id: ['b'.repeat(50_000)]},
      {...base[0], app: {name: {x: 'c'.repeat(50_000)}}, type: Array.from({length: 20_000}, (_, i) => i)},
    ] as unknown as AuditEvent[]
    for (const lines of everyPath(hostile, 'text')) {
      expect(lines).to.have.length(3)
      for (const line of lines) expect(line).to.match(/ cut="long values shortened/)
    }
  })

  it('multi-byte characters count as bytes, not characters', () => {
    // 4,000 ducks: 8,000 UTF-16 units, 16,000 bytes.
    const ducks = {...base[0], data: {note: '🦆'.repeat(4000)}} as AuditEvent
    for (const [line] of everyPath([ducks], 'json')) expect(JSON.parse(line).data.cut).to.be.a('string')
  })

  it('says where the whole event is: the store, the --output-dir file, or that it was not kept', () => {
    expect(wholeEventNote({kind: 'store'}, 'abc-123')).to.equal('audit-logger events show abc-123')
    expect(wholeEventNote({kind: 'store'}, 'x'.repeat(101))).to.equal("audit-logger events show <this event's id>")
    expect(wholeEventNote({kind: 'store'}, 'a b;rm')).to.equal("audit-logger events show <this event's id>")
    expect(wholeEventNote({kind: 'file', path: '/archive/2025-05-05.ndjson.gz'}, 'abc')).to.equal('in /archive/2025-05-05.ndjson.gz')
    expect(wholeEventNote({kind: 'nowhere', why: 'EVENT_STORE=off and no --output-dir is set'}, 'abc')).to.equal('not kept: EVENT_STORE=off and no --output-dir is set')
    const big = {...base[0], data: {blob: 'x'.repeat(50_000)}} as AuditEvent
    const off = cutEventLine(big, 'json', {maxBytes: MAX_LOG_LINE_BYTES, whole: {kind: 'nowhere', why: 'EVENT_STORE=off and no --output-dir is set'}})
    expect(JSON.parse(off.line).data.whole).to.equal('not kept: EVENT_STORE=off and no --output-dir is set')
  })

  it('other big fields go next, biggest first, named in the note; the kept fields stay whole', () => {
    const event = {...base[0], data: {a: 1}, owner: {id: 'o', email: 'x'.repeat(6000)}, extra: 'y'.repeat(7000), small: 'z'} as AuditEvent
    for (const [line] of everyPath([event], 'json')) {
      const parsed = JSON.parse(line) as Record<string, unknown>
      expect(parsed).to.not.have.property('extra')
      expect(parsed.owner).to.deep.equal(event.owner)
      expect(parsed.small).to.equal('z')
      for (const field of KEPT_FIELDS) expect(asJson(parsed[field])).to.equal(asJson((event as Record<string, unknown>)[field]))
      expect((parsed.data as {cut: string}).cut).to.equal(`data (7 bytes) and 1 other field(s) (extra) left out to keep the line under ${MAX_LOG_LINE_BYTES} bytes (Logplex)`)
    }
  })

  it('a 50 KB actor.email or app.name (the pathological case) is cut, marked, and the line stays valid JSON', () => {
    const email = `${'e'.repeat(50_000)}@example.com`
    const event = {...base[0], actor: {id: 'a1', email}, app: {id: 'p1', name: 'n'.repeat(50_000)}} as AuditEvent
    for (const [line] of everyPath([event], 'json')) {
      const parsed = JSON.parse(line) as {id: string; actor: {id: string; email: string}; app: {name: string}; data: {cut: string}}
      expect(parsed.id).to.equal(event.id)
      expect(parsed.actor.id).to.equal('a1')
      expect(parsed.actor.email.endsWith(CUT_MARKER)).to.equal(true)
      expect(email.startsWith(parsed.actor.email.slice(0, -CUT_MARKER.length))).to.equal(true)
      expect(parsed.app.name.endsWith(CUT_MARKER)).to.equal(true)
      expect(parsed.data.cut).to.include('long strings cut')
    }

    for (const [line] of everyPath([event], 'text')) {
      expect(line).to.match(/ cut="long values shortened/)
      expect(line).to.include(`id=${event.id}`)
    }
  })

  it('a huge id, or nesting deeper than JSON.stringify goes, still gives a valid line', () => {
    const huge = {...base[0], id: 'i'.repeat(30_000)} as AuditEvent
    for (const [line] of everyPath([huge], 'json')) {
      const parsed = JSON.parse(line) as {id: string; data: {whole: string}}
      expect(parsed.id.endsWith(CUT_MARKER)).to.equal(true)
      expect(parsed.data.whole).to.equal("audit-logger events show <this event's id>")
    }

    let deep: unknown = 'bottom'
    for (let i = 0; i < 200_000; i++) deep = [deep]
    for (const field of ['data', 'actor', 'other']) {
      const event = {...base[1], [field]: deep} as AuditEvent
      const {line} = cutEventLine(event, 'json', STORE)
      expect(bytes(line) + 1).to.be.at.most(MAX_LOG_LINE_BYTES)
      expect((JSON.parse(line) as {id: string}).id, field).to.equal(base[1].id)
    }
  })

  it('the text line: its values cut when one is huge, with a note; plain otherwise', () => {
    const event = {...base[0], actor: {id: 'a', email: `${'é'.repeat(20_000)}@example.com`}} as AuditEvent
    for (const [line] of everyPath([event], 'text')) {
      expect(line).to.include(`id=${event.id}`)
      expect(line).to.include(`type=${event.type}`)
      expect(line).to.include(`whole: audit-logger events show ${event.id}`)
    }
  })

  it('holds for any event: 200 hostile events on every path, in both formats', function () {
    this.timeout(120_000)
    const next = mulberry32(20_251_005)
    const events = Array.from({length: 200}, (_, k) => hostileEvent(next, k))
    const limits: LineLimit[] = [STORE, {maxBytes: MAX_LOG_LINE_BYTES, whole: {kind: 'file', path: `/tmp/${'ü'.repeat(400)}/2025-05-05.ndjson.gz`}}]
    for (const [index, event] of events.entries()) {
      const whole = JSON.stringify(event)
      const limit = limits[index % 2]
      for (const lines of everyPath([event], 'json', limit)) {
        expect(lines).to.have.length(1)
        const parsed = JSON.parse(lines[0]) as Record<string, unknown>
        if (bytes(whole) < MAX_LOG_LINE_BYTES) {
          expect(lines[0], `event ${index} fits: it is not cut`).to.equal(whole)
          continue
        }

        const note = parsed.data as {cut: string; whole: string}
        expect(note.cut, `event ${index}: the note says what was cut`).to.match(/left out|cut to 50/)
        expect(note.whole).to.equal(wholeEventNote(limit.whole, event.id))
        // The kept fields stay whole whenever they alone fit (with the note).
        const kept = Object.fromEntries(Object.entries(event).filter(([key]) => KEPT_FIELDS.includes(key)))
        if (bytes(JSON.stringify(kept)) < MAX_LOG_LINE_BYTES - 3500) {
          for (const field of KEPT_FIELDS) expect(asJson(parsed[field]), `event ${index}: ${field}`).to.equal(asJson((event as Record<string, unknown>)[field]))
        }
      }

      // Text ignores the page's bytes: one path is all of them.
      expect(linesOf(new LineEncoder('text', 1024, limit).encode([event]))).to.have.length(1)
    }
  })
})
