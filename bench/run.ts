// npm run bench: measures, prints a Markdown table and writes bench/results/latest.{json,md}. Asserts no timing.
// A partial run (--quick, --micro-only, --storage-only, --phase <name part>) writes partial.{json,md} instead: latest.md, committed and
// written into docs/performance.md, is always a full run.
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runE2e, type PhaseResult, type SmtpFloor } from './e2e.ts';
import { writeLatestRun } from '../dev/bench-docs.ts';
import { runMicro } from './micro.ts';
import { mixReport, rng } from '../dev/report-mix.ts';
import { runStorageFloors, type StorageFloors, type StorageMeasure } from './storage.ts';
import { scaleBench } from './scale.ts';
import { mailboxBench } from './mailbox.ts';
import { apiBench } from './api.ts';
import { largeReportAccount } from './large-report.ts';

const here = dirname(fileURLToPath(import.meta.url));
const quick = process.argv.includes('--quick');
if (process.argv.includes('--scale')) {
  // Reads at scale are their own run (bench/scale.ts): a history of tens of millions of rows, no load.
  await scaleBench(quick, (l) => console.error(l));
  process.exit(0);
}
if (process.argv.includes('--api')) {
  const at = process.argv.indexOf('--api-baseline');
  await apiBench(quick, at >= 0 ? process.argv[at + 1] : undefined, (l) => console.error(l));
  process.exit(0);
}
if (process.argv.includes('--mailbox')) {
  // Reading mailboxes (bench/mailbox.ts): Maildir and IMAP, with our own Dovecot.
  await mailboxBench(quick, (l) => console.error(l));
  process.exit(0);
}
/** The first sample at or after each 5 s mark of a [seconds, value] series. */
function everyFiveSeconds(series: Array<[number, number]>): number[] {
  const out: number[] = [];
  for (const [t, v] of series) if (t >= out.length * 5) out.push(v);
  return out;
}

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

const log = (l: string): void => console.error(l);

const microOnly = process.argv.includes('--micro-only');
const storageOnly = process.argv.includes('--storage-only');
const phaseAt = process.argv.indexOf('--phase');
const only = phaseAt >= 0 ? process.argv[phaseAt + 1] : undefined;

// A large report in the worker, step by step (in process, before anything else runs).
if (!only && !storageOnly) {
  const large = largeReportAccount(quick ? [1_000_000, 10_000_000] : undefined, quick ? 3 : 5);
  // The worker's CPU: decode + validate + rows + TSV (gunzip and JSON.parse are inside decode).
  const total = (k: number): number => large.steps.slice(2).reduce((a, s) => a + s.ms[k]!, 0);
  const last = large.jsonMb.length - 1;
  lines.push(
    '',
    `## A large report in the worker, step by step (in process, one core; CPU ms, median of ${quick ? 3 : 5})`,
    '',
    `| step | ${large.jsonMb.map((mb, k) => `${f(mb, 1)} MB of JSON (${f(large.rows[k]!)} rows)`).join(' | ')} |`,
    `| --- | ${large.jsonMb.map(() => '---:').join(' | ')} |`,
    ...large.steps.map((s) => `| ${s.step} | ${s.ms.map((ms) => `${f(ms, 1)} ms`).join(' | ')} |`),
    `| **the worker's CPU** (decode + validate + rows + TSV) | ${large.jsonMb.map((_, k) => `**${f(total(k), 1)} ms**`).join(' | ')} |`,
    `| per MB of JSON | ${large.jsonMb.map((mb, k) => `${f(total(k) / mb, 1)} ms`).join(' | ')} |`,
    '',
    `Growth from the smallest to the largest: ${f(large.jsonMb[last]! / large.jsonMb[0]!, 1)}× the JSON, ${f(total(last) / total(0), 1)}× the CPU.`,
  );
}
let storage: StorageFloors | undefined;
const floorOf = (format: string, stack: boolean): StorageMeasure =>
  storage!.measures.find((m) => m.format === format && m.malloc.startsWith('stack') === stack)!;
if (!microOnly && !only) {
  const random = rng(7);
  const bodies = Array.from({ length: quick ? 2000 : 10000 }, (_, i) => mixReport(random, i + 1).body);
  storage = await runStorageFloors(bodies, { rounds: quick ? 1 : 2, log });
  const tsv = floorOf('TabSeparated', true);
  const json = floorOf('JSONEachRow', true);
  const tsvDefaults = floorOf('TabSeparated', false);
  lines.push(
    '',
    `## Storage floor: ${f(storage.reports)} reports' rows (${f(storage.rows)}) made in advance, inserted in ${f(storage.batchRows)}-row batches, nothing else running`,
    '',
    '| insert format | ClickHouse jemalloc | reports/s | ClickHouse CPU/report | client CPU/report (encode + send) |',
    '| --- | --- | ---: | ---: | ---: |',
    ...storage.measures.map(
      (m) =>
        `| ${m.format} | ${m.malloc} | ${f(m.reportsPerSec)} | ${f(m.clickhouseCpuMsPerReport, 3)} ms | ${f(m.clientCpuMsPerReport, 3)} ms |`,
    ),
    '',
    `TabSeparated vs JSONEachRow: client CPU ${f(tsv.clientCpuMsPerReport / json.clientCpuMsPerReport, 2)}×, ClickHouse CPU ${f(tsv.clickhouseCpuMsPerReport / json.clickhouseCpuMsPerReport, 2)}×. ` +
      `The stack's jemalloc setting vs defaults: ClickHouse CPU ${f(tsv.clickhouseCpuMsPerReport / tsvDefaults.clickhouseCpuMsPerReport, 2)}×, ` +
      `peak RSS ${Object.entries(storage.peakRssMb)
        .map(([k, v]) => `${v} MB (${k})`)
        .join(' vs ')}.`,
    '',
    `The read tables' materialized views (schemas/clickhouse/0005 and 0008) and the worker's look-up and fingerprints of stored reports (0009), for reads at scale, at insert, against the same inserts without them: ${f(storage.readTables.reportsPerSecRatio, 2)}× the reports/s, ${f(storage.readTables.clickhouseCpuRatio, 2)}× the ClickHouse CPU per report.`,
  );
}

const e2e = microOnly || storageOnly ? undefined : await runE2e({ quick, log, only });
if (e2e) {
  const floorCpuMs = 1000 / micro.floorPerSec;
  const cores = (await import('node:os')).cpus().length;
  const storageFloor = storage ? floorOf('TabSeparated', true).reportsPerSec : NaN;
  lines.push(
    '',
    `## End to end on this machine (everything on its ${cores} cores: Redis, ClickHouse, the services and the load generator)`,
    '',
    `"vs storage floor": stored/s over the storage floor's ${f(storageFloor)} reports/s (TabSeparated, the stack's setting). "All CPU/report": every process's CPU (services, ClickHouse, Redis, the load generator) per stored report; "CPU ceiling": the ${cores} cores over that, the reports/s this machine could store if CPU were the only limit.`,
    '',
    '| phase | accepted/s | stored/s | vs storage floor | lost | sessions diff | worker CPU/report | × parse floor | receiver CPU/report | ClickHouse / Redis CPU/report | load generator / all CPU/report | CPU ceiling | peak RSS worker / http / smtp | max queue | latency p50 / p95 / p99 |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |',
    ...e2e.phases.map((p) => {
      const recv = p.name.startsWith('smtp')
        ? (p.cpuMsPerReport['smtp-receiver'] ?? 0)
        : (p.cpuMsPerReport['http-receiver'] ?? 0) +
          (p.name.includes('smtp') ? (p.cpuMsPerReport['smtp-receiver'] ?? 0) : 0);
      const w = p.cpuMsPerReport.worker ?? 0;
      const all = Object.values(p.cpuMsPerReport).reduce((a, b) => a + b, 0);
      const lat = p.latencyMs ? `${f(p.latencyMs.p50)} / ${f(p.latencyMs.p95)} / ${f(p.latencyMs.p99)} ms` : '';
      return `| ${p.name} | ${f(p.acceptedPerSec)} | ${f(p.storedPerSec)} | ${f(p.storedPerSec / storageFloor, 2)} | ${p.lost} | ${p.sessionDifference} | ${f(w, 3)} ms | ${f(w / floorCpuMs, 2)} | ${f(recv, 3)} ms | ${f(p.cpuMsPerReport.clickhouse ?? 0, 3)} / ${f(p.cpuMsPerReport.redis ?? 0, 3)} ms | ${f(p.cpuMsPerReport['load generator'] ?? 0, 3)} / ${f(all, 3)} ms | ${f((cores * 1000) / all)}/s | ${p.peakRssMb.worker ?? 0} / ${p.peakRssMb['http-receiver'] ?? 0} / ${p.peakRssMb['smtp-receiver'] ?? 0} MB | ${f(p.maxQueueDepth)} | ${lat} |`;
    }),
    ...smtpAgainstHttps(e2e),
    '',
    'Errors by status: ' + e2e.phases.map((p) => `${p.name}: ${JSON.stringify(p.errors)}`).join('; '),
    '',
    'Queue depth (jobs waiting or active) every 5 s from the start of each phase until drained; every 0.5 s in the JSON:',
    '',
    ...e2e.phases.map(
      (p) =>
        `- ${p.name}: ${everyFiveSeconds(p.queueDepth)
          .map((d) => f(d))
          .join(' → ')}`,
    ),
  );
}
const markdown = lines.join('\n');

/** Mail against HTTPS in this run (issue 29's targets), and against smtp-server alone under the same load. */
function smtpAgainstHttps(e2e: { phases: PhaseResult[]; smtpFloor?: SmtpFloor }): string[] {
  const https = e2e.phases.find((p) => p.name === 'https c=50');
  const smtp = e2e.phases.find((p) => p.name === 'smtp pooled STARTTLS c=50');
  const floor = e2e.smtpFloor;
  const out: string[] = [];
  if (https && smtp) {
    const recv = (smtp.cpuMsPerReport['smtp-receiver'] ?? 0) / (https.cpuMsPerReport['http-receiver'] ?? NaN);
    out.push(
      '',
      `SMTP against HTTPS (c=50, this run): stored/s ${f(smtp.storedPerSec / https.storedPerSec, 2)}×, receiver CPU per report ${f(recv, 2)}×.`,
    );
  }
  if (floor && smtp)
    out.push(
      '',
      `smtp-server alone (bench/smtp-floor.ts: the receiver's TLS and server settings, a no-op onData) under the same 50 pooled STARTTLS connections: ${f(floor.acceptedPerSec)} mails/s at ${f(floor.serverCpuMsPerMail, 3)} ms of its CPU per mail (load generator ${f(floor.loadGeneratorCpuMsPerMail, 3)} ms); the SMTP receiver: ${f(smtp.acceptedPerSec / floor.acceptedPerSec, 2)}× its mails/s, ${f((smtp.cpuMsPerReport['smtp-receiver'] ?? 0) / floor.serverCpuMsPerMail, 2)}× its CPU per mail.`,
    );
  return out;
}
console.log(markdown);
await mkdir(join(here, 'results'), { recursive: true });
const name = quick || microOnly || storageOnly || only ? 'partial' : 'latest';
await writeFile(
  join(here, `results/${name}.json`),
  JSON.stringify({ at: new Date().toISOString(), quick, micro, storage, e2e }, null, 2),
);
await writeFile(join(here, `results/${name}.md`), markdown + '\n');
// A full run's tables go into docs/performance.md too.
if (name === 'latest') await writeLatestRun(markdown + '\n');
