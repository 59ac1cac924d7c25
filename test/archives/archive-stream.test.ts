/**
 * A monthly audit archive read as a stream: both JSON shapes, any chunking of the download, each
 * event's exact bytes, and every way an archive can be wrong — a checksum that does not match
 * (reported before whatever the corruption did to the content), broken gzip, a gzip bomb, an
 * oversized or malformed event, a root that is not what Heroku sends.
 */
import {createHash} from 'node:crypto'
import {setImmediate as nextTurn} from 'node:timers/promises'
import {createGunzip, gzipSync} from 'node:zlib'

import {expect} from 'chai'

import {
  ArchiveChecksumMismatch,
  ArchiveMalformed,
  BATCH_FLUSH_BYTES,
  type ArchiveBatch,
  type ArchiveSummary,
  type ReadArchiveOptions,
  readArchiveEvents,
} from '../../src/lib/archives/archive-stream.js'

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex')

/** gzip level 0 stores the JSON as is: fed byte by byte, it inflates byte by byte. */
const storedGzip = (text: string | Buffer) => gzipSync(text, {level: 0})

interface Chunking {
  size?: number
  /** Wait a turn of the event loop between chunks, so each is inflated and scanned on its own. */
  paced?: boolean
}

/** The bytes in chunks of `size`, as a download would hand them over; counts what was pulled. */
function download(bytes: Buffer, {size = 64 * 1024, paced = false}: Chunking = {}) {
  const state = {pulledBytes: 0, returned: false}
  async function* chunks() {
    try {
      for (let at = 0; at < bytes.length; at += size) {
        if (paced) await nextTurn()
        const chunk = bytes.subarray(at, at + size)
        state.pulledBytes += chunk.length
        yield chunk
      }
    } finally {
      state.returned = true
    }
  }

  return {chunks: chunks(), state}
}

interface ReadResult {
  batches: ArchiveBatch[]
  summary: ArchiveSummary
  events: unknown[]
  texts: string[]
}

async function readAll(gzip: Buffer, options: Partial<ReadArchiveOptions> = {}, chunking: Chunking = {}): Promise<ReadResult> {
  const generator = readArchiveEvents(download(gzip, chunking).chunks, {expectedChecksum: sha256(gzip), ...options})
  const batches: ArchiveBatch[] = []
  for (;;) {
    const step = await generator.next()
    if (step.done) {
      return {
        batches,
        summary: step.value,
        events: batches.flatMap((batch) => batch.events),
        texts: batches.flatMap((batch) => batch.texts.map((text) => text.toString('utf8'))),
      }
    }

    expect(step.value.texts.length, 'one text per event').to.equal(step.value.events.length)
    batches.push(step.value)
  }
}

/** The error reading the archive fails with (the test fails if it does not fail). */
async function failureOf(gzip: Buffer, options: Partial<ReadArchiveOptions> = {}, chunking: Chunking = {}): Promise<Error> {
  try {
    await readAll(gzip, options, chunking)
  } catch (error) {
    return error as Error
  }

  throw new Error('reading the archive did not fail')
}

async function malformed(json: string | Buffer, options: Partial<ReadArchiveOptions> = {}): Promise<ArchiveMalformed> {
  const error = await failureOf(gzipSync(json), options)
  expect(error, String(error)).to.be.instanceOf(ArchiveMalformed)
  expect(error.message, 'one line').to.not.include('\n')
  return error as ArchiveMalformed
}

/** An event's JSON as Heroku might write it, with hostile strings around the id. */
function rawEvent(id: string, extra = ''): string {
  return `{"id":"${id}","type":"app","action":"create","created_at":"2025-05-01T00:00:00Z"${extra}}`
}

/**
 * Events whose strings hold everything the splitter must not mistake for structure, with
 * whitespace inside and between them.
 */
const HOSTILE = [
  rawEvent('a', ',"note":"]}, {\\"id\\":\\"fake\\"}, ["'),
  rawEvent('b', ' , "path" : "C:\\\\dir\\\\" , "quote":"\\"" ,"empty":""'),
  rawEvent('c', ',"data":{"nested":[{"x":"}"},["]"],{"y":"{["}],"n":-1.5e3,"t":true,"f":false,"z":null}'),
  rawEvent('d', ',"controls":"\\u0000 \\ud800 \\udfff \\n \\\\n \\u001b[31m","emoji":"🦆 é €"'),
  rawEvent('e', ',"ends":"\\\\\\\\","tail":"\\\\\\""'),
  `{ "z" : 1 ,\n  "id" : "f" , "type":"team","action":"update",\t"created_at":"2025-05-02T00:00:00Z" }`,
]
const HOSTILE_ARRAY = `[\n  ${HOSTILE.join(' ,\n  ')}\n]\n`

describe('reading a monthly audit archive', () => {
  describe('the two shapes', () => {
    it('reads a bare array of events, with its summary', async () => {
      const json = Buffer.from(HOSTILE_ARRAY)
      const gzip = gzipSync(json)
      const result = await readAll(gzip)
      expect(result.events).to.deep.equal(HOSTILE.map((raw) => JSON.parse(raw)))
      expect(result.texts).to.deep.equal(HOSTILE)
      expect(result.summary).to.deep.equal({checksum: sha256(gzip), gzipBytes: gzip.length, jsonBytes: json.length, events: HOSTILE.length, shape: 'array'})
    })

    it('reads an object\'s "entries" array, skipping other keys before and after it, whatever they hold', async () => {
      const before = `"meta":{"note":"entries: [ ] { } \\"entries\\":[","list":[["entries"],{"entries":[1,{"entries":[]}]}]},"n":-1.5e3,"ok":true,"no":false,"x":null,"s":"]}"`
      const after = `"after":"]}","more":[{"entries":[{}]}],"last":0`
      const json = `{ ${before} ,\n "entries" : [ ${HOSTILE.join(',')} ] , ${after} }`
      const result = await readAll(gzipSync(json))
      expect(result.summary.shape).to.equal('entries')
      expect(result.texts).to.deep.equal(HOSTILE)
      expect(result.events).to.deep.equal(HOSTILE.map((raw) => JSON.parse(raw)))
    })

    it('skips other keys\' values however big, as they are not kept: the event cap does not apply to them', async () => {
      const huge = 'x'.repeat(3 * 1024 * 1024)
      const json = `{"${huge}":"${huge}","list":[${'[1,"]",{"a":"}"}],'.repeat(100_000)}[]],"entries":[${HOSTILE[0]}]}`
      const result = await readAll(gzipSync(json), {maxEventBytes: HOSTILE[0].length})
      expect(result.texts).to.deep.equal([HOSTILE[0]])
    })

    it('knows the "entries" key however it is escaped, and needs no other key', async () => {
      const result = await readAll(gzipSync(`{"entri\\u0065s":[${HOSTILE[0]}]}`))
      expect(result.summary.shape).to.equal('entries')
      expect(result.texts).to.deep.equal([HOSTILE[0]])
    })

    it('reads an empty array, bare or as entries, as no events', async () => {
      for (const json of ['[]', ' [ \n ] \n', '{"entries":[]}', '{"a":1,"entries":[ ],"b":[]}']) {
        const result = await readAll(gzipSync(json))
        expect(result.batches, json).to.deep.equal([])
        expect(result.summary.events, json).to.equal(0)
      }
    })

    it('tolerates a UTF-8 byte-order mark before the JSON', async () => {
      const json = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(HOSTILE_ARRAY)])
      const result = await readAll(storedGzip(json), {}, {size: 1, paced: true})
      expect(result.texts).to.deep.equal(HOSTILE)
      expect(result.summary.jsonBytes).to.equal(json.length)
    })
  })

  describe('any chunking of the download', () => {
    it('inflates a stored gzip fed byte by byte into pieces of a few bytes (so the tests below split the JSON everywhere)', async () => {
      const json = Buffer.from(HOSTILE_ARRAY)
      const gunzip = createGunzip()
      const feeding = (async () => {
        for await (const chunk of download(storedGzip(json), {size: 1, paced: true}).chunks) {
          if (!gunzip.write(chunk)) await new Promise((resolve) => gunzip.once('drain', resolve))
        }

        gunzip.end()
      })()
      let pieces = 0
      let bytes = 0
      for await (const piece of gunzip as AsyncIterable<Buffer>) {
        pieces++
        bytes += piece.length
      }

      await feeding
      expect(bytes).to.equal(json.length)
      expect(pieces).to.be.greaterThan(json.length / 2)
    })

    it('splits events the same way whatever the chunks: strings with brackets, escaped quotes and backslashes at every edge', async () => {
      const gzip = storedGzip(HOSTILE_ARRAY)
      const expected = HOSTILE.map((raw) => JSON.parse(raw))
      const paced = await readAll(gzip, {}, {size: 1, paced: true})
      expect(paced.texts).to.deep.equal(HOSTILE)
      expect(paced.events).to.deep.equal(expected)
      for (let size = 1; size <= 48; size++) {
        const result = await readAll(gzip, {}, {size})
        expect(result.texts, `chunks of ${size}`).to.deep.equal(HOSTILE)
      }
    })

    it('reads the "entries" shape byte by byte', async () => {
      const json = `{"meta":{"s":"\\\\\\"entries\\"","a":[[],{}]},"n":12,"entries":[${HOSTILE.join(',')}],"z":"]"}`
      const result = await readAll(storedGzip(json), {}, {size: 1, paced: true})
      expect(result.texts).to.deep.equal(HOSTILE)
      expect(result.summary.shape).to.equal('entries')
    })

    it('reads gzip members concatenated, the JSON cut between them in the middle of a string', async () => {
      const json = Buffer.from(HOSTILE_ARRAY)
      const cut = HOSTILE_ARRAY.indexOf('C:') + 3
      const gzip = Buffer.concat([gzipSync(json.subarray(0, cut)), gzipSync(json.subarray(cut, cut + 40)), gzipSync(json.subarray(cut + 40))])
      for (const size of [1, 7, 64 * 1024]) {
        const result = await readAll(gzip, {}, {size})
        expect(result.texts, `chunks of ${size}`).to.deep.equal(HOSTILE)
        expect(result.summary.gzipBytes).to.equal(gzip.length)
        expect(result.summary.jsonBytes).to.equal(json.length)
      }
    })
  })

  describe('each event\'s exact bytes', () => {
    it('keeps escapes (\\u0000, a lone \\ud800), emoji, key order and inner whitespace byte for byte', async () => {
      const raw = '{ "id" : "x",\n\t"zeta":"\\u0000\\ud800\\uDFFF", "alpha" : [ 1 , { } ] , "emoji":"🦆", "esc":"\\/\\b\\f" , "type":"a","action":"b","created_at":"2025-05-01T00:00:00Z" }'
      const result = await readAll(gzipSync(`[${raw}]`), {}, {size: 3})
      const [text] = result.batches[0].texts
      expect(text.equals(Buffer.from(raw))).to.equal(true)
      const event = result.events[0] as Record<string, unknown>
      expect(event.zeta).to.equal('\u0000\ud800\udfff')
      expect(event.emoji).to.equal('🦆')
      expect(Object.keys(event)).to.deep.equal(['id', 'zeta', 'alpha', 'emoji', 'esc', 'type', 'action', 'created_at'])
    })

    it('refuses an event that is not UTF-8, rather than keep bytes its parsed form does not match', async () => {
      const json = Buffer.concat([Buffer.from('[{"id":"a"},{"id":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}]')])
      const error = await malformed(json)
      expect(error.event).to.equal(2)
      expect(error.message).to.match(/event 2 .*UTF-8/)
    })
  })

  describe('the checksum', () => {
    it('fails with both digests when the download does not hash to what Heroku lists, after provisional batches', async () => {
      const gzip = gzipSync(HOSTILE_ARRAY)
      const wrong = 'ab'.repeat(32)
      const generator = readArchiveEvents(download(gzip).chunks, {expectedChecksum: wrong})
      const first = await generator.next()
      expect(first.done).to.equal(false)
      let error: unknown
      try {
        await generator.next()
      } catch (caught) {
        error = caught
      }

      expect(error).to.be.instanceOf(ArchiveChecksumMismatch)
      const mismatch = error as ArchiveChecksumMismatch
      expect(mismatch.expected).to.equal(wrong)
      expect(mismatch.actual).to.equal(sha256(gzip))
      expect(mismatch.message).to.equal(`checksum mismatch: Heroku lists ${wrong.slice(0, 12)}…, the download hashes to ${sha256(gzip).slice(0, 12)}…`)
    })

    it('accepts the listed checksum in upper case, and refuses one that is not a SHA-256 digest before reading', async () => {
      const gzip = gzipSync('[]')
      const result = await readAll(gzip, {expectedChecksum: sha256(gzip).toUpperCase()})
      expect(result.summary.checksum).to.equal(sha256(gzip))
      const {chunks, state} = download(gzip)
      const generator = readArchiveEvents(chunks, {expectedChecksum: 'md5:1234'})
      let error: unknown
      try {
        await generator.next()
      } catch (caught) {
        error = caught
      }

      expect(error).to.be.instanceOf(RangeError)
      expect(state.pulledBytes).to.equal(0)
    })

    it('reports a corrupted byte as a checksum mismatch, not as the gzip or JSON error it causes', async () => {
      const events = Array.from({length: 200}, (_, k) => rawEvent(`id-${k}`, `,"k":${k}`))
      const gzip = gzipSync(`[${events.join(',')}]`)
      for (const at of [12, Math.floor(gzip.length / 2), gzip.length - 6]) {
        const corrupt = Buffer.from(gzip)
        corrupt[at] ^= 0x55
        const error = await failureOf(corrupt, {expectedChecksum: sha256(gzip)})
        expect(error, `byte ${at}: ${error}`).to.be.instanceOf(ArchiveChecksumMismatch)
        // The same bytes, listed with their own checksum: what is wrong with them is reported.
        const listed = await failureOf(corrupt, {expectedChecksum: sha256(corrupt)})
        expect(listed, `byte ${at}: ${listed}`).to.be.instanceOf(ArchiveMalformed)
      }
    })

    it('reports a truncated download as a checksum mismatch, and a truncated archive as truncated', async () => {
      const gzip = gzipSync(HOSTILE_ARRAY)
      const truncated = gzip.subarray(0, gzip.length - 20)
      expect(await failureOf(truncated, {expectedChecksum: sha256(gzip)})).to.be.instanceOf(ArchiveChecksumMismatch)
      const error = await failureOf(truncated, {expectedChecksum: sha256(truncated)})
      expect(error).to.be.instanceOf(ArchiveMalformed)
      expect(error.message).to.match(/truncated/)
    })

    it('reports a checksum mismatch over a malformed event, hashing the rest of the download', async () => {
      const gzip = gzipSync(`[${rawEvent('a')},{"bad":},${HOSTILE.join(',')}]`)
      const {chunks, state} = download(gzip, {size: 16})
      let error: unknown
      try {
        for await (const batch of readArchiveEvents(chunks, {expectedChecksum: 'cd'.repeat(32)})) expect(batch).to.exist
      } catch (caught) {
        error = caught
      }

      expect(error).to.be.instanceOf(ArchiveChecksumMismatch)
      expect(state.pulledBytes).to.equal(gzip.length)
    })

    it('passes on the download\'s own failure, not a mismatch', async () => {
      const gzip = gzipSync(HOSTILE_ARRAY)
      async function* failing() {
        yield gzip.subarray(0, 20)
        throw new Error('connection reset')
      }

      let error: unknown
      try {
        for await (const batch of readArchiveEvents(failing(), {expectedChecksum: sha256(gzip)})) expect(batch).to.exist
      } catch (caught) {
        error = caught
      }

      expect((error as Error).message).to.equal('connection reset')
    })
  })

  describe('limits', () => {
    it('stops a gzip bomb at the inflated-size cap', async () => {
      const bomb = gzipSync(Buffer.concat([Buffer.from('['), Buffer.alloc(50 * 1024 * 1024, ' '), Buffer.from(']')]))
      expect(bomb.length).to.be.below(200 * 1024)
      const error = await failureOf(bomb, {maxInflatedBytes: 1024 * 1024})
      expect(error).to.be.instanceOf(ArchiveMalformed)
      expect(error.message).to.match(/more than 1048576 bytes/)
    })

    it('refuses an event over the size cap, naming its position and offset, and accepts one exactly at it', async () => {
      const small = rawEvent('a')
      const big = rawEvent('b', `,"pad":"${'x'.repeat(200)}"`)
      const json = `[${small}, ${big}]`
      for (const size of [1, 64 * 1024]) {
        const error = await failureOf(storedGzip(json), {maxEventBytes: big.length - 1}, {size})
        expect(error).to.be.instanceOf(ArchiveMalformed)
        expect((error as ArchiveMalformed).event).to.equal(2)
        expect((error as ArchiveMalformed).offset).to.equal(json.indexOf(big))
        expect(error.message).to.include(`event 2 (byte ${json.indexOf(big)}`)
      }

      const result = await readAll(gzipSync(json), {maxEventBytes: big.length})
      expect(result.texts).to.deep.equal([small, big])
    })
  })

  describe('malformed archives', () => {
    it('refuses an element that is not an object, naming its position and offset', async () => {
      const json = `[${rawEvent('a')}, 5, ${rawEvent('c')}]`
      const error = await malformed(json)
      expect(error.event).to.equal(2)
      expect(error.offset).to.equal(json.indexOf(' 5,') + 1)
      expect(error.message).to.match(/event 2 .*not a JSON object/)
      expect((await malformed('[ "entries" ]')).event).to.equal(1)
      expect((await malformed('{"entries":[[]]}')).event).to.equal(1)
    })

    it('refuses an event that is not valid JSON, naming it without quoting it', async () => {
      const json = `[${rawEvent('a')},{"id":"\u001b[31m", }]`
      const error = await malformed(json)
      expect(error.event).to.equal(2)
      expect(error.offset).to.equal(json.indexOf('{"id":"\u001b'))
      expect(error.message).to.match(/event 2 .*not valid JSON/)
      expect(error.message).to.not.include('\u001b')
    })

    it('refuses a root that is neither an array nor an object with an "entries" array', async () => {
      for (const json of ['42', '"entries"', 'null', 'true', '{}', '{"a":[]}', '{"entries":{}}', '{"entries":"[]"}', '{"entries":[],"entries":[]}', '{entries:[]}', '{"entries" []}']) {
        const error = await malformed(json)
        expect(error.message, json).to.match(/archive/)
      }
    })

    it('refuses anything after the root value but whitespace', async () => {
      for (const json of ['[] x', '[]]', '[],[]', '{"entries":[]} {}', `[${rawEvent('a')}]\n"more"`]) await malformed(json)
      expect((await readAll(gzipSync('[] \n\t\r\n'))).summary.events).to.equal(0)
    })

    it('refuses a document that ends early, or a broken array', async () => {
      const truncated = await malformed(`[${rawEvent('a')},{"id":"b"`)
      expect(truncated.message).to.match(/ends inside event 2 .*truncated/)
      for (const json of ['', '   ', '[', `[${rawEvent('a')}`, `[${rawEvent('a')},`, '{"entries":[]', '{"a":"x', `[${rawEvent('a')},]`, `[${rawEvent('a')}${rawEvent('b')}]`]) {
        await malformed(json)
      }
    })
  })

  describe('batches', () => {
    it('hands events over in batches of batchEvents, in file order', async () => {
      const events = Array.from({length: 2500}, (_, k) => rawEvent(`id-${k}`))
      const result = await readAll(gzipSync(`[${events.join(',')}]`), {batchEvents: 1000})
      expect(result.batches.map((batch) => batch.events.length)).to.deep.equal([1000, 1000, 500])
      expect(result.texts).to.deep.equal(events)
      const small = await readAll(gzipSync(`[${events.slice(0, 7).join(',')}]`), {batchEvents: 3})
      expect(small.batches.map((batch) => batch.events.length)).to.deep.equal([3, 3, 1])
    })

    it('hands a batch over early once its bytes pass the flush size', async () => {
      const big = (k: number) => rawEvent(`id-${k}`, `,"pad":"${'x'.repeat(100_000)}"`)
      const events = Array.from({length: 100}, (_, k) => big(k))
      const perBatch = Math.ceil(BATCH_FLUSH_BYTES / events[0].length)
      const result = await readAll(gzipSync(`[${events.join(',')}]`))
      expect(result.batches.map((batch) => batch.events.length)).to.deep.equal([perBatch, perBatch, 100 - 2 * perBatch])
      expect(result.summary.events).to.equal(100)
    })
  })

  describe('stopping, and a slow consumer', () => {
    /** An archive of many events, big enough that reading it all takes many chunks. */
    const manyEvents = () => gzipSync(`[${Array.from({length: 20_000}, (_, k) => rawEvent(`id-${k}`, `,"k":${k}`)).join(',')}]`)

    it('does not read ahead of a consumer that has not asked for the next batch', async () => {
      const gzip = manyEvents()
      const {chunks, state} = download(gzip, {size: 1024})
      const generator = readArchiveEvents(chunks, {expectedChecksum: sha256(gzip)})
      expect((await generator.next()).done).to.equal(false)
      for (let turn = 0; turn < 200; turn++) await nextTurn()
      expect(state.pulledBytes).to.be.below(gzip.length / 2)
      await generator.return(undefined as never)
      expect(state.returned, 'the download is let go').to.equal(true)
    })

    it('stops when aborted between batches', async () => {
      const gzip = manyEvents()
      const {chunks, state} = download(gzip, {size: 1024})
      const controller = new AbortController()
      let batches = 0
      let error: unknown
      try {
        for await (const batch of readArchiveEvents(chunks, {expectedChecksum: sha256(gzip), signal: controller.signal, batchEvents: 100})) {
          expect(batch.events).to.have.length(100)
          if (++batches === 2) controller.abort()
        }
      } catch (caught) {
        error = caught
      }

      expect(batches).to.equal(2)
      expect((error as Error).name).to.equal('AbortError')
      expect(state.pulledBytes).to.be.below(gzip.length)
    })

    it('stops when aborted while the download hangs, and lets the download go', async () => {
      const gzip = gzipSync(HOSTILE_ARRAY)
      let returned = false
      let handedOver = false
      const hanging: AsyncIterable<Uint8Array> = {
        [Symbol.asyncIterator]: () => ({
          next: () => {
            if (handedOver) return new Promise<IteratorResult<Uint8Array>>(() => {})
            handedOver = true
            return Promise.resolve({done: false, value: gzip.subarray(0, 30)})
          },
          return: () => {
            returned = true
            return Promise.resolve({done: true, value: undefined})
          },
        }),
      }
      const controller = new AbortController()
      const reading = (async () => {
        for await (const batch of readArchiveEvents(hanging, {expectedChecksum: sha256(gzip), signal: controller.signal})) expect(batch).to.exist
      })()
      while (!handedOver) await nextTurn()
      controller.abort()
      let error: unknown
      try {
        await reading
      } catch (caught) {
        error = caught
      }

      expect((error as Error).name).to.equal('AbortError')
      await nextTurn()
      expect(returned).to.equal(true)
    })

    it('reads nothing when the signal is already aborted', async () => {
      const gzip = gzipSync('[]')
      const {chunks, state} = download(gzip)
      const controller = new AbortController()
      controller.abort()
      let error: unknown
      try {
        await readArchiveEvents(chunks, {expectedChecksum: sha256(gzip), signal: controller.signal}).next()
      } catch (caught) {
        error = caught
      }

      expect((error as Error).name).to.equal('AbortError')
      expect(state.pulledBytes).to.equal(0)
    })
  })
})
