/** Small helpers several suites share. */
import {createServer} from 'node:net'

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
