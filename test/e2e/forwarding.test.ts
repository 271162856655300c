// Report forwarding end to end: the HTTPS receiver, the worker and the scheduler as processes, an HTTP collector and
// an SMTP relay as the destinations. Each stored report reaches each destination with its original bytes; the
// scheduler killed with SIGKILL mid-batch and started again loses none; a report that arrived forwarded is stored and
// never forwarded again; the mail is an RFC 8460 report mail, DKIM-signed, that our own parser reads back.
import { createServer, type Server } from 'node:http';
import { mkdir, writeFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { freePort } from '../../dev/stack.ts';
import type { ClickHouseClient } from '../../services/common/clickhouse.ts';
import { forwardId, forwardQueueName } from '../../services/common/forwarding.ts';
import { verifyDkim } from '../../services/common/intake/dkim.ts';
import { extractReports } from '../../services/common/intake/extract.ts';
import { devCertPaths } from '../../services/common/tls.ts';
import { makeKey, testResolver } from '../helpers/mail.ts';
import { createDb } from '../../services/api/queries.ts';
import { reportPage } from '../../services/api/ui/pages/reports.ts';
import { queryRows, testConfig, testDatabase, until } from '../helpers/env.ts';
import { configEnv, httpsRequest, startService, type RunningService } from '../helpers/services.ts';

const REPORTS = 24;
const key = makeKey('forwarder.example', 'fwd');
let ch: ClickHouseClient;
let receiver: RunningService;
let worker: RunningService;
let scheduler: RunningService;
let env: Record<string, string>;
let base: string;
let ca: string;
let collector: Server;
let relay: SMTPServer;
let collectorUrl: string;
/** What the collector was sent: every POST, in order. */
const posted: Array<{ key: string; type: string; by: string; body: Buffer }> = [];
const mailed: Buffer[] = [];

const config = testConfig();

function report(i: number, domain = 'fwd.example'): Buffer {
  return gzipSync(
    JSON.stringify({
      'organization-name': 'Forward Test Org',
      'date-range': { 'start-datetime': '2026-12-01T00:00:00Z', 'end-datetime': '2026-12-01T23:59:59Z' },
      'contact-info': 'reports@org.example',
      'report-id': `fwd-${domain}-${i}`,
      policies: [
        {
          policy: { 'policy-type': 'no-policy-found', 'policy-domain': domain },
          summary: { 'total-successful-session-count': 10 + i, 'total-failure-session-count': 0 },
        },
      ],
    }),
  );
}

beforeAll(async () => {
  ch = await testDatabase(config);
  const dir = join(inject('dataDir'), `forward-${config.QUEUE_NAME}`);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'dkim.pem'), key.privateKey);
  // The collector answers each POST after 150 ms: a batch is under way when the scheduler is killed.
  collector = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () =>
      setTimeout(() => {
        posted.push({
          key: String(req.headers['idempotency-key'] ?? ''),
          type: String(req.headers['content-type'] ?? ''),
          by: String(req.headers['tlsrpt-forwarded-by'] ?? ''),
          body: Buffer.concat(chunks),
        });
        res.writeHead(200).end('ok');
      }, 150),
    );
  });
  await new Promise<void>((r) => collector.listen(0, '127.0.0.1', () => r()));
  collectorUrl = `http://127.0.0.1:${(collector.address() as { port: number }).port}/v1/tlsrpt`;
  relay = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onData(stream, _session, done) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        mailed.push(Buffer.concat(chunks));
        done();
      });
    },
  });
  // smtp-server re-emits each connection's socket errors on the server: the scheduler killed in the middle of a mail
  // resets its connection (ECONNRESET), which without a listener was an uncaught exception in the test process.
  relay.on('error', () => {});
  const relayPort = await freePort();
  await new Promise<void>((r) => relay.listen(relayPort, '127.0.0.1', () => r()));
  const port = await freePort();
  env = configEnv(config, {
    HTTP_PORT: port,
    HTTP_HOST: '127.0.0.1',
    DATA_DIR: dir,
    LOG_LEVEL: 'warn',
    SCHEDULER_METRICS_PORT: 0,
    FORWARD_RULES: JSON.stringify([{ domains: ['fwd.example'], to: [collectorUrl, 'mailto:tlsrpt@tool.example'] }]),
    FORWARD_ALLOW_PRIVATE: 'true',
    FORWARD_INSTANCE: 'forward-test',
    FORWARD_FROM: 'reports <tlsrpt@forwarder.example>',
    FORWARD_DKIM_DOMAIN: key.domain,
    FORWARD_DKIM_SELECTOR: key.selector,
    FORWARD_DKIM_KEY_FILE: join(dir, 'dkim.pem'),
    FORWARD_LOCK_MS: 2000,
    NOTIFY_SMTP_URL: `smtp://127.0.0.1:${relayPort}`,
    NOTIFY_SMTP_REQUIRE_TLS: 'false',
  });
  receiver = startService('http-receiver', env);
  worker = startService('worker', env);
  scheduler = startService('scheduler', env);
  base = `https://localhost:${port}`;
  ca = await until(
    'receiver',
    async () => {
      try {
        const cert = await readFile(devCertPaths(dir).cert, 'utf8');
        return (await httpsRequest(`${base}/`, { method: 'GET', ca: cert })).status === 404 ? cert : undefined;
      } catch {
        return undefined;
      }
    },
    30_000,
  );
}, 60_000);

afterAll(async () => {
  expect(await Promise.all([receiver.stop(), worker.stop(), scheduler.stop()])).toEqual([0, 0, 0]);
  await new Promise<void>((r) => collector.close(() => r()));
  await new Promise<void>((r) => relay.close(() => r()));
  await ch.command({ query: `DROP DATABASE IF EXISTS ${config.CLICKHOUSE_DATABASE}` });
  await ch.close();
});

const post = (body: Buffer, headers: Record<string, string> = {}) =>
  httpsRequest(`${base}/v1/tlsrpt`, {
    body,
    headers: { 'content-type': 'application/tlsrpt+gzip', ...headers },
    ca,
  });

describe('report forwarding', () => {
  it('sends every stored report to each destination; a scheduler killed mid-batch loses none', async () => {
    const sent = Array.from({ length: REPORTS }, (_, i) => report(i));
    for (const body of sent) expect((await post(body)).status).toBe(202);
    // Killed once the collector has part of them, with deliveries in flight; then started again.
    await until('a few delivered', async () => (posted.length >= 4 ? true : undefined), 60_000);
    scheduler.child.kill('SIGKILL');
    await new Promise((r) => scheduler.child.once('exit', r));
    const before = posted.length;
    expect(before).toBeLessThan(REPORTS);
    scheduler = startService('scheduler', env);
    const keys = await queryRows<{ report_key: string }>(
      ch,
      "SELECT DISTINCT report_key FROM reports WHERE organization = 'Forward Test Org'",
    );
    expect(keys).toHaveLength(REPORTS);
    const expected = new Set(keys.map((k) => forwardId(k.report_key, collectorUrl)));
    await until(
      'every report at the collector and the relay',
      async () =>
        new Set(posted.map((p) => p.key)).size === REPORTS && new Set(mailed.map(messageId)).size === REPORTS
          ? true
          : undefined,
      90_000,
    );
    // Lost: none. Sent twice: at most the deliveries in flight when it was killed (4 at a time), same id each time.
    expect(new Set(posted.map((p) => p.key))).toEqual(expected);
    expect(posted.length - REPORTS).toBeLessThanOrEqual(4);
    console.log(
      `forwarding: ${REPORTS} reports, killed after ${before} POSTs; ${posted.length} POSTs and ${mailed.length} mails in all`,
    );
    // Each POST is a report exactly as received, with its type and the loop header.
    const bodies = new Set(sent.map((b) => b.toString('base64')));
    for (const p of posted) {
      expect(bodies.has(p.body.toString('base64'))).toBe(true);
      expect([p.type, p.by]).toEqual(['application/tlsrpt+gzip', 'forward-test']);
    }
    // And the record of each: delivered, shown by origin (a URL's path may hold a secret).
    // (Written once the destination answered: the last may follow its POST by a moment.)
    const records = await until('every delivery recorded', async () => {
      const rows = await queryRows<{ state: string; destination: string; n: string }>(
        ch,
        `SELECT state, destination, count() AS n FROM
           (SELECT forward_id, argMax(state, version) AS state, any(destination) AS destination
            FROM forward_deliveries GROUP BY forward_id)
         GROUP BY state, destination ORDER BY destination`,
      );
      return rows.reduce((a, r) => a + Number(r.n), 0) === 2 * REPORTS ? rows : undefined;
    });
    expect(records.map((r) => [r.state, r.destination, Number(r.n)])).toEqual([
      ['delivered', `${new URL(collectorUrl).origin}/…`, REPORTS],
      ['delivered', 'mailto:tlsrpt@tool.example', REPORTS],
    ]);
    // The report's page says where it went.
    const page = await reportPage({
      db: createDb(ch, { timeoutSeconds: 30, maxRows: 100_000 }),
      principal: { name: 'operator', domains: undefined },
      query: new URLSearchParams(),
      params: { key: keys[0]!.report_key },
      threshold: 0.05,
      readinessDays: 14,
      incidents: { resolveDays: 3, stoppedAfterDays: 3, regularShare: 0.6, windowDays: 120 },
      publish: { rua: 'mailto:tlsrpt@reports.example', hostTarget: 'policy.reports.example' },
      postureDomains: [],
      now: new Date(),
    });
    const shown = page.tables!.find((t) => t.id === 'forwards')!;
    expect(shown.rows.map((r) => shown.columns.slice(0, 2).map((c) => c.value(r as never)))).toEqual([
      [`${new URL(collectorUrl).origin}/…`, 'delivered'],
      ['mailto:tlsrpt@tool.example', 'delivered'],
    ]);
  }, 240_000);

  it('mails an RFC 8460 report mail, DKIM-signed, that a receiver reads back as the same report', async () => {
    const raw = mailed[0]!;
    const verdict = await verifyDkim(raw, 'forwarder.example', testResolver([key]));
    expect([verdict.result, verdict.signingDomain]).toEqual(['pass', 'forwarder.example']);
    const mail = await extractReports(raw, { maxMimeParts: 10, maxUnzippedBytes: 1 << 20 });
    expect(mail.reportDomainHeader).toBe('fwd.example');
    expect(mail.reportSubmitterHeader).toBe('Forward Test Org');
    expect(mail.forwardedBy).toBe('forward-test');
    expect(mail.parts).toHaveLength(1);
    expect(mail.parts[0]!.contentType).toBe('application/tlsrpt+gzip');
    expect(mail.parts[0]!.filename).toMatch(/^Forward_Test_Org!fwd\.example!fwd-fwd\.example-\d+\.json\.gz$/);
    const sent = Array.from({ length: REPORTS }, (_, i) => report(i).toString('base64'));
    expect(sent).toContain(mail.parts[0]!.content.toString('base64'));
  });

  it('stores a report that arrived forwarded, and never forwards it again; other domains are not forwarded', async () => {
    const forwarded = await post(report(0, 'fwd.example'), { 'tlsrpt-forwarded-by': 'another-deployment' });
    const otherDomain = await post(report(1, 'elsewhere.example'));
    const again = report(99);
    const looped = await post(again, { 'tlsrpt-forwarded-by': 'another-deployment' });
    const redis = new Redis(config.REDIS_URL, { maxRetriesPerRequest: null });
    const queue = new Queue(config.QUEUE_NAME, { connection: redis });
    const forwards = new Queue(forwardQueueName(config.QUEUE_NAME), { connection: redis });
    try {
      for (const r of [forwarded, otherDomain, looped]) {
        const id = (JSON.parse(r.body) as { receiptId: string }).receiptId;
        // Queued before the 202; gone (or finished) once the worker completed it.
        await until(
          'processed',
          async () => {
            const job = await queue.getJob(id);
            return !job || job.finishedOn ? true : undefined;
          },
          30_000,
        );
      }
      const [stored] = await queryRows<{ report_key: string }>(
        ch,
        "SELECT report_key FROM reports WHERE report_id = 'fwd-fwd.example-99'",
      );
      expect(stored).toBeDefined();
      // Its job completed without queueing any forwarding: none exists for it, for either destination.
      expect(await forwards.getJob(forwardId(stored!.report_key, collectorUrl))).toBeUndefined();
      expect(await forwards.getJob(forwardId(stored!.report_key, 'mailto:tlsrpt@tool.example'))).toBeUndefined();
      const counts = await forwards.getJobCounts('completed', 'waiting', 'active', 'delayed', 'failed');
      expect(counts).toMatchObject({ completed: 2 * REPORTS, waiting: 0, active: 0, delayed: 0, failed: 0 });
      // Kept for their ids, not for their bytes: Redis holds no forwarded report once delivered.
      const done = await forwards.getJobs(['completed'], 0, -1);
      expect(done.filter((j) => (j.data as { bodyBase64: string }).bodyBase64 !== '')).toEqual([]);
    } finally {
      await queue.close();
      await forwards.close();
      redis.disconnect();
    }
  });
});

function messageId(raw: Buffer): string {
  return /^Message-ID: (.*)$/im.exec(raw.toString('latin1'))?.[1] ?? '';
}
