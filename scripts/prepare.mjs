#!/usr/bin/env node
// npm's `prepare` (after `npm ci` or `npm install`, and before `npm pack`): builds dist/ and the
// oclif manifest when TypeScript is installed. Without it (`npm ci --omit=dev` on a built tree, or
// a host that installs production dependencies only) the build already there is kept, since the
// CLI runs from dist/ alone; with no build either, it stops with one clear line.
import {spawnSync} from 'node:child_process'
import {existsSync} from 'node:fs'
import {createRequire} from 'node:module'
import {fileURLToPath} from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
let typescript = true
try {
  createRequire(import.meta.url).resolve('typescript')
} catch {
  typescript = false
}

if (typescript) {
  // npm sets npm_execpath for lifecycle scripts; run by hand, `npm` on the PATH does.
  const npm = process.env.npm_execpath
  const build = npm
    ? spawnSync(process.execPath, [npm, 'run', 'build'], {cwd: root, stdio: 'inherit'})
    : spawnSync('npm', ['run', 'build'], {cwd: root, stdio: 'inherit', shell: process.platform === 'win32'})
  process.exit(build.status ?? 1)
}

if (existsSync(new URL('../dist/commands', import.meta.url)) && existsSync(new URL('../oclif.manifest.json', import.meta.url))) {
  console.log('prepare: TypeScript is not installed (dev dependencies omitted): keeping the build in dist/')
} else {
  console.error('prepare: there is no build in dist/, and no TypeScript to make one: run `npm ci` with the dev dependencies first')
  process.exit(1)
}
