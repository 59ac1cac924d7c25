/**
 * The Heroku deploy kit: app.json, the Procfile and package.json agree with what the code reads
 * and runs, and the install works with the dev dependencies pruned.
 */
import {spawnSync} from 'node:child_process'
import {cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {builtinModules} from 'node:module'
import {tmpdir} from 'node:os'
import {join, relative} from 'node:path'
import {fileURLToPath} from 'node:url'

import {expect} from 'chai'

import {DEFAULT_CATCH_UP_DAYS, DEFAULT_RATE_LIMIT_RESERVE, LOG_LEVELS, loadConfig, loadWebConfig} from '../../src/lib/config.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const read = (file: string) => readFileSync(join(ROOT, file), 'utf8')

interface AppJson {
  buildpacks: Array<{url: string}>
  formation: Record<string, {quantity: number; size: string}>
  addons: Array<{plan: string}>
  env: Record<string, {description: string; value?: string; generator?: string; required: boolean}>
}

const app = JSON.parse(read('app.json')) as AppJson
const pkg = JSON.parse(read('package.json')) as {
  dependencies: Record<string, string>
  devDependencies: Record<string, string>
  scripts: Record<string, string>
  engines: {node: string}
}

function sourceFiles(dir: string): string[] {
  return readdirSync(join(ROOT, dir), {withFileTypes: true, recursive: true})
    .filter((entry) => entry.isFile() && entry.name.endsWith('.ts'))
    .map((entry) => relative(ROOT, join(entry.parentPath, entry.name)))
}

describe('the Heroku deploy kit', () => {
  describe('app.json', () => {
    it('asks for the Node buildpack, a web dyno, Heroku Postgres and Heroku Scheduler', () => {
      expect(app.buildpacks).to.deep.equal([{url: 'heroku/nodejs'}])
      expect(app.formation.web.quantity).to.equal(1)
      expect(app.addons.map((a) => a.plan.split(':')[0])).to.have.members(['heroku-postgresql', 'scheduler'])
    })

    it('requires exactly the API token and the account, and describes every variable', () => {
      expect(Object.keys(app.env).filter((name) => app.env[name].required)).to.have.members(['HEROKU_API_TOKEN', 'HEROKU_ACCOUNT_ID'])
      for (const [name, spec] of Object.entries(app.env)) {
        expect(spec.description, name).to.be.a('string').with.length.above(20)
        expect(spec.required, name).to.be.a('boolean')
      }
    })

    it('names only variables the code reads', () => {
      const code = sourceFiles('src').map((file) => read(file)).join('\n')
      for (const name of Object.keys(app.env)) expect(code, name).to.match(new RegExp(`'${name}'|env\\.${name}\\b`))
    })

    it('gives defaults the code accepts and would use anyway, and protects the status page with a generated password', () => {
      expect(Number(app.env.CATCH_UP_DAYS.value)).to.equal(DEFAULT_CATCH_UP_DAYS)
      expect(Number(app.env.RATE_LIMIT_RESERVE.value)).to.equal(DEFAULT_RATE_LIMIT_RESERVE)
      expect(LOG_LEVELS).to.include(app.env.LOG_LEVEL.value)
      const defaults = Object.fromEntries(Object.entries(app.env).flatMap(([name, spec]) => (spec.value === undefined ? [] : [[name, spec.value]])))
      // What a fresh deploy has: the defaults, Heroku Postgres's URL, a dyno, the two required values.
      const env = {
        ...defaults,
        DATABASE_URL: 'postgres://u:p@ec2-1-2-3-4.compute-1.amazonaws.com:5432/d',
        DYNO: 'web.1',
        HEROKU_API_TOKEN: 'HRKU-deploy-kit-test-0000000000000',
        HEROKU_ACCOUNT_ID: 'acme',
        STATUS_PAGE_PASSWORD: 'a'.repeat(64), // what "generator": "secret" gives: 64 hex digits
      }
      const config = loadConfig(env, {needsHeroku: true})
      expect(config.database.kind).to.equal('postgres')
      expect(config.processing).to.include({catchUpDays: DEFAULT_CATCH_UP_DAYS, rateLimitReserve: DEFAULT_RATE_LIMIT_RESERVE})
      expect(app.env.STATUS_PAGE_PASSWORD.generator).to.equal('secret')
      expect(loadWebConfig(env).auth).to.deep.equal({username: app.env.STATUS_PAGE_USERNAME.value, password: 'a'.repeat(64)})
    })
  })

  describe('Procfile and package.json', () => {
    it('serves on web and migrates in the release phase, with the built CLI', () => {
      const entries = Object.fromEntries(read('Procfile').trim().split('\n').map((line) => line.split(/:\s*/, 2) as [string, string]))
      expect(entries).to.include({web: './bin/run.js serve', release: './bin/run.js db init'})
    })

    it('runs bin/run.js as an executable, through its shebang and the V8 flags on it, as the Procfile does', () => {
      expect(read('bin/run.js').split('\n')[0]).to.equal('#!/usr/bin/env -S node --max-semi-space-size=4 --heap-growing-percent=30')
      const run = spawnSync(join(ROOT, 'bin/run.js'), ['--version'], {encoding: 'utf8', env: {PATH: process.env.PATH}})
      expect(run.status, run.stderr).to.equal(0)
      expect(run.stdout).to.match(/^audit-logger\/\d+\.\d+\.\d+ /)
    })

    it('records build information after the build, and builds on install (prepare)', () => {
      expect(pkg.scripts['heroku-postbuild']).to.equal('node scripts/write-build-info.mjs')
      expect(pkg.scripts.prepare).to.equal('node scripts/prepare.mjs')
      expect(pkg.engines.node, 'Heroku takes the newest Node the range allows: one CI has run').to.match(/^>=20\.12\.0 <2[1-3]$/)
    })

    it('imports at run time only dependencies, never devDependencies (Heroku prunes those)', () => {
      const builtins = new Set(builtinModules)
      const runtime = new Set(Object.keys(pkg.dependencies))
      const used = new Map<string, string>()
      for (const file of [...sourceFiles('src'), 'bin/run.js', 'scripts/write-build-info.mjs', 'scripts/prepare.mjs']) {
        // Static imports that are not type-only, re-exports, and dynamic imports.
        const text = read(file)
        const specifiers = [
          ...[...text.matchAll(/^(?:import|export)\s+(?!type\b)[^'"]*?from\s+'([^']+)'/gm)].map((m) => m[1]),
          ...[...text.matchAll(/^import\s+'([^']+)'/gm)].map((m) => m[1]),
          ...[...text.matchAll(/\bimport\('([^']+)'\)/g)].map((m) => m[1]),
        ]
        for (const specifier of specifiers) {
          if (specifier.startsWith('.') || specifier.startsWith('node:') || builtins.has(specifier)) continue
          const name = specifier.startsWith('@') ? specifier.split('/').slice(0, 2).join('/') : specifier.split('/')[0]
          used.set(name, file)
        }
      }

      expect([...used.keys()], 'the scan found the runtime’s packages').to.include.members(['@oclif/core', 'kysely', 'pg', '@electric-sql/pglite', 'fastify'])
      for (const [name, file] of used) expect(runtime.has(name), `${name} (imported by ${file}) must be in dependencies`).to.equal(true)
    })
  })

  describe('scripts/prepare.mjs without TypeScript (npm ci --omit=dev)', () => {
    let dir: string

    beforeEach(() => {
      // A tree with no node_modules anywhere above it that could hold TypeScript.
      dir = mkdtempSync(join(tmpdir(), 'audit-logger-prepare-'))
      mkdirSync(join(dir, 'scripts'))
      cpSync(join(ROOT, 'scripts/prepare.mjs'), join(dir, 'scripts/prepare.mjs'))
      writeFileSync(join(dir, 'package.json'), '{"type": "module"}\n')
    })

    afterEach(() => rmSync(dir, {recursive: true, force: true}))

    function prepare() {
      const run = spawnSync(process.execPath, ['scripts/prepare.mjs'], {cwd: dir, encoding: 'utf8', env: {PATH: process.env.PATH}})
      return {code: run.status, stdout: run.stdout, stderr: run.stderr}
    }

    it('keeps a build that is there', () => {
      mkdirSync(join(dir, 'dist/commands'), {recursive: true})
      writeFileSync(join(dir, 'dist/commands/keep.js'), '')
      writeFileSync(join(dir, 'oclif.manifest.json'), '{}')
      expect(prepare()).to.deep.equal({code: 0, stdout: 'prepare: TypeScript is not installed (dev dependencies omitted): keeping the build in dist/\n', stderr: ''})
      expect(readdirSync(join(dir, 'dist/commands'))).to.deep.equal(['keep.js'])
    })

    it('stops with one clear line when there is no build', () => {
      expect(prepare()).to.deep.equal({
        code: 1,
        stdout: '',
        stderr: 'prepare: there is no build in dist/, and no TypeScript to make one: run `npm ci` with the dev dependencies first\n',
      })
    })
  })
})
