#!/usr/bin/env node
// Part of `npm run build`, after tsc: bundles Kysely into one file, dist/vendor/kysely.js, and
// points the built code's `from 'kysely'` imports at it. Kysely ships its ESM build as 263
// modules, and resolving and linking them cost every command ~155 ms of its start (one file:
// ~25 ms); see README, Performance. Only dist/ changes: the sources, the tests and the benches
// still import the package itself, and the package stays a dependency (its types, and tsx).
import {readFileSync, readdirSync, writeFileSync} from 'node:fs'
import {dirname, join, relative, sep} from 'node:path'
import {fileURLToPath} from 'node:url'

import {build} from 'esbuild'

const dist = fileURLToPath(new URL('../dist', import.meta.url))
const bundle = join(dist, 'vendor', 'kysely.js')

await build({
  entryPoints: [fileURLToPath(import.meta.resolve('kysely'))],
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  outfile: bundle,
  legalComments: 'eof',
  logLevel: 'warning',
})

// The specifier in a static import or export (`from 'kysely'`) or a dynamic one (`import('kysely')`).
const SPECIFIER = /(\bfrom\s*|\bimport\s*\(\s*)(['"])kysely\2/g

function builtFiles(dir) {
  return readdirSync(dir, {withFileTypes: true}).flatMap((entry) => {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) return path === dirname(bundle) ? [] : builtFiles(path)
    return entry.name.endsWith('.js') ? [path] : []
  })
}

let rewritten = 0
for (const file of builtFiles(dist)) {
  const text = readFileSync(file, 'utf8')
  let target = relative(dirname(file), bundle).split(sep).join('/')
  if (!target.startsWith('.')) target = `./${target}`
  const changed = text.replaceAll(SPECIFIER, (_, before, quote) => `${before}${quote}${target}${quote}`)
  if (changed === text) continue
  writeFileSync(file, changed)
  rewritten++
}

// Two copies of Kysely in one process would not know each other's objects: none may be left.
const left = builtFiles(dist).filter((file) => /['"]kysely(\/[^'"]*)?['"]/.test(readFileSync(file, 'utf8')))
if (left.length > 0 || rewritten === 0) {
  console.error(`vendor-kysely: ${left.length > 0 ? `still importing the kysely package: ${left.map((f) => relative(dist, f)).join(', ')}` : 'no built file imports kysely'}`)
  process.exit(1)
}

console.log(`dist/vendor/kysely.js: Kysely in one file, imported by ${rewritten} built files`)
