import os from 'node:os'
import path from 'node:path'

import type {Env} from '../config.js'

const APP = 'audit-logger'

/**
 * Where the embedded database lives: AUDIT_LOGGER_DATA_DIR, else $XDG_DATA_HOME/audit-logger,
 * else the platform's per-user data folder (~/.local/share/audit-logger on Linux).
 * (Its own module, so reading the configuration never loads PGlite.)
 */
export function defaultDataDir(env: Env = process.env, system: {platform?: NodeJS.Platform; homedir?: string} = {}): string {
  const explicit = env.AUDIT_LOGGER_DATA_DIR?.trim()
  if (explicit) return path.resolve(explicit)
  // The XDG spec says a relative value is invalid and must be ignored.
  const xdg = env.XDG_DATA_HOME?.trim()
  if (xdg && path.isAbsolute(xdg)) return path.join(xdg, APP)
  const home = system.homedir ?? os.homedir()
  switch (system.platform ?? process.platform) {
    case 'darwin': {
      return path.join(home, 'Library', 'Application Support', APP)
    }

    case 'win32': {
      return path.join(env.LOCALAPPDATA?.trim() || path.join(home, 'AppData', 'Local'), APP)
    }

    default: {
      return path.join(home, '.local', 'share', APP)
    }
  }
}
