// The figures in docs/performance.md are the bench's last full run (bench/results/latest.md), as the bench wrote them.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PERFORMANCE_DOC, withLatestRun } from '../../dev/bench-docs.ts';
import { root } from '../../dev/import-graph.ts';

describe('docs/performance.md', () => {
  it('holds the latest full run exactly as npm run bench writes it', async () => {
    const doc = await readFile(PERFORMANCE_DOC, 'utf8');
    const latest = await readFile(join(root, 'bench/results/latest.md'), 'utf8');
    expect(await withLatestRun(doc, latest)).toBe(doc);
    // And the check can fail: another run's figures would change the doc.
    expect(await withLatestRun(doc, latest.replace(/\d/, '9'))).not.toBe(doc);
  });
});
