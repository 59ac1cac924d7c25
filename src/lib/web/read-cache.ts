import type {ChangeFeed} from '../db/change-feed.js'

export interface ReadCache {
  /** `load()`'s value for `key`, from memory while the table has not changed since it was loaded. */
  get<T>(key: string, load: () => Promise<T>): Promise<T>
}

/**
 * The status page's reads, kept until the change feed says the table changed. Without a feed, or
 * while it cannot see changes, every read goes to the database. Concurrent readers of one key
 * share one query. An entry is tagged with the version read *before* its query ran, so a change
 * committed during the query makes it stale at once rather than hiding the change.
 */
export function createReadCache(feed: ChangeFeed | undefined, maxEntries = 64): ReadCache {
  const entries = new Map<string, {version: number; value: Promise<unknown>}>()
  return {
    get<T>(key: string, load: () => Promise<T>): Promise<T> {
      const version = feed?.version()
      if (version === undefined) return load()
      const hit = entries.get(key)
      entries.delete(key) // re-inserted below: the Map's order is least recently used first
      if (hit && hit.version === version) {
        entries.set(key, hit)
        return hit.value as Promise<T>
      }

      const value = load()
      entries.set(key, {version, value})
      if (entries.size > maxEntries) entries.delete(entries.keys().next().value!)
      // A failed read is not kept: the next request tries the database again.
      value.catch(() => {
        if (entries.get(key)?.value === value) entries.delete(key)
      })
      return value
    },
  }
}

/** A cache key from a read's name and arguments. */
export function cacheKey(...parts: unknown[]): string {
  return JSON.stringify(parts)
}
