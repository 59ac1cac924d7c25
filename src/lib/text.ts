/** Text helpers shared by the CLI's tables and messages and the status page. */

/** Whitespace runs (newlines included) folded to one space; cut to `max` characters with an ellipsis. */
export function oneLine(text: string | null | undefined, max = 300): string {
  const flat = (text ?? '').replaceAll(/\s+/g, ' ').trim()
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat
}

/**
 * A fixed-width table, two spaces between columns; the columns named in `rightAligned` are
 * right-aligned (numbers), the last column is left unpadded so long notes do not pad every line.
 */
export function renderTable(header: string[], rows: string[][], rightAligned: ReadonlySet<number> = new Set()): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)))
  const format = (cells: string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : rightAligned.has(i) ? cell.padStart(widths[i]) : cell.padEnd(widths[i])))
      .join('  ')
      .trimEnd()
  return [format(header), ...rows.map(format)]
}
