/** Small helpers several suites share. */
import type {ChildProcess} from 'node:child_process'
import {type Server, createServer} from 'node:net'

import {expect} from 'chai'

import {UsageError} from '../../src/lib/errors.js'

/** A port free on 127.0.0.1 right now (for a server a test starts as a real process). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const {port} = server.address() as {port: number}
      server.close(() => resolve(port))
    })
  })
}

/**
 * Starts `server` (a proxy in front of a database) on a free loopback port and returns
 * `upstreamUrl` pointed at it: same user, password and database, the proxy's host and port.
 */
export async function listenInFrontOf(server: Server, upstreamUrl: string): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const proxied = new URL(upstreamUrl)
  proxied.hostname = '127.0.0.1'
  proxied.port = String((server.address() as {port: number}).port)
  return proxied.toString()
}

/** The error `promise` rejects with; fails the test if it resolves. */
export async function rejectionOf(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise
  } catch (error) {
    return error as Error
  }

  return expect.fail('expected a rejection')
}

/** Sets environment variables for each test of the suite and puts the old values back afterwards. */
export function useEnv(vars: () => Record<string, string | undefined>): void {
  const saved: Record<string, string | undefined> = {}
  beforeEach(() => {
    for (const [name, value] of Object.entries(vars())) {
      saved[name] = process.env[name]
      if (value === undefined) delete process.env[name]
      else process.env[name] = value
    }
  })
  afterEach(() => {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name]
      else process.env[name] = value
    }
  })
}

/** The UsageError `work` throws; fails the test if it throws nothing or something else. */
export function usageErrorOf(work: () => unknown): UsageError {
  try {
    work()
  } catch (error) {
    expect(error).to.be.instanceOf(UsageError)
    return error as UsageError
  }

  return expect.fail('expected a UsageError')
}

/** Polls `probe` every 25 ms until it holds; fails after `timeoutMs`, naming what it waited for. */
export async function waitUntil(what: string, probe: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

/**
 * Like waitUntil, while a real process runs: fails at once if `run` has already exited, quoting
 * what it printed on stderr, rather than waiting out the timeout.
 */
export async function waitForRun(what: string, run: ChildProcess, probe: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  let stderr = ''
  run.stderr?.on('data', (chunk: Buffer | string) => (stderr += chunk.toString()))
  try {
    await waitUntil(what, async () => {
      if (run.exitCode !== null || run.signalCode !== null) throw new Error(`the run exited (${run.exitCode ?? run.signalCode}) before ${what}`)
      return probe()
    }, timeoutMs)
  } catch (error) {
    throw new Error(`${(error as Error).message}; the run said: ${stderr}`)
  }
}
