/**
 * The floor for the big-day benchmark: fetch every page of a day from the (fake) API, parse it and
 * discard it, nothing else. What audit-logger adds on top of this is its own cost.
 *
 *   node bench/floor.mjs API_URL TOKEN DAY [http|fetch] [EXPECTED_EVENTS]
 *
 * `http` (the default, and the floor the budget is judged against) is the cheapest loop there is
 * in Node: node:http with a keep-alive agent, the body collected and parsed. `fetch` is the same
 * loop over fetch (undici), for comparison: it costs ~40 MB more RSS and ~70 ms more start-up.
 */
import {Buffer} from 'node:buffer'
import http from 'node:http'

const [apiUrl, token, day, transport = 'http', expected] = process.argv.slice(2)
const url = `${apiUrl}/enterprise-accounts/acme/events?day=${day}&order=asc`
const headers = {Authorization: `Bearer ${token}`, Accept: 'application/vnd.heroku+json; version=3'}
const agent = new http.Agent({keepAlive: true})

/** One page: its text and the Next-Range header. */
function overHttp(range) {
  return new Promise((resolve, reject) => {
    http
      .get(url, {agent, headers: {...headers, Range: range}}, (response) => {
        const chunks = []
        response.on('data', (chunk) => chunks.push(chunk))
        response.on('end', () => resolve({text: Buffer.concat(chunks).toString('utf8'), next: response.headers['next-range']}))
        response.on('error', reject)
      })
      .on('error', reject)
  })
}

async function overFetch(range) {
  const response = await fetch(url, {headers: {...headers, Range: range}})
  return {text: await response.text(), next: response.headers.get('next-range') ?? undefined}
}

const get = transport === 'fetch' ? overFetch : overHttp
let range = 'id ..; max=1000;'
let events = 0
for (;;) {
  const {text, next} = await get(range)
  events += JSON.parse(text).length
  if (!next) break
  range = next
}

agent.destroy()
// A floor that fetched the wrong thing measures nothing.
if (expected === undefined ? events === 0 : events !== Number(expected)) process.exit(1)
