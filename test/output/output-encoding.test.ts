/**
 * The day's output on its way to stdout: events encoded to UTF-8 lines (JSON lines cut from the
 * API's own bytes), spooled off the JS heap until the fence is checked, then copied out whole.
 */
import {createReadStream, mkdtempSync, readdirSync, readFileSync, createWriteStream} from 'node:fs'
import {once} from 'node:events'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {PassThrough, Writable} from 'node:stream'

import {expect} from 'chai'

import type {AuditEvent} from '../../src/lib/heroku/types.js'
import {LineEncoder, formatEvent} from '../../src/lib/output/format-event.js'
import {jsonArrayElements} from '../../src/lib/output/json-elements.js'
import {type Spool, handsChunksToKernel, openFileSpool, openMemorySpool, openSpool} from '../../src/lib/output/spool.js'
import {generateEvents} from '../fake-heroku/events.js'

const events = generateEvents('2025-05-05', 50) as unknown as AuditEvent[]

/** Every element of a JSON array text, by the scanner, as strings. */
function elements(text: string): string[] | undefined {
  const bytes = Buffer.from(text)
  const spans = jsonArrayElements(bytes)
  if (!spans) return undefined
  const out: string[] = []
  for (let k = 0; k < spans.length; k += 2) out.push(bytes.toString('utf8', spans[k], spans[k + 1]))
  return out
}

/** A writable that keeps each chunk as written (a copy), to see where chunks begin and end. */
class Chunks extends Writable {
  chunks: Buffer[] = []
  override _write(chunk: Buffer, _encoding: BufferEncoding, done: () => void): void {
    this.chunks.push(Buffer.from(chunk))
    done()
  }

  get bytes(): Buffer {
    return Buffer.concat(this.chunks)
  }
}

describe('JSON array elements (the scanner behind JSON lines)', () => {
  it('finds each element of a compact array', () => {
    expect(elements('[{"a":1},{"b":[1,2,{"c":3}]},{}]')).to.deep.equal(['{"a":1}', '{"b":[1,2,{"c":3}]}', '{}'])
    expect(elements('[]')).to.deep.equal([])
    expect(elements(' \n[ ] ')).to.deep.equal([])
  })

  it('is not fooled by brackets, braces, commas, quotes and backslashes inside strings', () => {
    const tricky = [{s: '}],[{'}, {s: 'say "hi", {ok}'}, {s: 'back\\slash\\'}, {s: '\\"'}, {'k,}': ']'}, {s: 'é ☃ 😀 \u0000 \n'}]
    const text = JSON.stringify(tricky)
    expect(elements(text)).to.deep.equal(tricky.map((o) => JSON.stringify(o)))
  })

  it('trims whitespace around elements of a pretty-printed array', () => {
    const text = JSON.stringify([{a: 1, b: [1, 2]}, {c: 'x'}], null, 2)
    const found = elements(text)!
    expect(found).to.have.length(2)
    expect(found.map((e) => JSON.parse(e))).to.deep.equal([{a: 1, b: [1, 2]}, {c: 'x'}])
    expect(found[0]).to.match(/^\{[\s\S]*\}$/)
  })

  it('takes scalars as elements too (the caller refuses them), and refuses what is not an array', () => {
    expect(elements('[1, "two" ,null,true]')).to.deep.equal(['1', '"two"', 'null', 'true'])
    expect(elements('{"events":[]}')).to.equal(undefined)
    expect(elements('')).to.equal(undefined)
  })
})

describe('LineEncoder', () => {
  const page = Buffer.from(JSON.stringify(events))

  it('json: one line per event, exactly the bytes the API sent', () => {
    const out = new LineEncoder('json').encode(events, page).toString()
    const lines = out.split('\n')
    expect(lines.pop()).to.equal('')
    expect(lines).to.deep.equal(events.map((e) => JSON.stringify(e)))
  })

  it('json: keeps the API’s own spelling (field order, escapes, numbers) rather than re-serializing', () => {
    const text = '[{"type":"app","id":"x1","action":"create","created_at":"2025-05-05T00:00:00Z","n":1.50,"s":"caf\\u00e9"}]'
    const parsed = JSON.parse(text) as AuditEvent[]
    expect(new LineEncoder('json').encode(parsed, Buffer.from(text)).toString()).to.equal(`${text.slice(1, -1)}\n`)
  })

  it('json: re-serializes events spread over several lines, so every line is one whole event', () => {
    const pretty = Buffer.from(JSON.stringify(events.slice(0, 3), null, 2))
    const lines = new LineEncoder('json').encode(events.slice(0, 3), pretty).toString().split('\n').filter(Boolean)
    expect(lines).to.deep.equal(events.slice(0, 3).map((e) => JSON.stringify(e)))
  })

  it('json: falls back to JSON.stringify when the bytes are not valid UTF-8 or do not match the events', () => {
    const invalid = Buffer.concat([Buffer.from('[{"id":"a","type":"t","action":"a","created_at":"x","s":"'), Buffer.from([0xff]), Buffer.from('"}]')])
    const parsed = [{id: 'a', type: 't', action: 'a', created_at: 'x', s: '\ufffd'}]
    expect(new LineEncoder('json').encode(parsed, invalid).toString()).to.equal(`${JSON.stringify(parsed[0])}\n`)
    // One event fewer than the bytes hold: the bytes are not trusted.
    expect(new LineEncoder('json').encode(events.slice(0, 2), Buffer.from(JSON.stringify(events.slice(0, 3)))).toString()).to.equal(
      events.slice(0, 2).map((e) => `${JSON.stringify(e)}\n`).join(''),
    )
    // Without bytes at all.
    expect(new LineEncoder('json').encode(events.slice(0, 2)).toString()).to.equal(events.slice(0, 2).map((e) => `${JSON.stringify(e)}\n`).join(''))
  })

  it('text: the same lines as formatEvent, multi-byte characters and quoting included', () => {
    const odd: AuditEvent[] = [
      {id: 'i1', type: 'app', action: 'create', created_at: '2025-05-05T00:00:00Z', actor: {email: 'zoë@example.com'}, app: {name: 'my app'}},
      {id: 'i2', type: 'team', action: 'member "added"', created_at: '2025-05-05T00:00:01Z', actor: null},
      {id: 'i3', type: 'x=y', action: '☃', created_at: '2025-05-05T00:00:02Z'},
    ]
    const all = [...events, ...odd]
    expect(new LineEncoder('text').encode(all, page).toString()).to.equal(all.map((e) => formatEvent(e, 'text')).join(''))
    expect(formatEvent(odd[0], 'text')).to.equal('created_at=2025-05-05T00:00:00Z actor.email=zoë@example.com type=app action=create app.name="my app" id=i1\n')
  })

  it('grows its buffer for a page bigger than it, keeping what it wrote', () => {
    const encoder = new LineEncoder('json', 16)
    expect(encoder.encode(events, page).toString()).to.equal(events.map((e) => `${JSON.stringify(e)}\n`).join(''))
    expect(new LineEncoder('text', 8).encode(events).toString()).to.equal(events.map((e) => formatEvent(e, 'text')).join(''))
  })

  it('writes only the events `keep` marks (a day’s duplicates are not), cut from the bytes or serialized again', () => {
    const few = events.slice(0, 4)
    const keep = [true, false, true, false]
    const kept = [few[0], few[2]]
    const json = (list: readonly AuditEvent[]) => list.map((e) => `${JSON.stringify(e)}\n`).join('')
    expect(new LineEncoder('json').encode(few, Buffer.from(JSON.stringify(few)), keep).toString()).to.equal(json(kept))
    expect(new LineEncoder('json').encode(few, Buffer.from(JSON.stringify(few, null, 2)), keep).toString()).to.equal(json(kept))
    expect(new LineEncoder('json').encode(few, undefined, keep).toString()).to.equal(json(kept))
    expect(new LineEncoder('text').encode(few, undefined, keep).toString()).to.equal(kept.map((e) => formatEvent(e, 'text')).join(''))
  })
})

describe('the spool', () => {
  const pages = [Buffer.from('one\ntwo\n'), Buffer.alloc(0), Buffer.from('é☃😀\n'), Buffer.from('x'.repeat(3 << 20) + '\n'), Buffer.from('last\n')]
  const whole = Buffer.concat(pages)

  async function fill(spool: Spool): Promise<void> {
    const reused = Buffer.alloc(4 << 20)
    for (const page of pages) {
      // The caller reuses its buffer once write() resolves, as the encoder does.
      page.copy(reused)
      await spool.write(reused.subarray(0, page.length))
      reused.fill(0x3f)
    }
  }

  for (const kind of ['file', 'memory'] as const) {
    it(`${kind}: gives back every byte in order, in chunks that end where writes ended`, async () => {
      const spool = kind === 'file' ? await openFileSpool(mkdtempSync(join(tmpdir(), 'audit-logger-spool-'))) : openMemorySpool()
      try {
        await fill(spool)
        expect(spool.size).to.equal(whole.length)
        const out = new Chunks()
        await spool.copyTo(out)
        expect(out.bytes.equals(whole)).to.equal(true)
        // No chunk ends inside a line or a UTF-8 sequence.
        for (const chunk of out.chunks) expect(chunk.at(-1)).to.equal(0x0a)
      } finally {
        await spool.close()
      }
    })
  }

  it('file: the temporary file has no name from the moment it is opened', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'audit-logger-spool-'))
    const spool = await openFileSpool(dir)
    await spool.write(Buffer.from('secret audit events\n'))
    expect(readdirSync(dir), 'nothing on disk under a name').to.deep.equal([])
    await spool.close()
    await spool.close() // twice is fine
  })

  it('keeps a small day in memory, and moves a big one to a temporary file once it passes the limit', async () => {
    const small = await openSpool(undefined, undefined, 1 << 20)
    await small.write(Buffer.from('one\ntwo\n'))
    expect(small.kind).to.equal('memory')
    await small.close()

    const big = await openSpool(undefined, mkdtempSync(join(tmpdir(), 'audit-logger-spool-')), 1 << 20)
    try {
      await fill(big)
      expect(big.kind).to.equal('file')
      const out = new Chunks()
      await big.copyTo(out)
      expect(out.bytes.equals(whole), 'what was in memory comes first, then the rest').to.equal(true)
      for (const chunk of out.chunks) expect(chunk.at(-1)).to.equal(0x0a)
    } finally {
      await big.close()
    }
  })

  it('stays in memory, saying why, when no temporary file can be made', async () => {
    const reasons: string[] = []
    const spool = await openSpool((reason) => reasons.push(reason), join(tmpdir(), 'audit-logger-no-such-dir', 'deeper'), 16)
    try {
      await fill(spool)
      expect(spool.kind).to.equal('memory')
      expect(reasons).to.deep.equal(['ENOENT'])
      const out = new Chunks()
      await spool.copyTo(out)
      expect(out.bytes.equals(whole)).to.equal(true)
    } finally {
      await spool.close()
    }
  })

  it('hands a stream that keeps references (a PassThrough) a fresh buffer per chunk', async () => {
    const spool = await openFileSpool(mkdtempSync(join(tmpdir(), 'audit-logger-spool-')))
    try {
      await fill(spool)
      // Nothing reads the PassThrough until the copy is done: every chunk it holds must still be intact.
      const through = new PassThrough({highWaterMark: 64 << 20})
      expect(handsChunksToKernel(through)).to.equal(false)
      await spool.copyTo(through)
      through.end()
      const held: Buffer[] = []
      for await (const chunk of through) held.push(chunk as Buffer)
      expect(Buffer.concat(held).equals(whole)).to.equal(true)
    } finally {
      await spool.close()
    }
  })

  it('hands fresh buffers to stdout whose write() a harness replaced (it keeps the chunks), and never waits for its callback', async () => {
    const spool = await openFileSpool(mkdtempSync(join(tmpdir(), 'audit-logger-spool-')))
    const original = Object.getOwnPropertyDescriptor(process.stdout, 'write')
    const kept: Uint8Array[] = []
    try {
      await fill(spool)
      // As @oclif/test does: keep the chunk, and call back only when given three arguments.
      process.stdout.write = ((chunk: Uint8Array, _encoding?: unknown, cb?: unknown) => {
        kept.push(chunk)
        if (typeof cb === 'function') cb()
        return true
      }) as typeof process.stdout.write
      expect(handsChunksToKernel(process.stdout)).to.equal(false)
      await spool.copyTo(process.stdout)
    } finally {
      if (original) Object.defineProperty(process.stdout, 'write', original)
      else delete (process.stdout as {write?: unknown}).write
      await spool.close()
    }

    // Put back by assignment, as harnesses do, the class's own write() is recognised again.
    const saved = Object.getOwnPropertyDescriptor(process.stdout, 'write')
    process.stdout.write = Object.getPrototypeOf(process.stdout).write
    try {
      expect(handsChunksToKernel(process.stdout)).to.equal(true)
    } finally {
      if (saved) Object.defineProperty(process.stdout, 'write', saved)
      else delete (process.stdout as {write?: unknown}).write
    }

    expect(Buffer.concat(kept).equals(whole)).to.equal(true)
  })

  it('reuses one buffer for a stream that hands bytes to the kernel (a file), and the file gets every byte', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'audit-logger-spool-'))
    const spool = await openFileSpool(dir)
    try {
      await fill(spool)
      const target = join(dir, 'out.txt')
      const file = createWriteStream(target)
      expect(handsChunksToKernel(file)).to.equal(true)
      expect(handsChunksToKernel(process.stdout)).to.equal(true)
      await spool.copyTo(file)
      file.end()
      await once(file, 'close')
      expect(readFileSync(target).equals(whole)).to.equal(true)
      const read: Buffer[] = []
      for await (const chunk of createReadStream(target)) read.push(chunk as Buffer)
      expect(Buffer.concat(read).length).to.equal(whole.length)
    } finally {
      await spool.close()
    }
  })
})
