import {createHash} from 'node:crypto'

/**
 * The digest a SUCCESS day stores: SHA-256, hex, over the day's event ids sorted in code-unit
 * order (Heroku's ids are ASCII UUIDs, so that is byte order) and joined by '\n', no trailing
 * newline. Sorting makes it independent of the order the API returns events in, so a later fetch
 * of an unchanged day, or the ids of its exported file, give the same digest:
 *
 *   zcat 2025-09-28.ndjson.gz | jq -r .id | LC_ALL=C sort | head -c -1 | sha256sum
 *
 * A day without events has the digest of the empty string (e3b0c442…). Holding a day's ids as
 * strings is cheap next to the events themselves (36 bytes each: 100,000 events ≈ 4 MB).
 */
export function eventsDigest(ids: readonly string[]): string {
  // One update over the joined ids: a few MB at most, and far cheaper than an update per id.
  return createHash('sha256').update(ids.toSorted().join('\n')).digest('hex')
}

/** The first characters of a digest, enough to tell days apart in a table. */
export function shortDigest(digest: string | null | undefined, length = 12): string {
  return digest ? digest.slice(0, length) : '-'
}
