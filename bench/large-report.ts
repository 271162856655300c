// Where a large report's worker time goes: each step of the worker's path alone, in process, at three sizes, so the
// cost per MB (and whether it stays flat as reports grow) is visible. CPU time, median of the rounds.
import { gunzipSync } from 'node:zlib';
import { largeReport, rng } from '../dev/report-mix.ts';
import { TABLE_COLUMNS, type TableName } from '../schemas/rows.ts';
import { encodeTsvPieces } from '../services/common/tsv.ts';
import { decodeReport } from '../services/worker/decode.ts';
import { normalizeReport } from '../services/worker/normalize.ts';
import { processReportJob } from '../services/worker/process-job.ts';

export interface LargeReportStep {
  step: string;
  /** CPU ms at each size, in the order of `LargeReportAccount.sizes`. */
  ms: number[];
}

export interface LargeReportAccount {
  /** MB of JSON of each size measured. */
  jsonMb: number[];
  rows: number[];
  steps: LargeReportStep[];
}

const LIMITS = { maxPolicies: 100_000, maxFailureDetails: 1_000_000 };

function cpuMs(fn: () => void): number {
  const start = process.cpuUsage();
  fn();
  const d = process.cpuUsage(start);
  return (d.user + d.system) / 1000;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export function largeReportAccount(sizes = [1_000_000, 3_000_000, 10_000_000], rounds = 5): LargeReportAccount {
  const random = rng(11);
  const names = [
    'gunzip',
    'JSON.parse',
    'decode (gunzip, UTF-8, JSON.parse, checks)',
    'validate and normalize (zod)',
    'rows (the whole worker path less the two above)',
    'TSV encoding of the rows',
  ];
  const out: LargeReportAccount = { jsonMb: [], rows: [], steps: names.map((step) => ({ step, ms: [] })) };
  for (const size of sizes) {
    const t = names.map((): number[] => []);
    let json = 0;
    let rowCount = 0;
    for (let i = 0; i < rounds; i++) {
      const { body } = largeReport(random, i + 1, size);
      const job = {
        v: 1,
        receiptId: `large-${i}`,
        receivedAt: new Date().toISOString(),
        channel: 'https',
        bodyBase64: body.toString('base64'),
      };
      let text = '';
      let parsed: unknown;
      t[0]!.push(cpuMs(() => void (text = gunzipSync(body).toString())));
      json = text.length;
      t[1]!.push(cpuMs(() => void (parsed = JSON.parse(text))));
      const decode = cpuMs(() => void decodeReport(body, 1 << 30));
      const normalize = cpuMs(() => void normalizeReport(parsed, LIMITS));
      let result: ReturnType<typeof processReportJob> | undefined;
      const whole = cpuMs(
        () => void (result = processReportJob(job, job.receiptId, { maxDecompressedBytes: 1 << 30, limits: LIMITS })),
      );
      t[2]!.push(decode);
      t[3]!.push(normalize);
      t[4]!.push(Math.max(0, whole - decode - normalize));
      const rows = result!.rows as unknown as Record<TableName, object[]>;
      rowCount = Object.values(rows).reduce((a, r) => a + r.length, 0);
      t[5]!.push(
        cpuMs(() => {
          for (const table of Object.keys(rows) as TableName[]) encodeTsvPieces(TABLE_COLUMNS[table], rows[table]);
        }),
      );
    }
    out.jsonMb.push(json / 1e6);
    out.rows.push(rowCount);
    t.forEach((xs, k) => out.steps[k]!.ms.push(median(xs)));
  }
  return out;
}
