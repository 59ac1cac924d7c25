/** Helpers for the benchmarks: time a real process, take medians, print a table. */
import {spawn} from 'node:child_process'
import {mkdtempSync, readFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

export interface Measurement {
  seconds: number
  maxRssMb: number
  /** User plus system CPU time of the process (its children included). */
  cpuSeconds: number
  code: number | null
}

const scratch = mkdtempSync(join(tmpdir(), 'audit-logger-bench-'))
let counter = 0

/** Runs a command under /usr/bin/time: wall time, peak RSS and CPU time of the process, output discarded. */
export async function measure(command: string, args: string[], env: NodeJS.ProcessEnv): Promise<Measurement> {
  const report = join(scratch, `time-${counter++}.txt`)
  const started = process.hrtime.bigint()
  const code = await new Promise<number | null>((resolve, reject) => {
    const child = spawn('/usr/bin/time', ['-f', '%M %U %S', '-o', report, command, ...args], {env, stdio: ['ignore', 'ignore', 'pipe']})
    let stderr = ''
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    child.on('error', reject)
    child.on('close', (exit) => {
      if (exit !== 0) process.stderr.write(stderr)
      resolve(exit)
    })
  })
  const seconds = Number(process.hrtime.bigint() - started) / 1e9
  const [maxRssKb, user, system] = readFileSync(report, 'utf8').trim().split('\n').at(-1)!.split(' ').map(Number)
  return {seconds, maxRssMb: maxRssKb / 1024, cpuSeconds: user + system, code}
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

/** "median (min–max)" of a figure measured several times, with `digits` decimals. */
export function spread(values: number[], digits = 2): string {
  const sorted = [...values].sort((a, b) => a - b)
  const text = median(values).toFixed(digits)
  return sorted.length < 2 ? text : `${text} (${sorted[0].toFixed(digits)}–${sorted.at(-1)!.toFixed(digits)})`
}

export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]
}

export function table(rows: Array<Record<string, string | number>>): string {
  const headers = Object.keys(rows[0] ?? {})
  const cells = rows.map((row) => headers.map((h) => String(row[h])))
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)))
  const line = (values: string[]) => values.map((v, i) => v.padEnd(widths[i])).join('  ')
  return [line(headers), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line)].join('\n')
}

export function verdict(ok: boolean, what: string): string {
  return `${ok ? 'PASS' : 'OVER BUDGET'}: ${what}`
}
