/**
 * PostgreSQL terminating connections that are in use (pg_terminate_backend, a failover, a restart)
 * while `serve` answers a load, while a range runs, and under the change listener: nothing
 * crashes, what was in flight fails cleanly (a 503, a day ERROR or retried), nothing is left
 * PROCESSING, and everything works again once the database is back.
 */

import {expect} from 'chai'
import pg from 'pg'

import {type ChangeFeed, listenForChanges} from '../../src/lib/db/change-feed.js'
import {migrateToLatest} from '../../src/lib/db/migrate.js'
import {generateEvents} from '../fake-heroku/events.js'
import {type FakeHeroku, startFakeHeroku} from '../fake-heroku/server.js'
import {type CliResult, cliEnv, runCli, startCli} from '../support/cli.js'
import {admin, createScratchDatabase, describeWithServer, openTestDb} from '../support/db.js'
import {freePort, waitForRun, waitUntil} from '../support/helpers.js'

/** Terminates every connection the tool has to `database` (application names starting 'audit-logger', the listener's included). */
async function terminateAll(database: string): Promise<number> {
  return admin(async (client) => {
    const killed = await client.query<{n: number}>(
      `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE datname = $1 AND application_name LIKE 'audit-logger%' AND application_name <> 'audit-logger-test'`,
      [database],
    )
    return killed.rows[0].n
  })
}

/** Kills the tool's connections every `everyMs` until `stop()` is called; resolves with how many were killed. */
function keepTerminating(database: string, everyMs: number): {stop: () => Promise<number>} {
  let running = true
  let killed = 0
  const loop = (async () => {
    while (running) {
      killed += await terminateAll(database)
      await new Promise((resolve) => setTimeout(resolve, everyMs))
    }
  })()
  return {
    async stop() {
      running = false
      await loop
      return killed
    },
  }
}

async function rows(url: string): Promise<Array<{process_date: string; status: string}>> {
  const client = new pg.Client({connectionString: url, application_name: 'audit-logger-test'})
  await client.connect()
  try {
    return (await client.query(`SELECT process_date::text, status FROM audit_events_log ORDER BY process_date`)).rows
  } finally {
    await client.end()
  }
}

/** `serve` as a real process on `url`, once it listens: its port, the process, and what it has said so far. */
async function startServe(url: string): Promise<{port: number; server: ReturnType<typeof startCli>; stderr: () => string}> {
  const port = await freePort()
  const server = startCli(['serve'], cliEnv({DATABASE_URL: url, PORT: String(port)}))
  let said = ''
  server.stderr!.on('data', (chunk: Buffer) => (said += chunk.toString()))
  await waitUntil('the server listening', () => said.includes('listening'), 20_000)
  return {port, server, stderr: () => said}
}

function expectNoCrash(result: {stderr: string}): void {
  expect(result.stderr).not.to.match(/unhandled|UnhandledPromiseRejection|triggerUncaughtException|Unhandled 'error' event|second error/i)
  expect(result.stderr, 'no stack trace').not.to.match(/^\s+at .+:\d+:\d+\)?$/m)
}

describeWithServer('connections lost while in use (pg_terminate_backend)', function () {
  this.timeout(120_000)
  let url: string
  let name: string

  beforeEach(async () => {
    url = await createScratchDatabase('loss')
    name = new URL(url).pathname.slice(1)
    const db = openTestDb(url)
    try {
      await migrateToLatest(db)
    } finally {
      await db.destroy()
    }
  })

  it('serve under load lives on: requests in flight get a clean 503 at worst, then 200 again, and /healthz says so', async () => {
    const client = new pg.Client({connectionString: url, application_name: 'audit-logger-test'})
    await client.connect()
    await client.query(`INSERT INTO audit_events_log (process_date, status, events_count) SELECT d::date, 'SUCCESS', 5 FROM generate_series('2025-01-01'::date, '2025-03-31'::date, '1 day') AS d`)
    await client.end()

    const {port, server, stderr} = await startServe(url)
    try {
      const statuses = new Map<number, number>()
      let loading = true
      // 20 concurrent request loops on a page that always reads the database.
      const loops = Array.from({length: 20}, async (_, i) => {
        for (let n = 0; loading && n < 2000; n++) {
          const day = `2025-0${1 + (i % 3)}-${String(1 + ((n + i) % 28)).padStart(2, '0')}`
          const response = await fetch(`http://127.0.0.1:${port}/logs/${day}`).catch(() => undefined)
          const status = response?.status ?? 0
          statuses.set(status, (statuses.get(status) ?? 0) + 1)
          await response?.arrayBuffer().catch(() => {})
        }
      })
      await new Promise((resolve) => setTimeout(resolve, 300))
      const killer = keepTerminating(name, 40)
      await new Promise((resolve) => setTimeout(resolve, 2500))
      const killed = await killer.stop()
      await new Promise((resolve) => setTimeout(resolve, 300))
      loading = false
      await Promise.all(loops)

      expect(server.exitCode, `the server lives on; it said: ${stderr()}`).to.equal(null)
      expect(killed, 'connections were terminated while in use').to.be.greaterThan(5)
      expect(statuses.get(0) ?? 0, 'no request lost its connection to the server').to.equal(0)
      const seen = [...statuses.keys()].sort()
      expect(seen.filter((status) => status !== 200 && status !== 503), `only 200 and 503: ${JSON.stringify([...statuses])}`).to.deep.equal([])

      await waitUntil('a page answered 200 again', async () => (await fetch(`http://127.0.0.1:${port}/logs/2025-02-10`)).status === 200)
      const page = await fetch(`http://127.0.0.1:${port}/logs/2025-02-10`)
      expect(page.status).to.equal(200)
      expect(await page.text()).to.include('SUCCESS')
      const health = await fetch(`http://127.0.0.1:${port}/healthz`)
      expect(health.status).to.equal(200)
      expect(await health.json()).to.include({ok: true, database: 'reachable'})
      expectNoCrash({stderr: stderr()})
    } finally {
      server.kill('SIGTERM')
      await server.result
    }
  })

  it('serve says 503 on /healthz and on pages while the database refuses connections, and 200 once it is back', async () => {
    const {port, server, stderr} = await startServe(url)
    try {
      await admin((client) => client.query(`ALTER DATABASE ${name} ALLOW_CONNECTIONS false`))
      await terminateAll(name)
      await waitUntil('/healthz 503', async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).status === 503)
      const health = await fetch(`http://127.0.0.1:${port}/healthz`)
      expect(await health.json()).to.include({ok: false, database: 'unreachable'})
      const page = await fetch(`http://127.0.0.1:${port}/logs/2025-02-10`)
      expect(page.status).to.equal(503)
      expect(page.headers.get('retry-after')).to.match(/^\d+$/)
      expect(await page.text()).to.match(/database cannot be reached/i)
      const api = await fetch(`http://127.0.0.1:${port}/api/logs/2025-02-10`)
      expect(api.status).to.equal(503)
      expect(await api.json()).to.include({statusCode: 503})

      await admin((client) => client.query(`ALTER DATABASE ${name} ALLOW_CONNECTIONS true`))
      await waitUntil('/healthz 200 again', async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).status === 200)
      expect((await fetch(`http://127.0.0.1:${port}/`)).status).to.equal(200)
      expect(server.exitCode).to.equal(null)
      expectNoCrash({stderr: stderr()})
    } finally {
      await admin((client) => client.query(`ALTER DATABASE ${name} ALLOW_CONNECTIONS true`))
      server.kill('SIGTERM')
      await server.result
    }
  })

  describe('a range hit by the kills', () => {
    let fake: FakeHeroku
    const days = Array.from({length: 31}, (_, i) => `2025-05-${String(i + 1).padStart(2, '0')}`)

    before(async () => {
      fake = await startFakeHeroku({events: Object.fromEntries(days.map((day) => [day, generateEvents(day, 3)]))})
    })

    after(async () => {
      await fake.close()
    })

    const env = () => cliEnv({DATABASE_URL: url, HEROKU_API_URL: fake.url, HEROKU_API_TOKEN: fake.token, HEROKU_ACCOUNT_ID: 'acme'})

    it('reports in one summary, leaves no day PROCESSING, and the next run completes the range', async () => {
      const run = startCli(['process', '--from', days[0], '--to', days.at(-1)!], env())
      await waitForRun('the first day done', run, async () => (await rows(url)).some((r) => r.status === 'SUCCESS'))
      const killer = keepTerminating(name, 15)
      let result: CliResult
      try {
        result = await run.result
      } finally {
        expect(await killer.stop(), 'connections were terminated while the range ran').to.be.greaterThan(0)
      }

      expectNoCrash(result)
      expect(result.code, result.stderr).to.be.oneOf([0, 1])
      expect(result.stderr, 'the closing summary').to.match(/\d+ day\(s\): /)
      const after = await rows(url)
      expect(after.filter((r) => r.status === 'PROCESSING'), 'no day left PROCESSING').to.deep.equal([])

      const again = await runCli(['process', '--from', days[0], '--to', days.at(-1)!], env())
      expect(again.code, again.stderr).to.equal(0)
      const final = await rows(url)
      expect(final).to.have.length(days.length)
      expect(final.every((r) => r.status === 'SUCCESS'), JSON.stringify(final)).to.equal(true)
    })
  })

  it('the change listener survives kills at any moment, and comes back seeing changes', async () => {
    const downs: string[] = []
    const feed: ChangeFeed = listenForChanges({url, ssl: 'disable'}, {retryMs: 20, pingEveryMs: 100, pingTimeoutMs: 1000, onDown: (m) => downs.push(m)})
    try {
      await waitUntil('the listener up', () => feed.version() !== undefined)
      // Kills at varied moments: while connecting, during LISTEN, during a ping, while idle.
      for (const pause of [0, 3, 7, 12, 20, 35, 60, 90, 5, 1]) {
        await terminateAll(name)
        await new Promise((resolve) => setTimeout(resolve, pause))
      }

      await waitUntil('the listener back', () => feed.version() !== undefined, 20_000)
      const before = feed.version()!
      const client = new pg.Client({connectionString: url, application_name: 'audit-logger-test'})
      await client.connect()
      await client.query(`INSERT INTO audit_events_log (process_date, status) VALUES ('2025-06-01', 'SUCCESS')`)
      await client.end()
      await waitUntil('the change seen', () => (feed.version() ?? 0) > before)
      expect(downs.length, 'the kills were noticed').to.be.greaterThan(0)
    } finally {
      await feed.close()
    }
  })
}, 'terminates the tool’s connections (pg_terminate_backend) and refuses new ones (ALLOW_CONNECTIONS false)')
