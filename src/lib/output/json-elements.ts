/**
 * Finds the top-level elements of a JSON array in its UTF-8 bytes, so each event can be written
 * exactly as the API sent it, one per line, instead of being serialized again (JSON.stringify of
 * every event cost more than parsing the page did).
 *
 * Only for text that JSON.parse has already accepted: validity is assumed, not checked, so the
 * scan just tracks strings (and their escapes) and nesting. The caller compares the count with the
 * parsed array and falls back to JSON.stringify whenever anything is not as expected.
 */

const isSpace = (c: number) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09

/**
 * [start, end) byte offsets of each element, as a flat array (start0, end0, start1, end1…);
 * undefined when the bytes are not a JSON array as expected.
 */
export function jsonArrayElements(bytes: Uint8Array): Int32Array | undefined {
  const n = bytes.length
  let i = 0
  while (i < n && isSpace(bytes[i])) i++
  if (bytes[i] !== 0x5b /* [ */) return undefined
  i++
  while (i < n && isSpace(bytes[i])) i++
  const spans: number[] = []
  if (bytes[i] === 0x5d /* ] */) return new Int32Array(0)
  for (;;) {
    const start = i
    let depth = 0
    for (; i < n; i++) {
      const c = bytes[i]
      if (c === 0x22 /* " */) {
        for (i++; i < n; i++) {
          const d = bytes[i]
          if (d === 0x5c /* \ */) i++
          else if (d === 0x22) break
        }
      } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
        depth++
      } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
        if (depth === 0) break // the array's own closing bracket
        depth--
        if (depth === 0) {
          i++
          break
        }
      } else if (depth === 0 && c === 0x2c /* , */) {
        break
      }
    }

    let end = i
    while (end > start && isSpace(bytes[end - 1])) end--
    if (end === start) return undefined
    spans.push(start, end)
    while (i < n && isSpace(bytes[i])) i++
    if (bytes[i] === 0x2c) {
      i++
      while (i < n && isSpace(bytes[i])) i++
      continue
    }

    if (bytes[i] === 0x5d) break
    return undefined
  }

  return Int32Array.from(spans)
}
