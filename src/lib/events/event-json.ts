/*
 * A stored event's JSON text (the API's own bytes) made fit for one line, or for reading.
 */

/**
 * The text on one line: its line breaks and the indentation around them removed. Everything else
 * stays byte for byte (big numbers, key order, escapes), and the JSON means the same: a string
 * cannot hold a raw line break, so every one is whitespace between tokens.
 */
export function foldJsonText(text: string): string {
  return text.includes('\n') || text.includes('\r') ? text.replaceAll(/[ \t]*[\r\n][ \t\r\n]*/g, '') : text
}

// What JSON.stringify leaves raw but can fool a reader: DEL, C1 controls, line and paragraph separators, bidi overrides and isolates.
const MISLEADING = /[\u007F-\u009F\u2028\u2029\u202A-\u202E\u2066-\u2069]/g

/**
 * The event pretty-printed (two-space indent), for people; undefined when the text is not JSON.
 * Characters that could reorder or hide what a reader sees are written as \u escapes, which JSON
 * reads back as the same characters (JSON.stringify already escapes the C0 controls).
 */
export function prettyJson(text: string): string | undefined {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return undefined
  }

  return JSON.stringify(value, null, 2).replaceAll(MISLEADING, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`)
}
