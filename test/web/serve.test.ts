/** `audit-logger serve` as a real process: start-up checks and graceful shutdown on SIGTERM. */

import {type AddressInfo, createServer} from 'node:net'

import {expect} from 'chai'
import pg from 'pg'

import {portProblem} from '../../src/commands/serve.js'
import {cliEnv, runCli, startCli} from '../support/cli.js'
import {describeWithServer} from '../support/db.js'
import {freePort, waitUntil} from '../support/helpers.js'

describe('serve: a port it cannot listen on', () => {
  // Root (as here and in CI) may listen on any port, so the refusal is met only on a real host: its message is checked alone.
  it('names a port that needs privileges, and how to pick another', () => {
    const refused = Object.assign(new Error('listen EACCES: permission denied 0.0.0.0:80'), {code: 'EACCES'})
    expect(portProblem(refused, 80).message).to.equal('port 80 needs privileges this user does not have (ports below 1024 usually do)')
    const other = Object.assign(new Error('listen EINVAL'), {code: 'EINVAL'})
    expect(portProblem(other, 80)).to.equal(other)
  })
})

describeWithServer('serve (a real process)', function () {
  this.timeout(30_000)

  it('refuses to start half-configured, exit 2, one line', async () => {
    const result = await runCli(['serve', '--port', String(await freePort())], cliEnv({DATABASE_URL: process.env.TEST_DATABASE_URL, STATUS_PAGE_USERNAME: 'ops'}))
    expect(result.code).to.equal(2)
    expect(result.stderr).to.match(/^Error: STATUS_PAGE_PASSWORD is not set but STATUS_PAGE_USERNAME is — .+\n$/)
  })

  it('on a port in use: one line naming it and how to pick another, exit 2, and the process ends', async () => {
    const taken = createServer()
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
    const {port} = taken.address() as AddressInfo
    try {
      const result = await runCli(['serve', '--port', String(port)], cliEnv({DATABASE_URL: process.env.TEST_DATABASE_URL}))
      expect(result.code).to.equal(2)
      const errors = result.stderr.split('\n').filter((line) => line.startsWith('Error'))
      expect(errors).to.deep.equal([`Error: port ${port} is already in use by another program — pick another with --port N (or PORT=N)`])
    } finally {
      await new Promise((resolve) => taken.close(resolve))
    }
  })

  it('serves, warns when read-only, and on SIGTERM finishes the request in flight, then exits 0', async () => {
    const port = await freePort()
    const server = startCli(['serve'], cliEnv({DATABASE_URL: process.env.TEST_DATABASE_URL, PORT: String(port)}))
    let stderr = ''
    server.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    await waitUntil('the server listening', () => stderr.includes('listening'), 15_000)
    expect(stderr).to.match(/read-only: set STATUS_PAGE_USERNAME and STATUS_PAGE_PASSWORD/)
    expect(stderr).to.match(/status page listening on .*:\d+ \(read-only\)/)

    const health = await fetch(`http://127.0.0.1:${port}/healthz`)
    expect(health.status).to.equal(200)

    // Hold a lock on the table so a page request stays in flight while the signal arrives.
    const blocker = new pg.Client({connectionString: process.env.TEST_DATABASE_URL})
    await blocker.connect()
    await blocker.query('BEGIN; LOCK TABLE audit_events_log IN ACCESS EXCLUSIVE MODE')
    const inFlight = fetch(`http://127.0.0.1:${port}/`)
    await waitUntil('the request waiting on the lock', async () => {
      const waiting = await blocker.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND application_name = 'audit-logger'`)
      return waiting.rows[0].n > 0
    })
    server.kill('SIGTERM')
    await new Promise((resolve) => setTimeout(resolve, 300))
    await blocker.query('COMMIT')
    await blocker.end()
    const page = await inFlight
    expect(page.status).to.equal(200)
    expect(await page.text()).to.include('Processing log')
    const result = await server.result
    expect(result.code, result.stderr).to.equal(0)
    expect(result.stderr).to.match(/received SIGTERM: closing/)
    await fetch(`http://127.0.0.1:${port}/healthz`).then(
      () => expect.fail('the server should be closed'),
      (error: Error) => expect(error.message).to.match(/fetch failed/),
    )
  })

  it('passes DYNO and EVENT_STORE to the events views: refused on a dyno without credentials, "the store is off" when off', async () => {
    const start = async (env: Record<string, string>) => {
      const port = await freePort()
      const server = startCli(['serve'], cliEnv({DATABASE_URL: process.env.TEST_DATABASE_URL, PORT: String(port), ...env}))
      let stderr = ''
      server.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
      await waitUntil('the server listening', () => stderr.includes('listening'), 15_000)
      return {server, port, stderr: () => stderr}
    }

    const [dyno, off] = await Promise.all([start({DYNO: 'web.1'}), start({EVENT_STORE: 'off'})])
    try {
      expect(dyno.stderr()).to.match(/until then the events views are refused on a dyno/)
      const refused = await fetch(`http://127.0.0.1:${dyno.port}/api/events`)
      expect(refused.status).to.equal(403)
      expect(((await refused.json()) as {error: string}).error).to.match(/set STATUS_PAGE_USERNAME and STATUS_PAGE_PASSWORD/)
      expect((await fetch(`http://127.0.0.1:${dyno.port}/`)).status, 'the processing log stays read-only for all').to.equal(200)

      expect(off.stderr()).to.match(/until then the events views answer only this machine/)
      const storeOff = await fetch(`http://127.0.0.1:${off.port}/api/events`)
      expect(storeOff.status).to.equal(404)
      expect(((await storeOff.json()) as {error: string}).error).to.match(/^The event store is off \(EVENT_STORE=off\)/)
    } finally {
      for (const {server} of [dyno, off]) server.kill('SIGTERM')
      await Promise.all([dyno.server.result, off.server.result])
    }
  })

  it('serves reads from memory yet shows a change made by another process once it commits', async () => {
    const port = await freePort()
    const server = startCli(['serve'], cliEnv({DATABASE_URL: process.env.TEST_DATABASE_URL, PORT: String(port)}))
    let stderr = ''
    server.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    try {
      await waitUntil('the server listening', () => stderr.includes('listening'), 15_000)
      const other = new pg.Client({connectionString: process.env.TEST_DATABASE_URL})
      await other.connect()
      try {
        await other.query(`DELETE FROM audit_events_log WHERE process_date = '2001-02-03'`)
        const listed = async () => (await (await fetch(`http://127.0.0.1:${port}/?from=2001-02-03&to=2001-02-03`)).text()).includes('href="/logs/2001-02-03"')
        expect(await listed()).to.equal(false)
        expect(await listed(), 'the same page again, now from memory').to.equal(false)
        await other.query(`INSERT INTO audit_events_log (process_date, status) VALUES ('2001-02-03', 'SUCCESS')`)
        await waitUntil('the new record on the page', listed)
        await other.query(`DELETE FROM audit_events_log WHERE process_date = '2001-02-03'`)
        await waitUntil('the record gone from the page', async () => !(await listed()))
      } finally {
        await other.end()
      }
    } finally {
      server.kill('SIGTERM')
      await server.result
    }
  })
}, 'a serve process on DATABASE_URL, held in flight by a lock from a second connection')
