/**
 * The floor for the archives benchmark: one month's archive fetched from the (fake) API and its
 * storage, hashed, inflated and parsed, nothing else. What `archives import` and `archives verify`
 * add on top of this is their own cost.
 *
 *   node bench/archive-floor.mjs API_URL TOKEN MONTH [whole|elements] [EXPECTED_EVENTS]
 *
 * Both modes ask the API for the month's archive (its pre-signed URL and SHA-256), download the
 * file with fetch, hash every gzip byte with SHA-256 while it streams and inflate it with zlib.
 *
 * `elements` (the floor the budget is judged against): each event of the array cut out as the text
 * inflates (a depth and string scan of the bytes) and parsed on its own, in bounded memory, as
 * audit-logger's archive reader does.
 * `whole` (the default): the inflated JSON collected into one string and parsed with one
 * JSON.parse. Simpler, but its memory grows with the month (the whole document and every event at
 * once), and on 310,000 events its GC makes it about twice as slow as `elements`.
 */
import {Buffer} from 'node:buffer'
import {createHash} from 'node:crypto'
import {createGunzip} from 'node:zlib'

const [apiUrl, token, month, mode = 'whole', expected] = process.argv.slice(2)
const [year, number] = month.split('-')
const listing = await fetch(`${apiUrl}/enterprise-accounts/acme/archives/${year}/${number}`, {
  headers: {Authorization: `Bearer ${token}`, Accept: 'application/vnd.heroku+json; version=3.audit-trail'},
})
if (!listing.ok) throw new Error(`the archive's details: HTTP ${listing.status}`)
const info = await listing.json()
const download = await fetch(info.url)
if (!download.ok) throw new Error(`the download: HTTP ${download.status}`)

const hash = createHash('sha256')
const gunzip = createGunzip({chunkSize: 64 * 1024})
// Hash and inflate as the bytes arrive, zlib's backpressure respected.
const feeding = (async () => {
  for await (const chunk of download.body) {
    hash.update(chunk)
    if (!gunzip.write(chunk)) await new Promise((resolve) => gunzip.once('drain', resolve))
  }
  gunzip.end()
})()

let events = 0
if (mode === 'whole') {
  const chunks = []
  for await (const chunk of gunzip) chunks.push(chunk)
  const document = JSON.parse(Buffer.concat(chunks).toString('utf8'))
  events = (Array.isArray(document) ? document : document.entries).length
} else {
  events = await parseElements(gunzip)
}

await feeding
if (hash.digest('hex') !== info.checksum) throw new Error('checksum mismatch')
// A floor that read the wrong thing measures nothing.
if (expected === undefined ? events === 0 : events !== Number(expected)) {
  process.stderr.write(`the floor parsed ${events} events, not ${expected}\n`)
  process.exit(1)
}

/**
 * The events of the array (bare, or the value of a root object's "entries" key: the only array
 * one level down), each parsed from its own bytes. Events are objects; a string's brackets and
 * escaped quotes are skipped.
 */
async function parseElements(inflated) {
  const QUOTE = 0x22
  const BACKSLASH = 0x5c
  const OPEN = new Set([0x7b, 0x5b])
  const CLOSE = new Set([0x7d, 0x5d])
  let depth = 0
  let inString = false
  let escaped = false
  // The depth events open at: 1 in a bare array, 2 in {"entries": [...]}.
  let eventDepth
  let pending = []
  let count = 0
  for await (const chunk of inflated) {
    // Inside an event still: it goes on from this chunk's first byte.
    let start = depth > (eventDepth ?? Infinity) ? 0 : -1
    for (let i = 0; i < chunk.length; i++) {
      const byte = chunk[i]
      if (inString) {
        if (escaped) escaped = false
        else if (byte === BACKSLASH) escaped = true
        else if (byte === QUOTE) inString = false
        continue
      }

      if (byte === QUOTE) {
        inString = true
      } else if (OPEN.has(byte)) {
        if (byte === 0x5b && eventDepth === undefined) eventDepth = depth + 1
        else if (depth === eventDepth) start = i
        depth++
      } else if (CLOSE.has(byte)) {
        depth--
        if (depth === eventDepth) {
          const part = chunk.subarray(start, i + 1)
          const text = pending.length > 0 ? Buffer.concat([...pending, part]).toString('utf8') : part.toString('utf8')
          pending = []
          if (JSON.parse(text).id !== undefined) count++
          start = -1
        }
      }
    }

    if (start >= 0) pending.push(chunk.subarray(start))
  }

  return count
}
