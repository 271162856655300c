// In-process figures: the floor (gunzip + JSON.parse + schema validation), our worker's whole CPU path per
// report, and the decompression comparison (node's zlib vs pako) that decided our choice.
import { gzipSync, gunzipSync } from 'node:zlib';
import { ungzip } from 'pako';
import { reportSchema } from '../schemas/report.ts';
import { processReportJob } from '../services/worker/process-job.ts';
import { makeReport, rng } from '../dev/report-mix.ts';

export interface MicroResult {
  reports: number;
  meanGzipBytes: number;
  meanJsonBytes: number;
  floorPerSec: number;
  workerPathPerSec: number;
  workerPathVsFloor: number;
  zlibPerSec: number;
  pakoPerSec: number;
  zlibVsPako: number;
  smallZlibPerSec: number;
  smallPakoPerSec: number;
}

/**
 * Items per second of each function over the items, best of 5 rounds of about ms/5 each. The functions take turns
 * round by round, so a ratio between them is measured in the same moments of this machine's drifting speed.
 */
function rates(items: Buffer[], fns: Array<(b: Buffer) => void>, ms = 2500): number[] {
  const best = fns.map(() => 0);
  for (let round = 0; round < 5; round++)
    fns.forEach((fn, i) => {
      let n = 0;
      const start = process.hrtime.bigint();
      const deadline = start + BigInt(Math.round(ms / 5)) * 1_000_000n;
      while (process.hrtime.bigint() < deadline) {
        for (const b of items) fn(b);
        n += items.length;
      }
      const secs = Number(process.hrtime.bigint() - start) / 1e9;
      best[i] = Math.max(best[i]!, n / secs);
    });
  return best;
}

export function runMicro(count = 400): MicroResult {
  const random = rng(42);
  const bodies = Array.from({ length: count }, (_, i) => gzipSync(JSON.stringify(makeReport(random, i))));
  const small = Array.from({ length: count }, (_, i) =>
    gzipSync(JSON.stringify(makeReport(random, i, { maxPolicies: 1, maxDetails: 2 }))),
  );
  const jobs = bodies.map((b, i) => ({
    v: 1,
    receiptId: `bench-${i}`,
    receivedAt: '2025-01-01T00:00:00.000Z',
    channel: 'https',
    bodyBase64: b.toString('base64'),
  }));
  const jobIndex = new Map<Buffer, (typeof jobs)[number] | undefined>(bodies.map((b, i) => [b, jobs[i]]));

  const [floorPerSec, workerPathPerSec] = rates(bodies, [
    (b) => {
      const parsed: unknown = JSON.parse(gunzipSync(b).toString('utf8'));
      if (!reportSchema.safeParse(parsed).success) throw new Error('bench report does not validate');
    },
    (b) => {
      const r = processReportJob(jobIndex.get(b), 'bench', { maxDecompressedBytes: 50 * 1024 * 1024 });
      if (r.outcome !== 'stored') throw new Error(`bench report rejected: ${r.reason}`);
    },
  ]) as [number, number];
  const [zlibPerSec, pakoPerSec] = rates(bodies, [(b) => void gunzipSync(b), (b) => void ungzip(b)]) as [
    number,
    number,
  ];
  const [smallZlibPerSec, smallPakoPerSec] = rates(small, [(b) => void gunzipSync(b), (b) => void ungzip(b)]) as [
    number,
    number,
  ];
  return {
    reports: count,
    meanGzipBytes: Math.round(bodies.reduce((a, b) => a + b.length, 0) / count),
    meanJsonBytes: Math.round(bodies.reduce((a, b) => a + gunzipSync(b).length, 0) / count),
    floorPerSec,
    workerPathPerSec,
    workerPathVsFloor: floorPerSec / workerPathPerSec,
    zlibPerSec,
    pakoPerSec,
    zlibVsPako: zlibPerSec / pakoPerSec,
    smallZlibPerSec,
    smallPakoPerSec,
  };
}
