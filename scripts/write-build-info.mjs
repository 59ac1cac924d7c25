#!/usr/bin/env node
// Runs during the Heroku build (npm's heroku-postbuild): records what only the build knows, for
// the status page's version panel. SOURCE_VERSION is the commit Heroku builds; STACK its stack.
import {writeFileSync} from 'node:fs'

const info = {
  commit: process.env.SOURCE_VERSION || undefined,
  builtAt: new Date().toISOString(),
  stack: process.env.STACK || undefined,
}
writeFileSync(new URL('../build-info.json', import.meta.url), `${JSON.stringify(info, null, 2)}\n`)
console.log(`build info: commit ${info.commit ?? 'unknown'}, stack ${info.stack ?? 'unknown'}, built ${info.builtAt}`)
