// Fault injection under load: 5,000 real-shaped reports over both receivers while the worker is killed mid-batch,
// ClickHouse restarts and then stays down for a minute, during which Redis restarts (AOF) and both receivers die
// with connections open. Senders behave like real ones: they retry until acknowledged. Afterwards every acknowledged report is in
// ClickHouse exactly once and every figure equals the sum over the sent reports.
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Agent } from 'node:https';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { createTransport } from 'nodemailer';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { makeReport, rng } from '../../dev/report-mix.ts';
import { freePort, startClickHouse, startRedis, waitUntil, type ManagedProcess } from '../../dev/stack.ts';
import { createClickHouse, type ClickHouseClient } from '../../services/common/clickhouse.ts';
import { loadConfig, type Config } from '../../services/common/config.ts';
import { migrate } from '../../services/common/migrations.ts';
import { devCertPaths } from '../../services/common/tls.ts';
import { createDb, domainSummary } from '../../services/api/queries.ts';
import { queryRows, until } from '../helpers/env.ts';
import { configEnv, postReport, startService, type RunningService } from '../helpers/services.ts';
import { reportMail } from '../helpers/mail.ts';

const REPORTS = 5_000;
const CH_DOWN_MS = 60_000;

let dir: string;
let config: Config;
let redis: ManagedProcess;
let clickhouse: ManagedProcess;
let ch: ClickHouseClient;
let env: Record<string, string>;
const services: Record<string, RunningService> = {};
let ca = '';
const ports = { redis: 0, chHttp: 0, chTcp: 0, http: 0, smtp: 0 };

const startRedisHere = async () =>
  (redis = await startRedis({ dir: join(dir, 'redis'), port: ports.redis, log: () => {} }));
const startClickHouseHere = async () =>
  (clickhouse = await startClickHouse({
    dir: join(dir, 'clickhouse'),
    httpPort: ports.chHttp,
    tcpPort: ports.chTcp,
    log: () => {},
  }));

function start(name: 'worker' | 'http-receiver' | 'smtp-receiver'): RunningService {
  services[name] = startService(name, env);
  return services[name];
}

beforeAll(async () => {
  dir = join(inject('dataDir'), `faults-${randomUUID()}`);
  for (const k of Object.keys(ports) as Array<keyof typeof ports>) ports[k] = await freePort();
  await startRedisHere();
  await startClickHouseHere();
  config = loadConfig({
    NODE_ENV: 'test',
    LOG_LEVEL: 'error',
    DATA_DIR: dir,
    REDIS_URL: `redis://127.0.0.1:${ports.redis}`,
    CLICKHOUSE_URL: `http://127.0.0.1:${ports.chHttp}`,
    CLICKHOUSE_DATABASE: 'faults',
    CLICKHOUSE_REQUEST_TIMEOUT_MS: '5000',
    HTTP_HOST: '127.0.0.1',
    HTTP_PORT: String(ports.http),
    HTTP_ENQUEUE_TIMEOUT_MS: '1000',
    SMTP_HOST: '127.0.0.1',
    SMTP_PORT: String(ports.smtp),
    SMTP_ENQUEUE_TIMEOUT_MS: '1000',
    WORKER_METRICS_PORT: '0',
    SMTP_METRICS_PORT: '0',
    HTTP_METRICS_PORT: '0',
    WORKER_BATCH_MAX_WAIT_MS: '100',
  });
  await migrate(config);
  ch = createClickHouse(config);
  env = configEnv(config);
  start('http-receiver');
  await waitUntil('certificate', () => readFile(devCertPaths(dir).cert).then(() => true), 30_000);
  ca = await readFile(devCertPaths(dir).cert, 'utf8');
  start('smtp-receiver');
  start('worker');
});

afterAll(async () => {
  for (const s of Object.values(services)) await s.stop('SIGKILL');
  await ch?.close();
  await clickhouse?.stop();
  await redis?.stop();
});

const agent = new Agent({ keepAlive: true, maxSockets: 20 });
const statuses: Record<string, number> = {};
const count = (k: string) => (statuses[k] = (statuses[k] ?? 0) + 1);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const post = (body: Buffer) => postReport(ports.http, ca, body, { agent, timeoutMs: 15_000 });

/** A sender that retries until the report is acknowledged, as RFC 8460 senders do. */
async function sendHttps(body: Buffer, acked: string[]): Promise<void> {
  for (;;) {
    const r = await post(body);
    count(`http ${r.status}`);
    if (r.id) return void acked.push(r.id);
    await sleep(250);
  }
}

const transport = () =>
  createTransport({
    host: '127.0.0.1',
    port: ports.smtp,
    secure: false,
    requireTLS: true,
    tls: { ca, servername: 'localhost' },
    connectionTimeout: 5000,
    greetingTimeout: 5000,
    socketTimeout: 15000,
  });

async function sendSmtp(body: Buffer, acked: string[]): Promise<void> {
  const raw = reportMail({ reports: [{ json: '', raw: body }], domain: 'faults.example', submitter: 'faults.example' });
  for (;;) {
    const t = transport();
    try {
      const info = await t.sendMail({ envelope: { from: 'tlsrpt@faults.example', to: ['tlsrpt@localhost'] }, raw });
      count('smtp 250');
      for (const id of info.response.split(' queued as ')[1]?.trim().split(' ') ?? []) acked.push(id);
      return;
    } catch (err) {
      count(`smtp ${(err as { responseCode?: number }).responseCode ?? 'error'}`);
      await sleep(250);
    } finally {
      t.close();
    }
  }
}

describe('faults under load', () => {
  it('loses nothing and counts nothing twice', { timeout: 600_000 }, async () => {
    const random = rng(99);
    const reports = Array.from({ length: REPORTS }, (_, i) => makeReport(random, i, { maxPolicies: 4, maxDetails: 4 }));
    // Expected figures, computed from the sent reports: per domain, the sum over every policy entry (policy_daily),
    // and the API's rule, the largest entry per report and domain summed over reports (domain summary).
    const expected = new Map<string, number>();
    const expectedOnce = new Map<string, number>();
    for (const r of reports as Array<{
      policies: Array<{ policy: { 'policy-domain': string }; summary: { 'total-successful-session-count': number } }>;
    }>) {
      const perReport = new Map<string, number>();
      for (const p of r.policies) {
        const d = p.policy['policy-domain'];
        const n = p.summary['total-successful-session-count'];
        expected.set(d, (expected.get(d) ?? 0) + n);
        perReport.set(d, Math.max(perReport.get(d) ?? 0, n));
      }
      for (const [d, n] of perReport) expectedOnce.set(d, (expectedOnce.get(d) ?? 0) + n);
    }
    const acked: string[] = [];
    let sent = 0;
    const faults: string[] = [];

    // The load is paced (one report every 15 ms, 75 s in all) so that every fault lands in the middle of it.
    const injector = (async () => {
      const at = async (n: number) => {
        while (sent < n) await sleep(50);
      };
      await at(400);
      faults.push('kill -9 worker');
      await services.worker!.stop('SIGKILL');
      await sleep(1000);
      start('worker');

      await at(800);
      faults.push('restart clickhouse');
      await clickhouse.stop();
      await startClickHouseHere();

      // The long outage early, so that the faults after it land while ClickHouse is away and the queue holds
      // retries: a Redis restart and both receivers killed with a backlog waiting.
      await at(1200);
      faults.push(`clickhouse down ${CH_DOWN_MS / 1000} s`);
      await clickhouse.stop();
      const back = sleep(CH_DOWN_MS).then(startClickHouseHere);

      await at(1800);
      faults.push('restart redis');
      await redis.stop();
      await sleep(3000); // long enough for both receivers to be asked and refuse
      expect(services['http-receiver']!.child.exitCode).toBeNull();
      expect(services['smtp-receiver']!.child.exitCode).toBeNull();
      await startRedisHere();

      await at(2600);
      faults.push('kill -9 http-receiver with connections open');
      await services['http-receiver']!.stop('SIGKILL');
      await sleep(500);
      start('http-receiver');

      await at(3200);
      faults.push('kill -9 smtp-receiver with connections open');
      await services['smtp-receiver']!.stop('SIGKILL');
      await sleep(500);
      start('smtp-receiver');
      await back;
    })();

    // 4 of 5 reports over HTTPS, 1 of 5 over SMTP, 25 senders at a time.
    let next = 0;
    const t0 = Date.now();
    const take = () => (next < reports.length ? next++ : -1);
    const lane = async (smtp: boolean) => {
      for (let i = take(); i >= 0; i = take()) {
        const due = t0 + i * 15;
        if (due > Date.now()) await sleep(due - Date.now());
        const body = gzipSync(JSON.stringify(reports[i]));
        await (smtp && i % 5 === 0 ? sendSmtp(body, acked) : sendHttps(body, acked));
        sent++;
      }
    };
    await Promise.all([
      ...Array.from({ length: 20 }, () => lane(false)),
      ...Array.from({ length: 5 }, () => lane(true)),
    ]);
    await injector;
    expect(faults).toHaveLength(6);

    // While Redis was down the receivers refused, and stayed up.
    expect(statuses['http 503'] ?? 0).toBeGreaterThan(0);
    expect(Object.keys(statuses).some((k) => k === 'smtp 451' || k === 'smtp 421' || k === 'smtp error')).toBe(true);

    // The backlog drains: every acknowledged receipt is stored. Waits on the acknowledged ids themselves, not on the
    // count of all receipts: receipts stored but never acknowledged (a receiver killed before answering, the sender
    // then sending again) can bring that count to the target while an acknowledged one still waits out its retry
    // backoff after the ClickHouse outage (one run found 4,999 of 5,000 right after such a count was reached).
    const ids = [...new Set(acked)];
    const storedOf = async (): Promise<number> => {
      let n = 0;
      for (let i = 0; i < ids.length; i += 2000) {
        const [r] = await queryRows<{ n: number }>(
          ch,
          `SELECT uniqExact(receipt_id) AS n FROM receipts WHERE receipt_id IN (${ids
            .slice(i, i + 2000)
            .map((x) => `'${x}'`)
            .join(',')})`,
        );
        n += r!.n;
      }
      return n;
    };
    await until(
      'every acknowledged receipt stored',
      async () => ((await storedOf()) >= ids.length ? true : undefined),
      240_000,
    );
    const found = await storedOf();
    expect(found).toBe(ids.length);

    // Each report exactly once, and the figures equal the sums over the sent reports.
    const [distinct] = await queryRows<{ n: number }>(ch, 'SELECT count() AS n FROM reports_dedup');
    expect(distinct!.n).toBe(REPORTS);
    const daily = await queryRows<{ policy_domain: string; s: number }>(
      ch,
      'SELECT policy_domain, sum(successful_sessions) AS s FROM policy_daily GROUP BY policy_domain',
    );
    expect(new Map(daily.map((d) => [d.policy_domain, d.s]))).toEqual(expected);
    const db = createDb(ch, { timeoutSeconds: 30, maxRows: 100_000 });
    for (const [domain, sessions] of [...expectedOnce].slice(0, 20)) {
      const summary = await domainSummary(db, domain, { from: '2025-01-01', to: '2025-12-31' });
      expect(summary.successfulSessions, domain).toBe(sessions);
    }
  });
});
