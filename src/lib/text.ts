/** Text helpers shared by the CLI's tables and messages and the status page. */

/**
 * Characters that can act on a terminal or forge a line instead of being shown: C0 controls
 * (ESC, BEL, CR, backspace…), DEL, C1 controls, the Unicode line and paragraph separators, and
 * the bidirectional overrides and isolates (which reorder what a reader sees).
 */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001F\u007F-\u009F\u2028\u2029\u202A-\u202E\u2066-\u2069]/g

/** `\x1B`-style for the one-byte controls, `\u2028`-style for the rest: visible, and never acted on. */
function escapeOne(char: string): string {
  const code = char.charCodeAt(0)
  return code < 0x100 ? `\\x${code.toString(16).toUpperCase().padStart(2, '0')}` : `\\u${code.toString(16).toUpperCase().padStart(4, '0')}`
}

/** Every control character (newlines included) escaped visibly, so text from outside cannot act on a terminal. */
export function escapeControls(text: string): string {
  return text.replaceAll(CONTROL, escapeOne)
}

/**
 * One safe line: whitespace runs (newlines included) folded to one space, any other control
 * character escaped visibly, cut to `max` characters with an ellipsis. Cutting comes first, so
 * a huge value costs no more than `max` characters of work downstream.
 */
export function oneLine(text: string | null | undefined, max = 300): string {
  // Cut generously before the regexes so a megabyte of input is not scanned in full.
  const head = (text ?? '').slice(0, max * 4 + 1024)
  const flat = escapeControls(head.replaceAll(/[\s\u0085]+/g, ' ').trim())
  return flat.length > max || (text ?? '').length > head.length ? `${flat.slice(0, max - 1)}…` : flat
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

const JSON_UNESCAPED_CONTROL = /[\u007F-\u009F\u2028\u2029\u202A-\u202E\u2066-\u2069]/g

/**
 * JSON (indented by two) that parses back to the same value but holds no character that can act
 * on a terminal: JSON.stringify escapes C0 controls; DEL, C1 controls, the line separators and the
 * bidirectional controls it leaves raw are written as \u escapes here.
 */
export function jsonText(value: unknown): string {
  return JSON.stringify(value, null, 2).replaceAll(JSON_UNESCAPED_CONTROL, (char) => `\\u${char.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}`)
}
