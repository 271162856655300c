// Redis as production runs it when it must be reached over a network: a master, two replicas and three Sentinels,
// the data servers and the Sentinels each with a password, and TLS everywhere (clients, replication, Sentinel links),
// from a private CA the services trust through REDIS_TLS_CA_FILE. The receiver acknowledges a report only once a
// replica holds it (REDIS_ACK_REPLICAS=1), the worker stores it, and both follow a failover; a receiver with a wrong
// password says so and takes no report.
import { randomUUID } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startSentinelSet, type SentinelSet } from '../../dev/sentinel.ts';
import { freePort, waitUntil } from '../../dev/stack.ts';
import type { ClickHouseClient } from '../../services/common/clickhouse.ts';
import type { Config } from '../../services/common/config.ts';
import { devCertPaths } from '../../services/common/tls.ts';
import { testCa } from '../helpers/dns-and-ca.ts';
import { queryRows, testConfig, testDatabase, until } from '../helpers/env.ts';
import { configEnv, postReport, startService, type RunningService } from '../helpers/services.ts';

const PASSWORD = 'data-secret-1';
const SENTINEL_PASSWORD = 'sentinel-secret-1';
let set: SentinelSet;
let config: Config;
let ch: ClickHouseClient;
let dir: string;
let ca = '';
let port = 0;
const services: RunningService[] = [];

const report = (n: number) =>
  gzipSync(
    JSON.stringify({
      'organization-name': 'Secured Org',
      'date-range': { 'start-datetime': '2026-12-01T00:00:00Z', 'end-datetime': '2026-12-01T23:59:59Z' },
      'contact-info': 'x@secured.example',
      'report-id': `secured-${n}`,
      policies: [
        {
          policy: { 'policy-type': 'no-policy-found', 'policy-domain': 'secured.example' },
          summary: { 'total-successful-session-count': n, 'total-failure-session-count': 0 },
        },
      ],
    }),
  );

beforeAll(async () => {
  dir = join(inject('dataDir'), `secured-${randomUUID().slice(0, 8)}`);
  await mkdir(dir, { recursive: true });
  const authority = await testCa('Redis Test CA');
  const leaf = await authority.issue('localhost', { ips: ['127.0.0.1'] });
  const files = { cert: join(dir, 'redis.pem'), key: join(dir, 'redis.key'), ca: join(dir, 'ca.pem') };
  await writeFile(files.cert, leaf.cert);
  await writeFile(files.key, leaf.private, { mode: 0o600 });
  await writeFile(files.ca, authority.cert);
  set = await startSentinelSet({
    dir: join(dir, 'redis'),
    log: () => {},
    auth: { password: PASSWORD, sentinelPassword: SENTINEL_PASSWORD },
    tls: files,
  });
  port = await freePort();
  config = testConfig({
    LOG_LEVEL: 'error',
    DATA_DIR: dir,
    // With Sentinels the URL gives only the data servers' password and TLS (rediss://); its host is not used.
    REDIS_URL: `rediss://:${PASSWORD}@127.0.0.1:1/0`,
    REDIS_SENTINELS: set.sentinels,
    REDIS_SENTINEL_MASTER: set.masterName,
    REDIS_SENTINEL_PASSWORD: SENTINEL_PASSWORD,
    REDIS_SENTINEL_TLS: 'true',
    REDIS_TLS_CA_FILE: files.ca,
    REDIS_ACK_REPLICAS: '1',
    REDIS_ACK_TIMEOUT_MS: '2000',
    HTTP_HOST: '127.0.0.1',
    HTTP_PORT: String(port),
    HTTP_ENQUEUE_TIMEOUT_MS: '2000',
    WORKER_LOCK_MS: '10000',
  });
  ch = await testDatabase(config);
  services.push(startService('http-receiver', configEnv(config)), startService('worker', configEnv(config)));
  await waitUntil('certificate', () => readFile(devCertPaths(dir).cert).then(() => true), 30_000);
  ca = await readFile(devCertPaths(dir).cert, 'utf8');
}, 120_000);

afterAll(async () => {
  for (const s of services) await s.stop();
  await set?.stop();
  await ch.command({ query: `DROP DATABASE IF EXISTS ${config.CLICKHOUSE_DATABASE}` });
  await ch.close();
});

/** Posts until acknowledged (a receiver still connecting, or a failover under way, answers 503). */
const acknowledged = (n: number) =>
  until(
    `report ${n} acknowledged`,
    async () => ((await postReport(port, ca, report(n))).status === 202 ? true : undefined),
    60_000,
  );

const stored = (n: number) =>
  until(
    `report ${n} stored`,
    async () => {
      const rows = await queryRows<{ n: string }>(
        ch,
        `SELECT count() AS n FROM reports WHERE report_id = 'secured-${n}'`,
      );
      return Number(rows[0]?.n) === 1 ? true : undefined;
    },
    60_000,
  );

describe('Redis through Sentinels with passwords and TLS', () => {
  it('acknowledges once a replica holds the report, stores it, and does again after a failover', async () => {
    await acknowledged(1);
    await stored(1);
    const before = await set.masterPort();
    set.kill(before);
    await until('a replica promoted', async () => ((await set.masterPort()) !== before ? true : undefined), 60_000);
    await acknowledged(2);
    await stored(2);
  }, 180_000);

  it('a receiver with the wrong password says why and takes no report: it listens only once its queue is ready', async () => {
    const wrongPort = await freePort();
    const wrong = startService(
      'http-receiver',
      configEnv({
        ...config,
        LOG_LEVEL: 'warn',
        REDIS_URL: `rediss://:not-the-password@127.0.0.1:1/0`,
        HTTP_PORT: wrongPort,
      }),
    );
    services.push(wrong);
    await until(
      'the refusal logged',
      async () =>
        /"msg":"redis connection error"/.test(wrong.output()) && /WRONGPASS/.test(wrong.output()) ? true : undefined,
      30_000,
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n${wrong.output().slice(0, 3000)}`);
    });
    // Refused at the TCP level: a sender keeps its report and tries again later; nothing is acknowledged.
    expect((await postReport(wrongPort, ca, report(3))).status).toBe(0);
    const rows = await queryRows<{ n: string }>(ch, "SELECT count() AS n FROM reports WHERE report_id = 'secured-3'");
    expect(Number(rows[0]?.n)).toBe(0);
  }, 60_000);
});
