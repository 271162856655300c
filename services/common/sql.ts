// Values into SQL and TabSeparated text: escapes, identifiers, integers, dates. String literals are quoted by
// quoteString in clickhouse-compat.ts (ClickHouse 18.16 has no server-side query parameters).

const escapes: Record<string, string> = {
  '\\': '\\\\',
  "'": "\\'",
  '\0': '\\0',
  '\b': '\\b',
  '\f': '\\f',
  '\r': '\\r',
  '\n': '\\n',
  '\t': '\\t',
};

const special = /[\\'\0\b\f\r\n\t]/;
const specialAll = new RegExp(special.source, 'g');

/**
 * Backslash escapes for any JavaScript string: ClickHouse reads them back the same way inside a quoted literal and
 * in a TabSeparated field (services/common/tsv.ts), so one function serves both (quoteString, tsv.ts).
 */
export function escapeString(value: string): string {
  // Most values need no escape: testing first is cheaper than a replace that finds nothing.
  return (value.length <= SCANNED ? needsEscape(value) : special.test(value))
    ? value.replace(specialAll, (c) => escapes[c] ?? c)
    : value;
}

/**
 * Up to this length a value is tested by a loop: a regular expression's first test of a string made by joining
 * others (a template literal) cost 5-10x as much as the loop here, and each value of a new row is tested once.
 */
const SCANNED = 256;

/** Whether the text may hold a character `special` matches (and a few more control characters, which it leaves). */
function needsEscape(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 92 || c === 39 || c <= 13) return true;
  }
  return false;
}

/** An identifier (database, table, column, cluster name): only plain names are allowed, then back-quoted. */
export function quoteIdentifier(name: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new Error(`not a plain identifier: ${JSON.stringify(name)}`);
  return `\`${name}\``;
}

/** A safe integer literal; throws for anything else (NaN, fractions, beyond 2^53). */
export function sqlInteger(value: number): string {
  if (!Number.isSafeInteger(value)) throw new Error(`not a safe integer: ${String(value)}`);
  return String(value);
}

/** `YYYY-MM-DD hh:mm:ss` in UTC: the DateTime text every ClickHouse version accepts. */
export function toClickHouseDateTime(date: Date): string {
  return date.toISOString().slice(0, 19).replace('T', ' ');
}

export function toClickHouseDate(date: Date): string {
  return date.toISOString().slice(0, 10);
}
