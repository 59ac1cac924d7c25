/**
 * The CPU time PostgreSQL's backends spend for one database while a measured process runs: their
 * pids polled from pg_stat_activity, their /proc/<pid>/stat read each time, the last reading of
 * each kept (a backend's figures vanish with it). Good to a poll interval per backend; the server
 * must be on this machine.
 */
import {readFileSync} from 'node:fs'

import pg from 'pg'

import {ADMIN_URL} from '../test/support/db.js'

// Clock ticks per second of /proc/<pid>/stat; 100 on every Linux this runs on.
const TICKS = 100

/** User plus system CPU seconds of a process so far, or undefined once it is gone. */
export function cpuSecondsOf(pid: number): number | undefined {
  try {
    // After "pid (comm) ": utime and stime are the 12th and 13th fields.
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
    return (Number(fields[11]) + Number(fields[12])) / TICKS
  } catch {
    return undefined
  }
}

export interface ServerCpu {
  /** Stops polling; the CPU seconds the database's backends used since start. */
  stop(): Promise<number>
}

export async function watchServerCpu(database: string, intervalMs = 50): Promise<ServerCpu> {
  const client = new pg.Client({connectionString: ADMIN_URL})
  await client.connect()
  const own = (await client.query<{pid: number}>('SELECT pg_backend_pid() AS pid')).rows[0].pid
  const first = new Map<number, number>()
  const last = new Map<number, number>()
  const poll = async () => {
    const {rows} = await client.query<{pid: number}>('SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> $2', [database, own])
    for (const {pid} of rows) {
      const seconds = cpuSecondsOf(pid)
      if (seconds === undefined) continue
      if (!first.has(pid)) first.set(pid, seconds)
      last.set(pid, seconds)
    }
  }

  await poll()
  // Backends already there count from now; new ones from their start.
  const started = new Set(first.keys())
  let polling = true
  const loop = (async () => {
    while (polling) {
      await poll()
      await new Promise((resolve) => setTimeout(resolve, intervalMs))
    }
  })()
  return {
    async stop() {
      polling = false
      await loop
      await client.end()
      let total = 0
      for (const [pid, seconds] of last) total += seconds - (started.has(pid) ? first.get(pid)! : 0)
      return total
    },
  }
}
