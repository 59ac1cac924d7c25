/**
 * The floor for the big-day benchmark: fetch every page of a day from the (fake) API and discard
 * it, nothing else. What audit-logger adds on top of this is its own cost.
 */
const [apiUrl, token, day] = process.argv.slice(2)
let range = 'id ..; max=1000;'
let events = 0
for (;;) {
  const response = await fetch(`${apiUrl}/enterprise-accounts/acme/events?day=${day}&order=asc`, {
    headers: {Authorization: `Bearer ${token}`, Accept: 'application/vnd.heroku+json; version=3', Range: range},
  })
  events += (JSON.parse(await response.text())).length
  const next = response.headers.get('next-range')
  if (!next) break
  range = next
}

if (events === 0) process.exit(1)
