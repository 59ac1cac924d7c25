/** The suite's own rules: one named file runs alone, and under CI a committed .only or .skip fails the run. */
import {spawn} from 'node:child_process'
import {mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'

import {expect} from 'chai'

import {itWithServer, runTempDir} from './support/db.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const MOCHA = join(ROOT, 'node_modules/mocha/bin/mocha.js')
// Inside the checkout (so the config and tsx apply), in a folder git ignores.
const PROBES = join(ROOT, 'test-artifacts', `suite-probes-${process.pid}`)

function runMocha(file: string, ci: boolean, more: NodeJS.ProcessEnv = {}): Promise<{code: number | null; output: string}> {
  const env = {...process.env, CI: ci ? 'true' : '', ...more}
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MOCHA, file], {cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe']})
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => (output += chunk))
    child.stderr.on('data', (chunk: Buffer) => (output += chunk))
    child.on('error', reject)
    child.on('close', (code) => resolve({code, output}))
  })
}

function probe(name: string, body: string): string {
  const file = join(PROBES, `${name}.test.ts`)
  writeFileSync(file, `import assert from 'node:assert'\n${body}\n`)
  return file
}

describe('the suite', function () {
  // Each case starts mocha (and tsx) afresh.
  this.timeout(60_000)

  before(() => mkdirSync(PROBES, {recursive: true}))
  after(() => rmSync(PROBES, {recursive: true, force: true}))

  it('runs a file named on the command line alone', async () => {
    const file = probe('alone', `describe('probe', () => { it('one', () => assert.equal(1, 1)); it('two', () => assert.equal(2, 2)) })`)
    const result = await runMocha(file, false)
    expect(result.code, result.output).to.equal(0)
    expect(result.output).to.match(/^2 passed, 0 failed$/m)
  })

  it('leaves nothing in the temporary directory: what tests make there goes in the run\'s own folder, removed at the end', async () => {
    expect(tmpdir().startsWith(runTempDir()), tmpdir()).to.equal(true)
    const file = probe('temp', `import {mkdtempSync, writeFileSync} from 'node:fs'\nimport {tmpdir} from 'node:os'\nimport {join} from 'node:path'\ndescribe('probe', () => { it('makes a folder', () => { writeFileSync(join(mkdtempSync(join(tmpdir(), 'audit-logger-probe-')), 'f'), 'x'); assert.ok(true) }) })`)
    const outside = mkdtempSync(join(PROBES, 'system-tmp-'))
    const result = await runMocha(file, false, {TMPDIR: outside})
    expect(result.code, result.output).to.equal(0)
    expect(result.output).to.match(/^1 passed, 0 failed$/m)
    // (tsx keeps its compile cache there, tsx-<uid>, shared by every run: not ours to remove.)
    expect(readdirSync(outside).filter((name) => !/^tsx-\d+$/.test(name))).to.deep.equal([])
  })

  it('without a server, runs each suite on the embedded engine and lists what it could not run, with why', async () => {
    const file = probe(
      'no-server',
      `import {sql} from 'kysely'\nimport {describeOnEngines, describeWithServer} from '${join(ROOT, 'test/support/db.ts')}'\n` +
        `describeOnEngines('both', (engine) => { it('answers', async () => { const db = await engine.open(); const {rows} = await sql<{n: number}>\`SELECT 1 AS n\`.execute(db); assert.equal(rows[0].n, 1); await db.destroy() }) })\n` +
        `describeWithServer('server only', () => { it('needs it', () => assert.ok(true)) }, 'needs pg_terminate_backend')`,
    )
    const result = await runMocha(file, false, {TEST_DATABASE_ADMIN_URL: 'postgres://postgres@127.0.0.1:1/postgres'})
    expect(result.code, result.output).to.equal(0)
    expect(result.output, result.output).to.match(/^1 passed, 0 failed, 2 skipped$/m)
    expect(result.output).to.include('both [embedded]')
    expect(result.output).to.match(/both \[postgres\].*its embedded copy ran/)
    expect(result.output).to.match(/server only.*needs pg_terminate_backend/)
  })

  // The probes run under CI=true, which requires the PostgreSQL server (test/support/root-hooks.ts).
  itWithServer('fails under CI on a committed .only, and on a .skip', async () => {
    const only = probe('only', `describe('probe', () => { it.only('one', () => assert.equal(1, 1)); it('two', () => assert.equal(2, 2)) })`)
    const skip = probe('skip', `describe('probe', () => { it('one', () => assert.equal(1, 1)); it.skip('two', () => assert.equal(2, 2)) })`)
    const [onlyCi, skipCi, onlyLocal] = await Promise.all([runMocha(only, true), runMocha(skip, true), runMocha(only, false)])
    expect(onlyCi.code, onlyCi.output).to.not.equal(0)
    expect(onlyCi.output).to.include('ERR_MOCHA_FORBIDDEN_EXCLUSIVITY')
    expect(skipCi.code, skipCi.output).to.not.equal(0)
    expect(skipCi.output).to.match(/pending|Pending test forbidden/i)
    // Off CI, .only still works as a developer expects.
    expect(onlyLocal.code, onlyLocal.output).to.equal(0)
    expect(onlyLocal.output).to.match(/^1 passed, 0 failed$/m)
  }, 'runs mocha under CI=true, which requires the PostgreSQL server')
})
