// The API's reads name every stored column through schemas/rows.ts (`Stored<Row, …>` and the shared sums), so a
// column renamed or retyped there fails `tsc` at each read. A row shape written inline would escape that check.
import { readFileSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { root } from '../../dev/import-graph.ts';

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/** `rows<{ … }>(` or `rows<Record<…>>(`: a row type written at the read instead of taken from schemas/. */
const INLINE_ROW = /\brows<\s*(\{|Record<)/g;

describe("the API's reads", () => {
  const files = sources(join(root, 'services/api'));

  it('are found (the scan itself works)', () => {
    const reads = files.reduce((n, f) => n + (readFileSync(f, 'utf8').match(/\brows</g)?.length ?? 0), 0);
    expect(reads).toBeGreaterThan(25);
    expect('db.rows<{ day: string }>(').toMatch(INLINE_ROW);
  });

  it('take their row types from schemas/rows.ts', () => {
    const inline = files.flatMap((f) =>
      [...readFileSync(f, 'utf8').matchAll(INLINE_ROW)].map((m) => `${relative(root, f)} at ${m.index}`),
    );
    expect(inline).toEqual([]);
  });
});
