#!/usr/bin/env node
// Part of `npm run build`: runs initdb once, here, inside PGlite, and keeps the empty cluster as
// dist/embedded-cluster.tar.gz. A new embedded data directory is unpacked from it instead of
// running initdb on the user's machine, which took ~4 s and ~900 MB of memory (README, The
// database). The PGlite that makes it is the one installed, so the two always match.
import {Buffer} from 'node:buffer'
import {writeFileSync} from 'node:fs'
import {fileURLToPath} from 'node:url'

import {PGlite} from '@electric-sql/pglite'

const target = fileURLToPath(new URL('../dist/embedded-cluster.tar.gz', import.meta.url))
const pglite = await PGlite.create()
const dump = await pglite.dumpDataDir('gzip')
await pglite.close()
writeFileSync(target, Buffer.from(await dump.arrayBuffer()))
console.log(`dist/embedded-cluster.tar.gz: an empty embedded cluster, ${(dump.size / 1024 / 1024).toFixed(1)} MB`)
