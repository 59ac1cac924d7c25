/**
 * A bounded load loop (in place of autocannon): `connections` workers request `url` back to back
 * until `durationMs` has passed or `maxRequests` were sent, whichever comes first.
 */
import {Agent, get} from 'node:http'

export interface LoadResult {
  requests: number
  errors: number
  non2xx: number
  latenciesMs: number[]
  seconds: number
}

export async function runLoad(url: string, options: {connections: number; durationMs: number; maxRequests: number; headers?: Record<string, string>}): Promise<LoadResult> {
  const agent = new Agent({keepAlive: true, maxSockets: options.connections})
  const result: LoadResult = {requests: 0, errors: 0, non2xx: 0, latenciesMs: [], seconds: 0}
  const started = performance.now()
  const deadline = started + options.durationMs
  const worker = async () => {
    while (performance.now() < deadline && result.requests < options.maxRequests) {
      result.requests++
      const sent = performance.now()
      try {
        const status = await new Promise<number>((resolve, reject) => {
          const req = get(url, {agent, headers: options.headers, timeout: 10_000}, (response) => {
            response.resume()
            response.on('end', () => resolve(response.statusCode ?? 0))
            response.on('error', reject)
          })
          req.on('timeout', () => req.destroy(new Error('timeout')))
          req.on('error', reject)
        })
        if (status < 200 || status >= 300) result.non2xx++
        result.latenciesMs.push(performance.now() - sent)
      } catch {
        result.errors++
      }
    }
  }

  await Promise.all(Array.from({length: options.connections}, worker))
  result.seconds = (performance.now() - started) / 1000
  agent.destroy()
  return result
}

/** Ten years of daily records, as a long-running deployment would have. */
export function tenYearsOfRecordsSql(firstDay = '2015-01-01', days = 3650): string {
  return `
    INSERT INTO audit_events_log (process_date, status, events_count, error_message, created_at, updated_at, attempts, started_at, finished_at)
    SELECT d::date,
           CASE WHEN n % 97 = 0 THEN 'FAILED' WHEN n % 89 = 0 THEN 'ERROR' ELSE 'SUCCESS' END,
           (n * 37) % 500,
           CASE WHEN n % 97 = 0 THEN 'Heroku API answered 503' WHEN n % 89 = 0 THEN 'malformed response' END,
           now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc', 1 + n % 3, now() - interval '3 seconds', now()
    FROM generate_series(0, ${days - 1}) AS n, LATERAL (SELECT date '${firstDay}' + n) AS s(d)`
}
