// How deeply JSON nests. JSON.parse takes any depth, but what walks the result afterwards (JSON.stringify, a
// reviver) recurses and overflows the stack on a 100,000-deep array. A TLS report nests 5 deep; arbitrary depth can
// only hide under keys we do not know, which are kept as they came.

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

/** True when `value` nests arrays or objects more than `max` deep (walked without recursion). */
export function valueDepthExceeds(value: unknown, max: number = MAX_JSON_DEPTH): boolean {
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    if (depth + 1 > max) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v)) {
      if (typeof child === 'object' && child !== null) stack.push([child, depth + 1]);
    }
  }
  return false;
}
