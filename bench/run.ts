// npm run bench: measures, prints a Markdown table and writes bench/results/latest.json. Asserts no timing.
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runMicro } from './micro.ts';

const here = dirname(fileURLToPath(import.meta.url));
const quick = process.argv.includes('--quick');
const f = (n: number, digits = 0): string =>
  n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

const micro = runMicro(quick ? 150 : 400);
const lines = [
  `## In-process (one core), ${micro.reports} synthetic reports, mean ${f(micro.meanGzipBytes)} B gzipped / ${f(micro.meanJsonBytes)} B JSON`,
  '',
  '| measure | reports/s | ratio |',
  '| --- | ---: | ---: |',
  `| floor: gunzip + JSON.parse + zod schema | ${f(micro.floorPerSec)} | 1.00 |`,
  `| worker path: decode + validate + normalize + rows | ${f(micro.workerPathPerSec)} | ${f(micro.workerPathVsFloor, 2)}× the floor's CPU |`,
  `| gunzip, node zlib | ${f(micro.zlibPerSec)} | ${f(micro.zlibVsPako, 2)}× pako |`,
  `| gunzip, pako | ${f(micro.pakoPerSec)} | 1.00 |`,
  `| gunzip small reports (1 policy), zlib / pako | ${f(micro.smallZlibPerSec)} / ${f(micro.smallPakoPerSec)} | ${f(micro.smallZlibPerSec / micro.smallPakoPerSec, 2)}× |`,
];
const markdown = lines.join('\n');
console.log(markdown);
await mkdir(join(here, 'results'), { recursive: true });
await writeFile(
  join(here, 'results/latest.json'),
  JSON.stringify({ at: new Date().toISOString(), quick, micro }, null, 2),
);
await writeFile(join(here, 'results/latest.md'), markdown + '\n');
