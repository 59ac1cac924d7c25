/**
 * The output directory: a day's temporary file is created exclusively under an unpredictable
 * name, so a symbolic link planted where a run would write is never followed; and the directory
 * is checked with bounded operations, so a path under /proc answers at once instead of spinning.
 */
import {existsSync, lstatSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, symlinkSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {gunzipSync} from 'node:zlib'

import {expect} from 'chai'
import type {Kysely} from 'kysely'

import type {Database} from '../../src/lib/db/schema.js'
import {createExclusive, dayFilePath, ensureDirectory, openDayFile} from '../../src/lib/output/day-file.js'
import {generateEvents} from '../fake-heroku/events.js'
import type {FakeHeroku} from '../fake-heroku/server.js'
import {runCli, startCli} from '../support/cli.js'
import {describeOnEngines, snapshot} from '../support/db.js'
import {rejectionOf} from '../support/helpers.js'
import {useJobSuite} from '../support/job-suite.js'

const DAY = '2025-04-04'
const VICTIM_TEXT = 'a file the run must never touch\n'
const onLinux = process.platform === 'linux'

function scratch(): {dir: string; victim: string} {
  const dir = mkdtempSync(join(tmpdir(), 'audit-logger-output-dir-'))
  const victim = join(mkdtempSync(join(tmpdir(), 'audit-logger-victim-')), 'victim.txt')
  writeFileSync(victim, VICTIM_TEXT)
  return {dir, victim}
}

/** The names the old scheme (`.DAY.ndjson.gz.tmp-<pid>`) gave a run with one of these pids. */
function oldTempName(day: string, pid: number): string {
  return `.${day}.ndjson.gz.tmp-${pid}`
}

describe('the day file’s temporary file', () => {
  it('never follows a link planted at the name the run would have used, and the day’s file is right', async () => {
    const {dir, victim} = scratch()
    symlinkSync(victim, join(dir, oldTempName(DAY, process.pid)))
    symlinkSync(victim, join(dir, `${oldTempName(DAY, process.pid)}-0000000000000000`))
    const file = await openDayFile(dir, DAY)
    await file.write('{"id":"a"}\n')
    await file.commit()
    expect(readFileSync(victim, 'utf8')).to.equal(VICTIM_TEXT)
    expect(lstatSync(dayFilePath(dir, DAY)).isFile(), 'a regular file, not the planted link').to.equal(true)
    expect(gunzipSync(readFileSync(dayFilePath(dir, DAY))).toString()).to.equal('{"id":"a"}\n')
    expect(readdirSync(dir), 'the planted links removed as leftovers, not followed').to.deep.equal([`${DAY}.ndjson.gz`])
  })

  it('replaces a link planted at the final name instead of writing through it', async () => {
    const {dir, victim} = scratch()
    symlinkSync(victim, dayFilePath(dir, DAY))
    const file = await openDayFile(dir, DAY)
    await file.write('{"id":"b"}\n')
    await file.commit()
    expect(readFileSync(victim, 'utf8')).to.equal(VICTIM_TEXT)
    expect(lstatSync(dayFilePath(dir, DAY)).isFile()).to.equal(true)
  })

  it('gets a fresh, unpredictable name every time, never reused', async () => {
    const {dir} = scratch()
    const first = await openDayFile(dir, DAY)
    const second = await openDayFile(join(dir, 'other'), DAY)
    expect(first.tempPath).to.match(new RegExp(`/\\.${DAY}\\.ndjson\\.gz\\.tmp-${process.pid}-[0-9a-f]{16}$`))
    expect(first.tempPath.slice(-16)).not.to.equal(second.tempPath.slice(-16))
    await first.discard()
    await second.discard()
    expect(readdirSync(dir)).to.deep.equal(['other'])
  })

  it('createExclusive refuses any name already taken: a link (dangling or not) or a file, which it leaves alone', async () => {
    const {dir, victim} = scratch()
    symlinkSync(victim, join(dir, 'link'))
    symlinkSync(join(dir, 'not-there'), join(dir, 'dangling'))
    writeFileSync(join(dir, 'file'), 'kept')
    for (const name of ['link', 'dangling', 'file']) {
      expect((await rejectionOf(createExclusive(join(dir, name)))) as NodeJS.ErrnoException, name).to.include({code: 'EEXIST'})
    }

    expect(readFileSync(victim, 'utf8')).to.equal(VICTIM_TEXT)
    expect(existsSync(join(dir, 'not-there')), 'the dangling link’s target is not created').to.equal(false)
    expect(readFileSync(join(dir, 'file'), 'utf8')).to.equal('kept')
    expect(readlinkSync(join(dir, 'link'))).to.equal(victim)
  })
})

describe('ensureDirectory', () => {
  it('creates the missing levels one by one, and accepts a directory that exists', async () => {
    const {dir} = scratch()
    await ensureDirectory(join(dir, 'a', 'b', 'c'))
    await ensureDirectory(join(dir, 'a', 'b', 'c'))
    expect(lstatSync(join(dir, 'a', 'b', 'c')).isDirectory()).to.equal(true)
  })

  it('refuses a path through a file', async () => {
    const {dir} = scratch()
    writeFileSync(join(dir, 'file'), '')
    expect((await rejectionOf(ensureDirectory(join(dir, 'file', 'below')))) as NodeJS.ErrnoException).to.include({code: 'ENOTDIR'})
  })

  ;(onLinux ? it : it.skip)('answers at once under /proc, where a recursive mkdir never returns', async () => {
    expect((await rejectionOf(ensureDirectory('/proc/nope/deeper'))) as NodeJS.ErrnoException).to.include({code: 'ENOENT'})
  })
})

describeOnEngines('the output directory, with real processes', function (engine) {
  this.timeout(60_000)
  let fake: FakeHeroku
  let db: Kysely<Database>
  let env: NodeJS.ProcessEnv

  useJobSuite((suite) => ({fake, db, env} = suite), {engine: engine.name})

  ;(onLinux ? it : it.skip)('links planted at every name the old scheme could pick: the victim is untouched and the day’s file is right', async () => {
    const {dir, victim} = scratch()
    fake.setEvents(DAY, generateEvents(DAY, 20))
    // The kernel hands out pids after the last one it gave, wrapping from pid_max back to 300:
    // links for the next 4000 cover the run's pid however busy the machine is meanwhile.
    const max = Number(readFileSync('/proc/sys/kernel/pid_max', 'utf8'))
    let pid = Number(readFileSync('/proc/sys/kernel/ns_last_pid', 'utf8'))
    const planted = new Set<number>()
    for (let k = 0; k < 4000; k++) {
      pid = pid + 1 >= max ? 300 : pid + 1
      planted.add(pid)
    }
    for (const pid of planted) symlinkSync(victim, join(dir, oldTempName(DAY, pid)))

    const run = startCli(['process', '--date', DAY, '--format', 'json', '--output-dir', dir], env)
    expect(planted.has(run.pid!), `the run's pid ${run.pid} has a link planted at its old name`).to.equal(true)
    const result = await run.result
    expect(result.code, result.stderr).to.equal(0)
    expect(readFileSync(victim, 'utf8')).to.equal(VICTIM_TEXT)
    expect(lstatSync(dayFilePath(dir, DAY)).isFile()).to.equal(true)
    const lines = gunzipSync(readFileSync(dayFilePath(dir, DAY))).toString().split('\n').filter(Boolean)
    expect(lines.map((l) => JSON.parse(l) as unknown)).to.deep.equal(generateEvents(DAY, 20))
    expect(readdirSync(dir), 'every planted link removed as a leftover').to.deep.equal([`${DAY}.ndjson.gz`])
  })

  for (const how of ['--output-dir', 'OUTPUT_DIR']) {
    ;(onLinux ? it : it.skip)(`${how}=/proc/nope: one line, exit 2, nothing claimed, instead of spinning forever`, async () => {
      const args = ['process', '--date', DAY, ...(how === '--output-dir' ? ['--output-dir', '/proc/nope'] : [])]
      const run = startCli(args, how === 'OUTPUT_DIR' ? {...env, OUTPUT_DIR: '/proc/nope'} : env)
      const killer = setTimeout(() => run.kill('SIGKILL'), 20_000)
      const result = await run.result
      clearTimeout(killer)
      expect(result.signal, 'answered within 20 s').to.equal(null)
      expect(result.code, result.stderr).to.equal(2)
      expect(result.stderr.trimEnd().split('\n'), result.stderr).to.have.length(1)
      expect(result.stderr).to.match(/^Error: cannot write to the output directory \/proc\/nope: ENOENT — /)
      expect(await snapshot(db), 'nothing claimed').to.deep.equal([])
      expect(fake.requests).to.have.length(0)
    })
  }

  it('an output directory that is a file: one line, exit 2, nothing claimed', async () => {
    const {dir} = scratch()
    writeFileSync(join(dir, 'file'), '')
    const result = await runCli(['process', '--date', DAY, '--output-dir', join(dir, 'file', 'below')], env)
    expect(result.code, result.stderr).to.equal(2)
    expect(result.stderr.trimEnd().split('\n')).to.have.length(1)
    expect(await snapshot(db)).to.deep.equal([])
  })
})
