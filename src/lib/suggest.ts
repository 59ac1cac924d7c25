/** Edit distance (insertions, deletions, substitutions, adjacent swaps) between two short strings. */
export function editDistance(a: string, b: string): number {
  const rows = Array.from({length: a.length + 1}, (_, i) => Array.from({length: b.length + 1}, (_, j) => (i === 0 ? j : j === 0 ? i : 0)))
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      rows[i][j] = Math.min(rows[i - 1][j] + 1, rows[i][j - 1] + 1, rows[i - 1][j - 1] + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) rows[i][j] = Math.min(rows[i][j], rows[i - 2][j - 2] + 1)
    }
  }

  return rows[a.length][b.length]
}

/**
 * The known name nearest to what was typed, if it is near enough to be a typo: at most a third of
 * its length away (at least 1, at most 3 edits), or the one name that starts with what was typed
 * (`db stat` → `db status`).
 */
export function closestName(typed: string, known: readonly string[]): string | undefined {
  const text = typed.toLowerCase().slice(0, 100)
  if (text === '') return undefined
  const starting = known.filter((name) => name.startsWith(text))
  if (starting.length === 1 && starting[0] !== text) return starting[0]
  let best: {name: string; distance: number} | undefined
  for (const name of known) {
    const distance = editDistance(text, name)
    if (!best || distance < best.distance) best = {name, distance}
  }

  const allowed = Math.min(3, Math.max(1, Math.floor(text.length / 3)))
  return best && best.distance <= allowed ? best.name : undefined
}
