// The rules of the repository's layout, checked on every import: a service never imports another, services/common
// and schemas import no service, the CLI scripts only common and schemas, the tests and the bench not each other;
// and the drawing in docs/architecture.md is the current one (npm run imports).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fileImports, partOf, root, withGraph } from '../../dev/import-graph.ts';

const edges = fileImports().map(([from, to]) => ({ from, to, a: partOf(from), b: partOf(to) }));
const isService = (part: string): boolean => part.startsWith('services/') && part !== 'services/common';
const offending = (rule: (e: (typeof edges)[number]) => boolean): string[] =>
  edges.filter(rule).map((e) => `${e.from} imports ${e.to}`);

describe('the import rules', () => {
  it('finds the imports (the scan itself works)', () => {
    expect(edges.some((e) => e.a === 'services/api' && e.b === 'services/common')).toBe(true);
    expect(edges.length).toBeGreaterThan(300);
  });

  it('no service imports another service', () => {
    expect(offending((e) => isService(e.a) && isService(e.b) && e.a !== e.b)).toEqual([]);
  });

  it('services/common and schemas import no service', () => {
    expect(offending((e) => (e.a === 'services/common' || e.a === 'schemas') && isService(e.b))).toEqual([]);
    expect(offending((e) => e.a === 'schemas' && e.b !== 'schemas')).toEqual([]);
  });

  it('the CLI scripts import only common and schemas', () => {
    const allowed = new Set(['deploy/scripts', 'services/common', 'schemas']);
    expect(offending((e) => e.a === 'deploy/scripts' && !allowed.has(e.b))).toEqual([]);
  });

  it('production code imports nothing of dev/, bench/ or test/; the tests and the bench not each other', () => {
    const prod = (p: string): boolean => p.startsWith('services/') || p === 'schemas' || p.startsWith('deploy/');
    expect(offending((e) => prod(e.a) && ['dev', 'bench', 'test'].includes(e.b))).toEqual([]);
    expect(offending((e) => (e.a === 'test' && e.b === 'bench') || (e.a === 'bench' && e.b === 'test'))).toEqual([]);
  });

  it('the drawing in docs/architecture.md is current', () => {
    const doc = readFileSync(join(root, 'docs/architecture.md'), 'utf8');
    expect(withGraph(doc), 'run npm run imports').toBe(doc);
  });
});
