/**
 * Benchmarks 6 and 6e (`events-cli`, `events-cli-embedded`): `audit-logger events` over the
 * seeded year (see search.ts), run as a user runs it: the time to its first line on stdout, and
 * streaming a large result to /dev/null in bounded memory.
 */
import {spawn} from 'node:child_process'

import {addDays} from '../src/lib/dates.js'
import {type EngineName, seededStore} from './search.js'
import {measure, median, spread, table, verdict} from './support.js'

interface FirstLine {
  firstByte: number
  total: number
  lines: number
  code: number | null
  stderr: string
}

/** Runs the command, timing its first byte on stdout and its end; stdout is counted, not kept. */
function firstLine(bin: string, args: string[], env: NodeJS.ProcessEnv): Promise<FirstLine> {
  return new Promise((resolve, reject) => {
    const started = performance.now()
    let firstByte = Number.NaN
    let lines = 0
    let stderr = ''
    const child = spawn(bin, args, {env, stdio: ['ignore', 'pipe', 'pipe']})
    child.stdout.on('data', (chunk: Buffer) => {
      if (Number.isNaN(firstByte)) firstByte = (performance.now() - started) / 1000
      for (let at = chunk.indexOf(10); at !== -1; at = chunk.indexOf(10, at + 1)) lines++
    })
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    child.on('error', reject)
    child.on('close', (code) => resolve({firstByte, total: (performance.now() - started) / 1000, lines, code, stderr}))
  })
}

export async function eventsCliBench(out: (line?: string) => void, bin: string, runs: number, engine: EngineName): Promise<void> {
  const store = await seededStore(engine, out)
  out(`## 6${engine === 'embedded' ? 'e' : ''}. audit-logger events over ${store.events.toLocaleString('en')} stored events on the ${store.label}`)
  const env = {PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...store.env}
  const probe = await firstLine(bin, ['events', '--help'], env)
  if (probe.code !== 0) {
    out(`SKIPPED: this build has no events command yet (bin/run.js events --help exited ${probe.code}); run again once it is merged`)
    return
  }

  const {values, firstDay, lastDay} = store
  const month = ['--from', addDays(lastDay, -29), '--to', lastDay]
  const year = ['--from', firstDay, '--to', lastDay]
  const firsts: Array<{what: string; args: string[]}> = [
    {what: 'busiest actor, last 30 days', args: ['--actor', values.busiestActor, ...month]},
    {what: 'middling actor, last 30 days', args: ['--actor', values.typicalActor, ...month]},
    {what: 'middling actor, the whole year', args: ['--actor', values.typicalActor, ...year]},
    {what: 'middling app, action destroy, the whole year', args: ['--app', values.typicalApp, '--action', 'destroy', ...year]},
  ]
  const rows = []
  let worst = 0
  for (const {what, args} of firsts) {
    const results: FirstLine[] = []
    for (let i = 0; i < runs; i++) {
      const result = await firstLine(bin, ['events', ...args], env)
      if (result.code !== 0) throw new Error(`events ${args.join(' ')} exited ${result.code}: ${result.stderr}`)
      results.push(result)
    }

    const matched = results[0].lines
    const first = matched ? median(results.map((r) => r.firstByte)) : Number.NaN
    if (matched) worst = Math.max(worst, first)
    rows.push({
      'events …': what,
      lines: matched,
      'first line (s)': matched ? spread(results.map((r) => r.firstByte)) : '(none matched)',
      'all of it (s)': spread(results.map((r) => r.total)),
    })
  }

  out(table(rows))
  out(`     median (min–max) of ${runs} runs; from spawning bin/run.js to the first byte on its stdout (a pipe), and to its exit`)
  out(verdict(worst < 0.5, `the first line within 0.5 s (slowest median ${worst.toFixed(2)} s)`))
  out()

  // A big result straight to /dev/null, under /usr/bin/time: how fast, and in how much memory.
  const streams: Array<{what: string; args: string[]; times: number; events: number}> = [
    {what: 'the last 30 days, text', args: [...month], times: runs, events: 0},
    {what: 'the last 30 days, json', args: [...month, '--format', 'json'], times: runs, events: 0},
    {what: 'the whole year, json', args: [...year, '--format', 'json'], times: 1, events: store.events},
  ]
  const monthEvents = await store.use(async (db) => {
    const counted = await db.selectFrom('audit_events').select((eb) => eb.fn.countAll<number>().as('n')).where('day', '>=', month[1]).where('day', '<=', lastDay).executeTakeFirstOrThrow()
    return Number(counted.n)
  })
  const streamRows = []
  const rss: number[] = []
  for (const stream of streams) {
    const events = stream.events || monthEvents
    const results = []
    for (let i = 0; i < stream.times; i++) {
      const run = await measure(bin, ['events', ...stream.args], env)
      if (run.code !== 0) throw new Error(`events ${stream.args.join(' ')} exited ${run.code}`)
      results.push(run)
    }

    rss.push(median(results.map((r) => r.maxRssMb)))
    streamRows.push({
      'events … > /dev/null': stream.what,
      events,
      runs: stream.times,
      'wall (s)': spread(results.map((r) => r.seconds)),
      'events/s': Math.round(events / median(results.map((r) => r.seconds))),
      'peak RSS (MB)': spread(results.map((r) => r.maxRssMb), 0),
      'CPU (s)': spread(results.map((r) => r.cpuSeconds)),
    })
  }

  out(table(streamRows))
  out(verdict(rss[2] < 1.25 * Math.max(rss[0], rss[1]), `memory bounded: the whole year's peak RSS ${rss[2].toFixed(0)} MB against ${Math.max(rss[0], rss[1]).toFixed(0)} MB for 30 days`))
}
