// Queue → worker → ClickHouse against the real Redis and ClickHouse the suite started.
import { createHash, randomUUID } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import type { Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INSERT_PHASES, TABLE_COLUMNS, type TableName } from '../../schemas/rows.ts';
import type { ClickHouseClient } from '../../services/common/clickhouse.ts';
import { createLogger } from '../../services/common/logger.ts';
import { createReportQueue, enqueueReport } from '../../services/common/queue.ts';
import { createRedis } from '../../services/common/redis.ts';
import { quoteString } from '../../services/common/clickhouse-compat.ts';
import { BatchWriter, clickHouseInsert } from '../../services/worker/batch-writer.ts';
import { createReportWorker } from '../../services/worker/report-worker.ts';
import { corpusReports, sourcePolicies } from '../helpers/corpus.ts';
import { closeWorkerSetup, queryRows, testConfig, testDatabase, until, testWriter } from '../helpers/env.ts';

// A low threshold, so a report of a few policies is "large" (the default is 4 MiB of JSON).
const config = testConfig({ WORKER_GC_AFTER_BYTES: '40000' });
let gcCalls = 0;
let ch: ClickHouseClient;
let producer: Redis;
let consumer: Redis;
let queue: Queue;
let worker: Worker;
let writer: BatchWriter;
/** Fault injection: a function that may throw before a table's insert reaches ClickHouse. */
let fault: (table: TableName) => void = () => {};
const completed = new Map<string, { outcome: string }>();
/** For each completed job: the attempts it had made and started. */
const attemptsAtCompletion = new Map<string, { made: number; started: number }>();
const failedAttempts: string[] = [];
/** For each completed job: whether its receipt row was already in ClickHouse at the moment it completed. */
const storedAtCompletion = new Map<string, boolean>();

beforeAll(async () => {
  ch = await testDatabase(config);
  producer = createRedis(config.REDIS_URL, 'producer');
  consumer = createRedis(config.REDIS_URL, 'worker');
  await producer.ping().catch(async () => {
    await new Promise((r) => setTimeout(r, 500));
  });
  queue = createReportQueue(producer, config.QUEUE_NAME);
  const insert = clickHouseInsert(ch);
  writer = testWriter(config, ch, {
    insert: async (table, chunks, rows) => {
      fault(table);
      await insert(table, chunks, rows);
    },
    maxRows: config.WORKER_BATCH_MAX_ROWS,
    maxWaitMs: config.WORKER_BATCH_MAX_WAIT_MS,
    maxBufferedBytes: config.WORKER_MAX_BUFFERED_BYTES,
  });
  worker = createReportWorker(config, {
    connection: consumer,
    writer,
    logger: createLogger('test-worker', 'silent'),
    gc: () => void gcCalls++,
  });
  worker.on('completed', (job, result: { outcome: string }) => {
    attemptsAtCompletion.set(job.id ?? '', { made: job.attemptsMade, started: job.attemptsStarted });
    void (async () => {
      const rows = await queryRows<{ c: number }>(
        ch,
        `SELECT count() AS c FROM receipts WHERE receipt_id = ${quoteString(job.id ?? '')}`,
      );
      storedAtCompletion.set(job.id ?? '', (rows[0]?.c ?? 0) > 0);
      completed.set(job.id ?? '', result);
    })();
  });
  worker.on('failed', (job) => failedAttempts.push(job?.id ?? ''));
});

afterAll(async () => {
  await closeWorkerSetup({ config, ch, worker, writer, queue, connections: [producer, consumer] });
});

async function send(body: Buffer, receiptId: string = randomUUID()): Promise<string> {
  await enqueueReport(
    queue,
    {
      v: 1,
      receiptId,
      receivedAt: new Date().toISOString(),
      channel: 'https',
      contentType: 'application/tlsrpt+gzip',
      bodyBase64: body.toString('base64'),
    },
    5_000,
  );
  return receiptId;
}

const done = (id: string) => until(`job ${id}`, async () => completed.get(id), 45_000);

describe('queue → worker → ClickHouse', () => {
  it('writes every column of every table the migrations create, and no other', async () => {
    for (const table of INSERT_PHASES.flat()) {
      const columns = await queryRows<{ name: string }>(
        ch,
        `SELECT name FROM system.columns WHERE database = currentDatabase() AND table = ${quoteString(table)}`,
      );
      expect(columns.map((c) => c.name).sort(), table).toEqual([...TABLE_COLUMNS[table]].sort());
    }
  });

  it('stores every corpus report with its counts and failure details', async () => {
    const reports = corpusReports();
    const ids = await Promise.all(reports.map((r) => send(r.gzipped ? r.body : gzipSync(r.body))));
    await Promise.all(ids.map(done));
    for (const id of ids) expect(storedAtCompletion.get(id)).toBe(true);

    for (const [i, r] of reports.entries()) {
      const [receipt] = await queryRows<{ outcome: string; report_key: string }>(
        ch,
        `SELECT outcome, report_key FROM receipts WHERE receipt_id = ${quoteString(ids[i]!)}`,
      );
      expect(receipt?.outcome, r.file).toBe('stored');
      const policies = await queryRows<{
        policy_index: number;
        successful_sessions: number;
        failed_sessions: number;
        failure_detail_count: number;
      }>(
        ch,
        `SELECT policy_index, successful_sessions, failed_sessions, failure_detail_count FROM policy_results_dedup
         WHERE report_key = ${quoteString(receipt!.report_key)} ORDER BY policy_index`,
      );
      const source = sourcePolicies(r.json);
      expect(
        policies.map((p) => [p.successful_sessions, p.failed_sessions, p.failure_detail_count]),
        r.file,
      ).toEqual(source.map((s) => [s.successful ?? 0, s.failed ?? 0, s.details.length]));
      const details = await queryRows<{
        result_type: string;
        failed_session_count: number;
        failure_reason_code: string | null;
        receiving_mx_helo: string | null;
      }>(
        ch,
        `SELECT result_type, failed_session_count, failure_reason_code, receiving_mx_helo FROM failure_details_dedup
         WHERE report_key = ${quoteString(receipt!.report_key)} ORDER BY policy_index, detail_index`,
      );
      expect(details, r.file).toEqual(
        source.flatMap((s) =>
          s.details.map((d) => ({
            result_type: d['result-type'],
            failed_session_count: d['failed-session-count'],
            failure_reason_code: d['failure-reason-code'] ?? null,
            receiving_mx_helo: d['receiving-mx-helo'] ?? null,
          })),
        ),
      );
      // Every distinct text is kept, also where two corpus files share one report identity (the RFC example).
      const sha = createHash('sha256').update(r.json).digest('hex');
      const [raw] = await queryRows<{ raw_json: string }>(
        ch,
        `SELECT raw_json FROM raw_reports WHERE report_key = ${quoteString(receipt!.report_key)} AND json_sha256 = ${quoteString(sha)} LIMIT 1`,
      );
      expect(raw?.raw_json, r.file).toBe(r.json);
    }
  });

  it('a report delivered twice, and a receipt queued twice, count once', async () => {
    const report = JSON.stringify({
      'organization-name': 'Dup Org',
      'date-range': { 'start-datetime': '2025-02-01T00:00:00Z', 'end-datetime': '2025-02-01T23:59:59Z' },
      'contact-info': 'x@dup.example',
      'report-id': 'dup-1',
      policies: [
        {
          policy: { 'policy-type': 'sts', 'policy-domain': 'dup.example' },
          summary: { 'total-successful-session-count': 7, 'total-failure-session-count': 3 },
        },
      ],
    });
    const a = await send(gzipSync(report));
    const b = await send(Buffer.from(report)); // the same report, the other encoding
    await send(gzipSync(report), a); // the same receipt again: one job
    await Promise.all([done(a), done(b)]);
    const [daily] = await queryRows<{ successful_sessions: number; failed_sessions: number; reports: number }>(
      ch,
      `SELECT successful_sessions, failed_sessions, reports FROM domain_daily WHERE policy_domain = 'dup.example'`,
    );
    expect(daily).toEqual({ successful_sessions: 7, failed_sessions: 3, reports: 1 });
    const [counts] = await queryRows<{ reports: number; receipts: number }>(
      ch,
      `SELECT (SELECT count() FROM reports_dedup WHERE organization = 'Dup Org') AS reports,
              (SELECT uniqExact(receipt_id) FROM receipts WHERE report_key IN (SELECT report_key FROM reports WHERE organization = 'Dup Org')) AS receipts`,
    );
    expect(counts).toEqual({ reports: 1, receipts: 2 });
  });

  it('survives a transient ClickHouse failure half-way through a batch, counting once', async () => {
    let failures = 0;
    // The first two attempts fail after the policy rows are written but before the report row is.
    fault = (table) => {
      if (table === 'reports' && failures < 2) {
        failures++;
        throw new Error('injected: clickhouse unavailable');
      }
    };
    const report = JSON.stringify({
      'organization-name': 'Flaky Org',
      'date-range': { 'start-datetime': '2025-03-01T00:00:00Z', 'end-datetime': '2025-03-01T23:59:59Z' },
      'contact-info': null,
      'report-id': 'flaky-1',
      policies: [
        {
          policy: { 'policy-type': 'sts', 'policy-domain': 'flaky.example' },
          summary: { 'total-successful-session-count': 100, 'total-failure-session-count': 5 },
          'failure-details': [{ 'result-type': 'starttls-not-supported', 'failed-session-count': 5 }],
        },
      ],
    });
    const id = await send(gzipSync(report));
    await done(id);
    fault = () => {};
    expect(failures).toBe(2);
    expect(failedAttempts.filter((x) => x === id)).toHaveLength(2);
    expect(storedAtCompletion.get(id)).toBe(true);
    // The raw table holds the rows written by each attempt; every view counts them once.
    const [raw] = await queryRows<{ c: number }>(
      ch,
      `SELECT count() AS c FROM policy_results WHERE policy_domain = 'flaky.example'`,
    );
    expect(raw!.c).toBe(3);
    const [daily] = await queryRows<{ successful_sessions: number; failed_sessions: number }>(
      ch,
      `SELECT successful_sessions, failed_sessions FROM domain_daily WHERE policy_domain = 'flaky.example'`,
    );
    expect(daily).toEqual({ successful_sessions: 100, failed_sessions: 5 });
    const [fd] = await queryRows<{ failed_sessions: number; details: number }>(
      ch,
      `SELECT failed_sessions, details FROM failure_daily WHERE policy_domain = 'flaky.example'`,
    );
    expect(fd).toEqual({ failed_sessions: 5, details: 1 });
  });

  it('ClickHouse out of reach: the job goes back without spending an attempt, and is stored once reached', async () => {
    // The first three inserts find nothing listening (what the client reports then); a failure whose code says
    // ClickHouse answered would count as an attempt instead (the test above).
    let refused = 0;
    fault = () => {
      if (refused < 3) {
        refused++;
        throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:8123'), { code: 'ECONNREFUSED' });
      }
    };
    const report = JSON.stringify({
      'organization-name': 'Away Org',
      'date-range': { 'start-datetime': '2025-03-02T00:00:00Z', 'end-datetime': '2025-03-02T23:59:59Z' },
      'contact-info': null,
      'report-id': 'away-1',
      policies: [
        {
          policy: { 'policy-type': 'sts', 'policy-domain': 'away.example' },
          summary: { 'total-successful-session-count': 40, 'total-failure-session-count': 0 },
        },
      ],
    });
    const id = await send(gzipSync(report));
    await done(id);
    fault = () => {};
    expect(refused).toBe(3);
    expect(failedAttempts.filter((x) => x === id)).toHaveLength(0);
    // Four starts, one attempt made: the one that completed (BullMQ counts it too).
    expect(attemptsAtCompletion.get(id)).toEqual({ made: 1, started: 4 });
    expect(storedAtCompletion.get(id)).toBe(true);
    const [daily] = await queryRows<{ successful_sessions: number }>(
      ch,
      `SELECT successful_sessions FROM domain_daily WHERE policy_domain = 'away.example'`,
    );
    expect(daily).toEqual({ successful_sessions: 40 });
  });

  it('a report that can never succeed becomes a reject row and its job ends without retry', async () => {
    const before = failedAttempts.length;
    const body = Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0xde, 0xad]);
    const id = await send(body);
    expect(await done(id)).toEqual({ outcome: 'rejected', reason: 'bad-gzip' });
    expect(failedAttempts.length).toBe(before);
    const [reject] = await queryRows<{ reason: string; raw_base64: string; channel: string; detail: string }>(
      ch,
      `SELECT reason, raw_base64, channel, detail FROM rejects WHERE receipt_id = ${quoteString(id)}`,
    );
    expect(reject).toMatchObject({ reason: 'bad-gzip', raw_base64: body.toString('base64'), channel: 'https' });
    expect(reject!.detail).toMatch(/gzip/);
  });

  it('collects garbage after a report past WORKER_GC_AFTER_BYTES, and not after a smaller one', async () => {
    const base = JSON.parse(corpusReports()[0]!.json) as { policies: unknown[] };
    const small = JSON.stringify({ ...base, 'report-id': randomUUID() });
    const large = JSON.stringify({
      ...base,
      'report-id': randomUUID(),
      policies: Array.from({ length: 400 }, () => base.policies).flat(),
    });
    expect(small.length).toBeLessThan(40_000);
    expect(large.length).toBeGreaterThan(40_000);
    const before = gcCalls;
    expect(await done(await send(gzipSync(small)))).toMatchObject({ outcome: 'stored' });
    expect(gcCalls).toBe(before);
    expect(await done(await send(gzipSync(large)))).toMatchObject({ outcome: 'stored' });
    expect(gcCalls).toBe(before + 1);
  });

  it('the Microsoft report with sts and tlsa entries counts its sessions once per domain and day', async () => {
    const ms = corpusReports().find((r) =>
      r.file.includes('dmarc-report-viewer__testdata_smtp-tls-reports_microsoft.json'),
    )!;
    const [row] = await queryRows<{ successful_sessions: number }>(
      ch,
      `SELECT successful_sessions FROM domain_daily WHERE policy_domain = 'random.net'`,
    );
    const source = sourcePolicies(ms.json);
    expect(source.map((s) => s.successful)).toEqual([2, 2]);
    expect(row!.successful_sessions).toBe(2);
    const perType = await queryRows<{ policy_type: string; successful_sessions: number }>(
      ch,
      `SELECT policy_type, successful_sessions FROM policy_daily WHERE policy_domain = 'random.net' ORDER BY policy_type`,
    );
    expect(perType).toEqual([
      { policy_type: 'sts', successful_sessions: 2 },
      { policy_type: 'tlsa', successful_sessions: 2 },
    ]);
  });
});
