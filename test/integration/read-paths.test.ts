// The API's read paths and the alert rules (which read only their domain, days or report: services/common/current-rows.ts
// and the tables of schemas/clickhouse/0005 and 0008) against two references on the same data: the *_dedup views, which
// group every row, and figures computed here from the report texts themselves. The data has what makes counting
// hard: reports delivered twice over both channels, batches written twice, reports re-sent under the same identity
// with other content (fewer policies, a domain moved, other counts), Microsoft's sts + tlsa entries for the same
// sessions. Checked before and after OPTIMIZE … FINAL (merges must not change an answer).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClickHouse, type ClickHouseClient } from '../../services/common/clickhouse.ts';
import { readdir } from 'node:fs/promises';
import { MIGRATIONS_DIR, migrate } from '../../services/common/migrations.ts';
import { createDb, type Db } from '../../services/api/queries.ts';
import { BatchWriter, clickHouseInsert } from '../../services/worker/batch-writer.ts';
import { processReportJob } from '../../services/worker/process-job.ts';
import { queryRows, testConfig, testDatabase, testWriter } from '../helpers/env.ts';
import {
  compareRulesWithViews,
  compareWithViews,
  expectedTotals,
  readPathReports,
  resent,
  type Report,
} from '../helpers/read-paths.ts';

const config = testConfig();
let ch: ClickHouseClient;
let db: Db;
let clock = Date.parse('2025-04-01T00:00:00Z');

const writes: Array<Promise<unknown>> = [];
const WRITER = { maxRows: 2000, maxWaitMs: 5 };

/** The counted text of each identity: what the figures must say. */
const latest = new Map<string, Report>();
/** The rank of each identity's counted copy: a DKIM-aligned mail (3) outranks a POST (1); among equals the first. */
const counted = new Map<Map<string, Report>, Map<string, number>>();

function deliver(
  writer: BatchWriter,
  report: Report,
  receipt: string,
  opts: { mail?: boolean; twice?: boolean } = {},
  last = latest,
) {
  const job = {
    v: 1,
    receiptId: receipt,
    receivedAt: new Date(clock).toISOString(),
    channel: opts.mail ? 'smtp' : 'https',
    bodyBase64: Buffer.from(JSON.stringify(report)).toString('base64'),
    ...(opts.mail
      ? {
          smtp: {
            envelopeFrom: 'r@x.example',
            dkim: { result: 'pass', signingDomain: 'x.example', submitterAligned: true },
          },
        }
      : {}),
  };
  clock += 1000;
  const r = processReportJob(job, receipt, { maxDecompressedBytes: 1 << 22 }, new Date(clock));
  expect(r.outcome).toBe('stored');
  // Not awaited one by one: the writer batches them (each processing's version is set above, whatever the order).
  writes.push(writer.write(r.rows));
  // A batch retried after a timeout that had in fact been written: the same rows, the same version, again.
  if (opts.twice) writes.push(writer.write(r.rows));
  const id = `${report['organization-name']}\u0000${report['report-id']}`;
  const ranks = counted.get(last) ?? new Map<string, number>();
  counted.set(last, ranks);
  const rank = opts.mail ? 3 : 1;
  if (rank > (ranks.get(id) ?? 0)) {
    ranks.set(id, rank);
    last.set(id, structuredClone(report));
  }
}

/**
 * `count` reports, some delivered twice, by mail too, or re-sent with other content, written by two workers' writers
 * in turn (a report's processings reach both, in the same batches or apart).
 */
async function deliverAll(
  writers: [BatchWriter, BatchWriter],
  count: number,
  last: Map<string, Report>,
): Promise<void> {
  const reports = readPathReports(count);
  const writer = (i: number): BatchWriter => writers[i % 2]!;
  for (const [i, r] of reports.entries()) {
    deliver(writer(i), r, `first-${i}`, { twice: i % 7 === 0 }, last);
    // Every sixth also arrives by mail (DKIM pass), at the other worker: one report, two deliveries.
    if (i % 6 === 0) deliver(writer(i + 1), r, `mail-${i}`, { mail: true }, last);
  }
  // Re-sent under the same identity with other content, processed later: over HTTPS (a conflict, not counted), or
  // every other one by mail (counted instead of a POSTed first copy; a conflict beside a mailed one).
  for (const [i, r] of reports.entries()) {
    if (i % 8 !== 3) continue;
    // At either worker (the first delivery's or the other).
    deliver(writer(Math.floor(i / 8)), resent(r, i), `resent-${i}`, { mail: i % 16 === 3 }, last);
  }
  await Promise.all(writes);
  await Promise.all(writers.map((w) => w.close()));
}

beforeAll(async () => {
  ch = await testDatabase(config);
  db = createDb(ch, { timeoutSeconds: 30, maxRows: 100_000 });
  await deliverAll([testWriter(config, ch, WRITER), testWriter(config, ch, WRITER)], 240, latest);
});

afterAll(async () => {
  await ch.command({ query: `DROP DATABASE IF EXISTS ${config.CLICKHOUSE_DATABASE}` });
  await ch.close();
});

describe('read paths against the views and the report texts', () => {
  it('every domain, report, list and alert rule agrees, before merges', async () => {
    // The data has what it should: more deliveries than reports, sessions moved to domains of their own.
    const [counts] = await queryRows<{ receipts: number; reports: number }>(
      ch,
      `SELECT uniqExact(receipt_id) AS receipts, uniqExact(report_key) AS reports FROM receipts`,
    );
    expect(counts!.receipts - counts!.reports).toBe(40 + 30);
    expect(expectedTotals(latest.values()).has('moved0.example')).toBe(true);
    await compareWithViews(ch, db, expectedTotals(latest.values()));
    await compareRulesWithViews(ch, db, config);
  });

  it('and after OPTIMIZE … FINAL of every table', async () => {
    const tables = await queryRows<{ name: string }>(
      ch,
      `SELECT name FROM system.tables WHERE database = currentDatabase() AND engine LIKE '%MergeTree'`,
    );
    expect(tables.map((t) => t.name)).toContain('policy_days');
    for (const t of tables) await ch.command({ query: `OPTIMIZE TABLE ${t.name} FINAL` });
    await compareWithViews(ch, db, expectedTotals(latest.values()));
    await compareRulesWithViews(ch, db, config);
  });
});

describe('a history stored before the read tables of 0008 and the marks of 0009', () => {
  it('is backfilled by the migrations: the same answers as the views', async () => {
    const older = testConfig();
    await migrate(older, () => {}, '0007');
    const client = createClickHouse(older);
    try {
      const before = new Map<string, Report>();
      // Written as the worker of that release wrote: no marks or fingerprints (their tables do not exist yet).
      const insert = clickHouseInsert(client);
      const unmarked = (): BatchWriter =>
        new BatchWriter(
          (table, chunks, rows) =>
            table === 'report_fingerprints' || table === 'report_copies'
              ? Promise.resolve()
              : insert(table, chunks, rows),
          { ...WRITER, mark: async () => [], decide: async (copies) => copies.map(() => 'store' as const) },
        );
      await deliverAll([unmarked(), unmarked()], 80, before);
      const applied = await migrate(older);
      // Every migration since, in order (0008 onwards), over the history that release stored.
      const since = (await readdir(MIGRATIONS_DIR)).filter((f) => /^\d{4}_.*\.sql$/.test(f) && f > '0008').sort();
      expect(applied.applied).toEqual(since);
      expect(since.slice(0, 3)).toEqual([
        '0008_domain_reads.sql',
        '0009_reprocessed_reports.sql',
        '0010_report_copies.sql',
      ]);
      const olderDb = createDb(client, { timeoutSeconds: 30, maxRows: 100_000 });
      await compareWithViews(client, olderDb, expectedTotals(before.values()));
      await compareRulesWithViews(client, olderDb, older);
    } finally {
      await client.command({ query: `DROP DATABASE IF EXISTS ${older.CLICKHOUSE_DATABASE}` });
      await client.close();
    }
  });
});
