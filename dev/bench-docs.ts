// docs/performance.md's "latest full run" is written by `npm run bench` from bench/results/latest.md, never pasted:
// a full run calls writeLatestRun; test/unit/bench-docs.test.ts checks the two still agree.
import { readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import * as prettier from 'prettier';

export const PERFORMANCE_DOC = join(resolve(import.meta.dirname, '..'), 'docs/performance.md');
const START = '<!-- bench:latest (bench/results/latest.md) -->';
const END = '<!-- /bench:latest -->';

/** The doc with the run's tables (their headings one level under the doc's section) between the markers. */
export async function withLatestRun(doc: string, latest: string): Promise<string> {
  const a = doc.indexOf(START);
  const b = doc.indexOf(END);
  if (a < 0 || b < a) throw new Error(`docs/performance.md has no ${START} … ${END} markers`);
  const tables = latest.trim().replace(/^## /gm, '#### ');
  const text = `${doc.slice(0, a + START.length)}\n\n${tables}\n\n${doc.slice(b)}`;
  const options = (await prettier.resolveConfig(PERFORMANCE_DOC)) ?? {};
  return await prettier.format(text, { ...options, filepath: PERFORMANCE_DOC });
}

export async function writeLatestRun(latest: string): Promise<void> {
  await writeFile(PERFORMANCE_DOC, await withLatestRun(await readFile(PERFORMANCE_DOC, 'utf8'), latest));
}
