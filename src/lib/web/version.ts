import {execFileSync} from 'node:child_process'
import {readFileSync} from 'node:fs'

import type {Env} from '../config.js'

/** Everything the version panel shows; a fact nobody recorded reads "unknown". */
export interface VersionInfo {
  version: string
  commit: string
  commitShort: string
  release: string
  releaseCreatedAt: string
  builtAt: string
  stack: string
  appName: string
  dynoId: string
}

/** Written during the Heroku build by scripts/write-build-info.mjs (npm's heroku-postbuild). */
export interface BuildInfo {
  commit?: string
  builtAt?: string
  stack?: string
}

const UNKNOWN = 'unknown'

function readBuildInfo(path: string): BuildInfo {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as BuildInfo
  } catch {
    return {}
  }
}

/** Locally there is no build info; git knows the commit cheaply. */
function gitCommit(cwd: string): string | undefined {
  try {
    return execFileSync('git', ['rev-parse', 'HEAD'], {cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 2000}).trim() || undefined
  } catch {
    return undefined
  }
}

/**
 * Build-time facts from the build info file, run-time facts from Heroku's dyno metadata
 * (`heroku labs:enable runtime-dyno-metadata`). Read once at start-up.
 */
export function readVersionInfo(env: Env, options: {buildInfoPath: string; projectDir: string; packageVersion: string}): VersionInfo {
  const build = readBuildInfo(options.buildInfoPath)
  const commit = build.commit || env.HEROKU_SLUG_COMMIT || env.SOURCE_VERSION || gitCommit(options.projectDir) || UNKNOWN
  return {
    version: options.packageVersion,
    commit,
    commitShort: commit === UNKNOWN ? UNKNOWN : commit.slice(0, 7),
    release: env.HEROKU_RELEASE_VERSION || UNKNOWN,
    releaseCreatedAt: env.HEROKU_RELEASE_CREATED_AT || UNKNOWN,
    builtAt: build.builtAt || UNKNOWN,
    stack: build.stack || env.STACK || UNKNOWN,
    appName: env.HEROKU_APP_NAME || UNKNOWN,
    dynoId: env.HEROKU_DYNO_ID || UNKNOWN,
  }
}
