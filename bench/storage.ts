// The storage floor: the rows of the same report mix, made in advance, inserted in the worker's batch size with
// nothing else running. Measured on two ClickHouse servers started side by side (the stack's jemalloc setting and
// jemalloc's defaults) and in two formats (TabSeparated, which the worker writes, and JSONEachRow), alternating,
// so the choices in dev/stack.ts and services/worker/batch-writer.ts stay measured, not remembered.
import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createClickHouse } from '../services/common/clickhouse.ts';
import { loadConfig } from '../services/common/config.ts';
import { migrate } from '../services/common/migrations.ts';
import { encodeTsv } from '../services/common/tsv.ts';
import { clickHouseInsert } from '../services/worker/batch-writer.ts';
import { processReportJob } from '../services/worker/process-job.ts';
import { storedFingerprints, storedReportOf } from '../services/worker/reprocessing.ts';
import { copyOf, storedCopies } from '../services/worker/copies.ts';
import { freePort, startClickHouse, CLICKHOUSE_MALLOC_CONF, type ManagedProcess } from '../dev/stack.ts';
import { INSERT_PHASES, TABLE_COLUMNS, type TableRows } from '../schemas/rows.ts';
import { cpuSeconds, peakRssMb } from './proc.ts';

const root = resolve(import.meta.dirname, '..');
const TABLES = INSERT_PHASES.flat();

export type InsertFormat = 'TabSeparated' | 'JSONEachRow';

export interface StorageMeasure {
  format: InsertFormat;
  malloc: string;
  reportsPerSec: number;
  clickhouseCpuMsPerReport: number;
  /** CPU of this process per report: encoding the rows and sending them. */
  clientCpuMsPerReport: number;
}

export interface StorageFloors {
  reports: number;
  rows: number;
  batchRows: number;
  measures: StorageMeasure[];
  /** Peak resident memory of each server over all its runs. */
  peakRssMb: Record<string, number>;
  /** The inserts with the read tables' materialized views over the same without them (TabSeparated, the stack's server). */
  readTables: { reportsPerSecRatio: number; clickhouseCpuRatio: number };
}

/** Each report's rows, as the worker makes them. */
function reportRows(bodies: Buffer[]): TableRows[] {
  return bodies.map((body, i) => {
    const job = {
      v: 1,
      receiptId: `floor-${i}`,
      receivedAt: new Date().toISOString(),
      channel: 'https',
      bodyBase64: body.toString('base64'),
    };
    return processReportJob(job, job.receiptId, { maxDecompressedBytes: 1 << 26 }).rows;
  });
}

const rowCount = (rows: TableRows): number => TABLES.reduce((a, t) => a + rows[t].length, 0);

/** Consecutive reports in groups of about `batchRows` rows, as the batch writer forms them. */
function batchesOf(reports: TableRows[], batchRows: number): TableRows[][] {
  const batches: TableRows[][] = [[]];
  let rows = 0;
  for (const r of reports) {
    batches.at(-1)!.push(r);
    rows += rowCount(r);
    if (rows >= batchRows) {
      batches.push([]);
      rows = 0;
    }
  }
  return batches.filter((b) => b.length > 0);
}

async function measure(
  server: { port: number; pid: number; malloc: string },
  format: InsertFormat,
  reports: TableRows[],
  batchRows: number,
  round: number,
  withoutReadTables = false,
): Promise<StorageMeasure> {
  const config = loadConfig({
    CLICKHOUSE_URL: `http://127.0.0.1:${server.port}`,
    CLICKHOUSE_DATABASE: `floor_${format}_${round + 1}${withoutReadTables ? '_bare' : ''}`,
  });
  await migrate(config);
  const ch = createClickHouse(config);
  if (withoutReadTables) {
    // What the read tables' materialized views (schemas/clickhouse/0005, 0008) and the worker's look-up of reports
    // stored before (0009) cost at insert: the same inserts without them.
    const views = await (
      await ch.query({
        query: `SELECT name FROM system.tables WHERE database = currentDatabase() AND engine = 'MaterializedView'`,
        format: 'JSONEachRow',
      })
    ).json<{ name: string }>();
    for (const v of views) await ch.command({ query: `DROP TABLE ${v.name}` });
  }
  const insertTsv = clickHouseInsert(ch);
  const batches = batchesOf(reports, batchRows);
  const cpu0 = await cpuSeconds(server.pid);
  const client0 = process.cpuUsage();
  const t0 = performance.now();
  for (const batch of batches) {
    // The worker asks, per batch, what ClickHouse has of its reports (services/worker/reprocessing.ts) and stores
    // their fingerprints: a cost of the read tables' cheap reads, so not in the floor without them.
    if (!withoutReadTables)
      await storedFingerprints(
        ch,
        batch.flatMap((r) => storedReportOf(r) ?? []),
      );
    // And, for any store, the copies it has of them (services/worker/copies.ts: which copy counts).
    await storedCopies(
      ch,
      batch.flatMap((r) => copyOf(r) ?? []),
    );
    for (const phase of INSERT_PHASES) {
      await Promise.all(
        phase.map(async (t) => {
          if (withoutReadTables && t === 'report_fingerprints') return;
          const withRows = batch.filter((r) => r[t].length > 0);
          if (withRows.length === 0) return;
          // TabSeparated: one chunk per report, encoded as the batch writer does when each job arrives.
          if (format === 'TabSeparated') {
            const chunks = withRows.map((r) => encodeTsv(TABLE_COLUMNS[t], r[t]));
            await insertTsv(
              t,
              chunks,
              withRows.reduce((a, r) => a + r[t].length, 0),
            );
          } else
            await ch.insert({ table: t, values: withRows.flatMap((r) => r[t] as object[]), format: 'JSONEachRow' });
        }),
      );
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  const client = process.cpuUsage(client0);
  // Background merges of these parts belong to the cost; give them a moment.
  await new Promise((r) => setTimeout(r, 1000));
  const cpu1 = await cpuSeconds(server.pid);
  await ch.command({ query: `DROP DATABASE ${config.CLICKHOUSE_DATABASE}` });
  await ch.close();
  return {
    format,
    malloc: server.malloc,
    reportsPerSec: Math.round(reports.length / seconds),
    clickhouseCpuMsPerReport: ((cpu1 - cpu0) * 1000) / reports.length,
    clientCpuMsPerReport: (client.user + client.system) / 1000 / reports.length,
  };
}

/** `bodies`: the gzipped reports of the mix. Rounds alternate servers and formats; the result averages them. */
export async function runStorageFloors(
  bodies: Buffer[],
  opts: { rounds: number; log: (line: string) => void },
): Promise<StorageFloors> {
  const batchRows = loadConfig({}).WORKER_BATCH_MAX_ROWS;
  const reports = reportRows(bodies);
  const dataDir = join(root, `.data/bench-storage-${process.pid}`);
  const servers: Array<{ port: number; pid: number; malloc: string; proc: ManagedProcess }> = [];
  try {
    for (const [name, mallocConf] of [
      [`stack: ${CLICKHOUSE_MALLOC_CONF}`, CLICKHOUSE_MALLOC_CONF],
      ['jemalloc defaults', ''],
    ] as const) {
      const port = await freePort();
      const proc = await startClickHouse({
        dir: join(dataDir, `ch-${servers.length}`),
        httpPort: port,
        tcpPort: await freePort(),
        log: () => {},
        mallocConf,
      });
      servers.push({ port, pid: proc.child!.pid!, malloc: name, proc });
    }
    // A first, unrecorded run on each server: whichever measure came first paid for growing the server's memory.
    for (const server of servers) await measure(server, 'TabSeparated', reports.slice(0, 2000), batchRows, -1);
    const runs: StorageMeasure[] = [];
    const formats = ['TabSeparated', 'JSONEachRow'] as const;
    for (let round = 0; round < opts.rounds; round++)
      for (const server of round % 2 ? [...servers].reverse() : servers)
        for (const format of round % 2 ? [...formats].reverse() : formats) {
          const m = await measure(server, format, reports, batchRows, round);
          opts.log(`storage floor: ${JSON.stringify(m)}`);
          runs.push(m);
        }
    const measures: StorageMeasure[] = [];
    for (const server of servers)
      for (const format of formats) {
        const mine = runs.filter((r) => r.malloc === server.malloc && r.format === format);
        const mean = (f: (m: StorageMeasure) => number) => mine.reduce((a, m) => a + f(m), 0) / mine.length;
        measures.push({
          format,
          malloc: server.malloc,
          reportsPerSec: Math.round(mean((m) => m.reportsPerSec)),
          clickhouseCpuMsPerReport: mean((m) => m.clickhouseCpuMsPerReport),
          clientCpuMsPerReport: mean((m) => m.clientCpuMsPerReport),
        });
      }
    // The stack's server and format, with and without the read tables' views, alternating.
    const bare: StorageMeasure[] = [];
    const withViews: StorageMeasure[] = [];
    for (let round = 0; round < opts.rounds; round++) {
      withViews.push(await measure(servers[0]!, 'TabSeparated', reports, batchRows, round + 100));
      bare.push(await measure(servers[0]!, 'TabSeparated', reports, batchRows, round + 100, true));
    }
    const meanOf = (ms: StorageMeasure[], f: (m: StorageMeasure) => number) =>
      ms.reduce((a, m) => a + f(m), 0) / ms.length;
    const readTables = {
      reportsPerSecRatio: meanOf(withViews, (m) => m.reportsPerSec) / meanOf(bare, (m) => m.reportsPerSec),
      clickhouseCpuRatio:
        meanOf(withViews, (m) => m.clickhouseCpuMsPerReport) / meanOf(bare, (m) => m.clickhouseCpuMsPerReport),
    };
    opts.log(`storage floor, read tables' views: ${JSON.stringify(readTables)}`);
    const peak: Record<string, number> = {};
    for (const s of servers) peak[s.malloc] = Math.round(await peakRssMb(s.pid));
    return {
      reports: bodies.length,
      rows: reports.reduce((a, r) => a + rowCount(r), 0),
      batchRows,
      measures,
      peakRssMb: peak,
      readTables,
    };
  } finally {
    for (const s of servers) await s.proc.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}
