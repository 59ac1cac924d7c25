/**
 * The CPU time PostgreSQL's backends spend for one database while a measured process runs: their
 * pids looked up in pg_stat_activity, their /proc/<pid>/stat read often, the last reading of each
 * kept (a backend's figures vanish with it). Good to a read interval per backend, missing a
 * backend that lives less than a lookup interval; the server must be on this machine.
 */
import {readFileSync} from 'node:fs'

import pg from 'pg'

import {ADMIN_URL} from '../test/support/db.js'

/**
 * CPU seconds a process has used so far, or undefined once it is gone. From /proc/<pid>/schedstat
 * (time on a CPU, in ns), which reads the scheduler's figures only: /proc/<pid>/stat also reads
 * the process's memory map, and reading it every 50 ms slowed a busy backend down measurably.
 */
export function cpuSecondsOf(pid: number): number | undefined {
  try {
    return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]) / 1e9
  } catch {
    return undefined
  }
}

export interface ServerCpu {
  /** Stops polling; the CPU seconds the database's backends used since start. */
  stop(): Promise<number>
}

/**
 * Watches the backends of `database`: new ones are looked up in pg_stat_activity every
 * `lookupMs`, the CPU of those known read from /proc every `readMs`. Asking PostgreSQL much more
 * often than that slowed the measured runs down (a 100,000-event day by 1.5 s at every 50 ms).
 */
export async function watchServerCpu(database: string, lookupMs = 500, readMs = Number(process.env.BENCH_CPU_READ_MS ?? 50)): Promise<ServerCpu> {
  const client = new pg.Client({connectionString: ADMIN_URL})
  await client.connect()
  const own = (await client.query<{pid: number}>('SELECT pg_backend_pid() AS pid')).rows[0].pid
  const first = new Map<number, number>()
  const last = new Map<number, number>()
  const read = () => {
    for (const pid of last.keys()) {
      const seconds = cpuSecondsOf(pid)
      if (seconds !== undefined) last.set(pid, seconds)
    }
  }

  const lookUp = async () => {
    const {rows} = await client.query<{pid: number}>('SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> $2', [database, own])
    for (const {pid} of rows) {
      if (last.has(pid)) continue
      const seconds = cpuSecondsOf(pid)
      if (seconds === undefined) continue
      first.set(pid, seconds)
      last.set(pid, seconds)
    }
  }

  await lookUp()
  // Backends already there count from now; new ones from their start.
  const started = new Set(first.keys())
  const reading = setInterval(read, readMs)
  let looking = true
  const loop = (async () => {
    while (looking) {
      await new Promise((resolve) => setTimeout(resolve, lookupMs))
      if (looking) await lookUp()
    }
  })()
  return {
    async stop() {
      looking = false
      clearInterval(reading)
      await loop
      await client.end()
      let total = 0
      for (const [pid, seconds] of last) total += seconds - (started.has(pid) ? first.get(pid)! : 0)
      return total
    },
  }
}
