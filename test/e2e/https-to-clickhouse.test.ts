// End to end: the real HTTPS receiver and worker processes, real Redis and ClickHouse. Every corpus report is
// POSTed gzipped and plain, then read back from ClickHouse and compared with the source.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { freePort, startRedis, type ManagedProcess } from '../../dev/stack.ts';
import type { ClickHouseClient } from '../../services/common/clickhouse.ts';
import { quoteString } from '../../services/common/clickhouse-compat.ts';
import { devCertPaths } from '../../services/common/tls.ts';
import { corpusReports, sourcePolicies } from '../helpers/corpus.ts';
import { queryRows, testConfig, testDatabase, until } from '../helpers/env.ts';
import { configEnv, httpsRequest, startService, type RunningService } from '../helpers/services.ts';

let ch: ClickHouseClient;
let receiver: RunningService;
let worker: RunningService;
let base: string;
let ca: string;
let workerMetricsPort: number;
let receiverMetricsPort: number;
const config = testConfig({ HTTP_MAX_BODY_BYTES: String(256 * 1024) });

async function waitForReceiver(url: string, cert: string, svc: RunningService): Promise<string> {
  return await until(
    'receiver',
    async () => {
      if (svc.child.exitCode !== null) throw new Error(`receiver exited: ${svc.output()}`);
      try {
        const ca = await readFile(cert, 'utf8');
        // Any answer from the report port (404 here) means it listens with its certificate.
        const res = await httpsRequest(`${url}/`, { method: 'GET', ca });
        return res.status === 404 ? ca : undefined;
      } catch {
        return undefined;
      }
    },
    30_000,
  );
}

beforeAll(async () => {
  ch = await testDatabase(config);
  const port = await freePort();
  workerMetricsPort = await freePort();
  receiverMetricsPort = await freePort();
  const dataDir = join(inject('dataDir'), `e2e-${config.QUEUE_NAME}`);
  const env = configEnv(config, {
    HTTP_PORT: port,
    HTTP_HOST: '127.0.0.1',
    DATA_DIR: dataDir,
    LOG_LEVEL: 'warn',
    WORKER_METRICS_PORT: workerMetricsPort,
    HTTP_METRICS_PORT: receiverMetricsPort,
  });
  receiver = startService('http-receiver', env);
  worker = startService('worker', env);
  base = `https://localhost:${port}`;
  // The receiver makes its development certificate on first start; the client verifies it.
  ca = await waitForReceiver(base, devCertPaths(dataDir).cert, receiver);
});

afterAll(async () => {
  // Both stopped before either exit code is checked.
  expect(await Promise.all([receiver.stop(), worker.stop()])).toEqual([0, 0]);
  await ch.command({ query: `DROP DATABASE IF EXISTS ${config.CLICKHOUSE_DATABASE}` });
  await ch.close();
});

const post = (body: Buffer, headers: Record<string, string>, path = '/v1/tlsrpt') =>
  httpsRequest(`${base}${path}`, { body, headers, ca });

describe('HTTPS POST → ClickHouse', () => {
  it('stores every corpus report, sent gzipped and plain, once', async () => {
    const reports = corpusReports();
    const receipts: Array<{ file: string; id: string }> = [];
    for (const r of reports) {
      const gz = r.gzipped ? r.body : gzipSync(r.body);
      const plain = Buffer.from(r.json);
      for (const [body, type] of [
        [gz, 'application/tlsrpt+gzip'],
        [plain, 'application/tlsrpt+json'],
      ] as const) {
        const res = await post(body, { 'content-type': type, 'user-agent': 'e2e-test/1' });
        expect(res.status, `${r.file} ${type}: ${res.body}`).toBe(202);
        receipts.push({ file: r.file, id: (JSON.parse(res.body) as { receiptId: string }).receiptId });
      }
    }
    const ids = receipts.map((r) => quoteString(r.id)).join(',');
    await until('all receipts stored', async () => {
      const [row] = await queryRows<{ c: number }>(
        ch,
        `SELECT uniqExact(receipt_id) AS c FROM receipts WHERE receipt_id IN (${ids})`,
      );
      return row!.c === receipts.length ? true : undefined;
    });

    for (const r of reports) {
      const mine = receipts.filter((x) => x.file === r.file).map((x) => quoteString(x.id));
      const rows = await queryRows<{
        outcome: string;
        report_key: string;
        channel: string;
        user_agent: string;
        content_type: string;
      }>(
        ch,
        `SELECT outcome, report_key, channel, user_agent, content_type FROM receipts WHERE receipt_id IN (${mine.join(',')}) ORDER BY content_type`,
      );
      expect(rows.map((x) => x.outcome)).toEqual(['stored', 'stored']);
      expect(rows[0]!.report_key).toBe(rows[1]!.report_key); // gzipped and plain: the same report
      expect(rows.map((x) => [x.channel, x.user_agent, x.content_type])).toEqual([
        ['https', 'e2e-test/1', 'application/tlsrpt+gzip'],
        ['https', 'e2e-test/1', 'application/tlsrpt+json'],
      ]);
      const stored = await queryRows<{ successful_sessions: number; failed_sessions: number; policy_type: string }>(
        ch,
        `SELECT successful_sessions, failed_sessions, policy_type FROM policy_results_dedup
         WHERE report_key = ${quoteString(rows[0]!.report_key)} ORDER BY policy_index`,
      );
      const source = sourcePolicies(r.json);
      expect(
        stored.map((p) => [p.successful_sessions, p.failed_sessions]),
        r.file,
      ).toEqual(source.map((s) => [s.successful ?? 0, s.failed ?? 0]));
      const [detailCount] = await queryRows<{ c: number; s: number }>(
        ch,
        `SELECT count() AS c, sum(failed_session_count) AS s FROM failure_details_dedup WHERE report_key = ${quoteString(rows[0]!.report_key)}`,
      );
      const srcDetails = source.flatMap((s) => s.details);
      expect(detailCount, r.file).toEqual({
        c: srcDetails.length,
        s: srcDetails.reduce((a, d) => a + Number(d['failed-session-count']), 0),
      });
    }

    // Sent twice each, counted once: the sums over the dedup view equal the sums over the distinct sources.
    const distinct = new Map<string, number>();
    for (const r of reports) {
      const [row] = await queryRows<{ report_key: string }>(
        ch,
        `SELECT report_key FROM receipts WHERE receipt_id = ${quoteString(receipts.find((x) => x.file === r.file)!.id)}`,
      );
      distinct.set(
        row!.report_key,
        sourcePolicies(r.json).reduce((a, s) => a + (s.successful ?? 0), 0),
      );
    }
    const [total] = await queryRows<{ s: number; n: number }>(
      ch,
      `SELECT sum(successful_sessions) AS s, uniqExact(report_key) AS n FROM policy_results_dedup`,
    );
    expect(total).toEqual({ s: [...distinct.values()].reduce((a, b) => a + b, 0), n: distinct.size });
  });

  it('accepts longer rua paths with query strings, gzip under another type, and Content-Encoding: gzip', async () => {
    const r = corpusReports()[0]!;
    const gz = gzipSync(r.body);
    expect(
      (await post(gz, { 'content-type': 'application/tlsrpt+gzip' }, '/v1/tlsrpt/example.com?key=abc')).status,
    ).toBe(202);
    expect((await post(gz, { 'content-type': 'application/octet-stream' })).status).toBe(202);
    expect((await post(gz, { 'content-type': 'application/tlsrpt+json', 'content-encoding': 'gzip' })).status).toBe(
      202,
    );
  });

  it('answers bad requests with precise statuses', async () => {
    const big = Buffer.alloc(300 * 1024, 0x20);
    const tooLarge = await post(big, { 'content-type': 'application/tlsrpt+json' });
    expect(tooLarge.status).toBe(413);
    expect(JSON.parse(tooLarge.body)).toMatchObject({ error: 'too-large' });
    expect((await post(Buffer.from('{"a":1}'), { 'content-type': 'text/plain' })).status).toBe(415);
    expect((await post(Buffer.alloc(0), { 'content-type': 'application/tlsrpt+json' })).status).toBe(400);
    expect((await httpsRequest(`${base}/v1/tlsrpt`, { method: 'GET', ca })).status).toBe(405);
    expect((await httpsRequest(`${base}/elsewhere`, { method: 'POST', ca, body: Buffer.from('{}') })).status).toBe(404);
    // The receiver is still up and accepting after all of that.
    expect((await post(gzipSync(corpusReports()[1]!.body), { 'content-type': 'application/tlsrpt+gzip' })).status).toBe(
      202,
    );
  });

  it('a report that parses but can never be stored gets 202, then a reject row with its reason', async () => {
    const res = await post(Buffer.from('{"organization-name":"x"}'), { 'content-type': 'application/tlsrpt+json' });
    expect(res.status).toBe(202);
    const id = (JSON.parse(res.body) as { receiptId: string }).receiptId;
    const row = await until('reject row', async () => {
      const [r] = await queryRows<{ reason: string; user_agent: string; path: string }>(
        ch,
        `SELECT reason, user_agent, path FROM rejects WHERE receipt_id = ${quoteString(id)}`,
      );
      return r;
    });
    expect(row).toMatchObject({ reason: 'missing-report-id', path: '/v1/tlsrpt' });
  });
});

describe('metrics and health', () => {
  it('the receiver and the worker expose what they did, on their metrics ports only', async () => {
    const receiverMetrics = await (await fetch(`http://127.0.0.1:${receiverMetricsPort}/metrics`)).text();
    expect(receiverMetrics).toMatch(/tlsrpt_reports_received_total\{[^}]*channel="https"[^}]*\} [1-9]/);
    expect(receiverMetrics).toMatch(/tlsrpt_http_responses_total\{[^}]*status="415"[^}]*\} 1/);
    expect(receiverMetrics).toMatch(/tlsrpt_http_responses_total\{[^}]*status="413"[^}]*\} 1/);
    expect((await fetch(`http://127.0.0.1:${receiverMetricsPort}/readyz`)).status).toBe(200);
    // The internet-facing port serves reports only.
    for (const path of ['/metrics', '/readyz', '/healthz']) {
      expect((await httpsRequest(`${base}${path}`, { method: 'GET', ca })).status).toBe(404);
    }
    // The worker counts a reject after its row is in ClickHouse (the row is what this file waited for): wait for it.
    const worker = await until('worker counters', async () => {
      const text = await (await fetch(`http://127.0.0.1:${workerMetricsPort}/metrics`)).text();
      return /tlsrpt_rejects_total\{[^}]*reason="missing-report-id"[^}]*\} 1/.test(text) ? text : undefined;
    });
    expect(worker).toMatch(/tlsrpt_jobs_total\{[^}]*outcome="stored"[^}]*\} [1-9]/);
    expect(worker).toMatch(/tlsrpt_insert_batch_rows_count\{[^}]*\} [1-9]/);
    expect(worker).toMatch(/tlsrpt_queue_waiting\{[^}]*\} 0/);
    expect(worker).toMatch(/tlsrpt_receipt_to_stored_seconds_count\{[^}]*\} [1-9]/);
    expect((await fetch(`http://127.0.0.1:${workerMetricsPort}/readyz`)).status).toBe(200);
  });
});

describe('when Redis cannot take the job', () => {
  let redis: ManagedProcess;
  let redisPort: number;
  let other: RunningService;
  let otherBase: string;
  let otherCa: string;
  let otherMetricsPort: number;
  const otherConfig = testConfig();

  beforeAll(async () => {
    redisPort = await freePort();
    const dir = join(inject('dataDir'), `redis-${otherConfig.QUEUE_NAME}`);
    redis = await startRedis({ dir, port: redisPort, log: () => {} });
    const port = await freePort();
    otherMetricsPort = await freePort();
    const dataDir = join(inject('dataDir'), `e2e-${otherConfig.QUEUE_NAME}`);
    other = startService(
      'http-receiver',
      configEnv(otherConfig, {
        HTTP_PORT: port,
        HTTP_HOST: '127.0.0.1',
        DATA_DIR: dataDir,
        REDIS_URL: `redis://127.0.0.1:${redisPort}`,
        HTTP_ENQUEUE_TIMEOUT_MS: 1000,
        HTTP_METRICS_PORT: otherMetricsPort,
      }),
    );
    otherBase = `https://localhost:${port}`;
    otherCa = await waitForReceiver(otherBase, devCertPaths(dataDir).cert, other);
  });

  afterAll(async () => {
    await other.stop();
    await redis.stop();
  });

  it('answers 503 with Retry-After while Redis is down, stays up, and 202 once it is back, with the job stored', async () => {
    const body = gzipSync(corpusReports()[2]!.body);
    const headers = { 'content-type': 'application/tlsrpt+gzip' };
    await redis.stop();
    const down = await httpsRequest(`${otherBase}/v1/tlsrpt`, { body, headers, ca: otherCa });
    expect(down.status).toBe(503);
    expect(down.headers['retry-after']).toBe('60');
    const ready = await fetch(`http://127.0.0.1:${otherMetricsPort}/readyz`);
    expect(ready.status).toBe(503);

    redis = await startRedis({
      dir: join(inject('dataDir'), `redis-${otherConfig.QUEUE_NAME}`),
      port: redisPort,
      log: () => {},
    });
    const res = await until('202 after redis is back', async () => {
      const r = await httpsRequest(`${otherBase}/v1/tlsrpt`, { body, headers, ca: otherCa });
      return r.status === 202 ? r : undefined;
    });
    // 202 means the job is in Redis: read it back from there, byte for byte.
    const queue = new Queue(otherConfig.QUEUE_NAME, { connection: { host: '127.0.0.1', port: redisPort } });
    const job = await queue.getJob((JSON.parse(res.body) as { receiptId: string }).receiptId);
    expect(Buffer.from((job?.data as { bodyBase64: string }).bodyBase64, 'base64').equals(body)).toBe(true);
    await queue.close();
    expect(other.child.exitCode).toBeNull();
  });
});
