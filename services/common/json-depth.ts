// How deeply a JSON text nests, found by one pass over its characters, before anything parses it: JSON.parse
// takes any depth, but what walks the result afterwards (validation, JSON.stringify) recurses and overflows
// the stack on a 100,000-deep array. A TLS report nests 5 deep.

/** Depth past which a JSON text is refused, in the worker and when a stored text is read back. */
export const MAX_JSON_DEPTH = 64;

/** True when `text` opens more than `max` arrays or objects inside each other (brackets in strings ignored). */
export function jsonDepthExceeds(text: string, max: number = MAX_JSON_DEPTH): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // a backslash escapes the next character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}
