// The api and scheduler services as they run (services/api/main.ts, services/scheduler/main.ts): health, metrics, a
// query; the scheduler's incident evaluation, whose events a poller gets from the API's alert feed.
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../dev/stack.ts';
import type { ClickHouseClient } from '../../services/common/clickhouse.ts';
import { queryRows, storeDirectly, testConfig, testDatabase, until } from '../helpers/env.ts';
import { configEnv, startService, untilAnswering, type RunningService } from '../helpers/services.ts';

const config = testConfig({
  API_TOKENS: JSON.stringify([{ name: 't', token: 'service-token-1' }]),
  ALERT_EVAL_INTERVAL_MS: '200',
});
let ch: ClickHouseClient;
let api: RunningService;
let scheduler: RunningService;
let base: string;

beforeAll(async () => {
  ch = await testDatabase(config);
  // A day of failures under MTA-STS enforce, yesterday: the evaluator must raise an alert for it by itself.
  const day = new Date(Date.now() - 86400_000).toISOString().slice(0, 10);
  const report = JSON.stringify({
    'organization-name': 'Svc Org',
    'date-range': { 'start-datetime': `${day}T00:00:00Z`, 'end-datetime': `${day}T23:59:59Z` },
    'contact-info': 'x@svc.example',
    'report-id': 'svc-1',
    policies: [
      {
        policy: {
          'policy-type': 'sts',
          'policy-domain': 'svc.example',
          'policy-string': ['version: STSv1', 'mode: enforce', 'mx: mx.svc.example', 'max_age: 86400'],
        },
        summary: { 'total-successful-session-count': 500, 'total-failure-session-count': 100 },
        'failure-details': [
          {
            'result-type': 'certificate-expired',
            'receiving-mx-hostname': 'mx.svc.example',
            'failed-session-count': 100,
          },
        ],
      },
    ],
  });
  await storeDirectly(ch, gzipSync(report), 'svc-r1');
  const port = await freePort();
  api = startService('api', configEnv(config, { API_PORT: port, API_HOST: '127.0.0.1', LOG_LEVEL: 'warn' }));
  base = `http://127.0.0.1:${port}`;
  const opsPort = await freePort();
  scheduler = startService('scheduler', configEnv(config, { SCHEDULER_METRICS_PORT: opsPort, LOG_LEVEL: 'warn' }));
  await untilAnswering(scheduler, 'scheduler up', `http://127.0.0.1:${opsPort}/readyz`);
  await untilAnswering(api, 'api up', `${base}/healthz`);
});

afterAll(async () => {
  expect(await api.stop()).toBe(0);
  expect(await scheduler.stop()).toBe(0);
  await ch.command({ query: `DROP DATABASE IF EXISTS ${config.CLICKHOUSE_DATABASE}` });
  await ch.close();
});

describe('the api and scheduler services', () => {
  it('is ready with Redis and ClickHouse, serves its OpenAPI document and queries', async () => {
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    const doc = (await (await fetch(`${base}/openapi.json`)).json()) as { openapi: string };
    expect(doc.openapi).toBe('3.1.0');
    const res = await fetch(`${base}/v1/domains`, { headers: { authorization: 'Bearer service-token-1' } });
    expect(await res.json()).toMatchObject({
      domains: [{ domain: 'svc.example', failedSessions: 100, status: 'failing' }],
    });
    // Metrics describe every tenant: operators' tokens only.
    expect((await fetch(`${base}/metrics`)).status).toBe(401);
    const metrics = await (
      await fetch(`${base}/metrics`, { headers: { authorization: 'Bearer service-token-1' } })
    ).text();
    expect(metrics).toMatch(/tlsrpt_api_responses_total\{[^}]*route="\/v1\/domains"[^}]*status="200"[^}]*\} 1/);
  });

  it('the scheduler finds the incident by itself, and a poller gets its event from the API', async () => {
    const alerts = await until('alerts', async () => {
      const r = (await (
        await fetch(`${base}/v1/alerts?since=0`, { headers: { authorization: 'Bearer service-token-1' } })
      ).json()) as { alerts: Array<{ rule: string; title: string }> };
      return r.alerts.length >= 1 ? r.alerts : undefined;
    });
    expect(alerts.map((a) => [a.rule, a.title])).toEqual([
      ['incident-opened', 'svc.example: certificate-expired at mx.svc.example — opened'],
    ]);
    // Evaluated every 200 ms for a while now: still exactly this event.
    await new Promise((r) => setTimeout(r, 600));
    const [row] = await queryRows<{ n: number }>(ch, 'SELECT count() AS n FROM alerts');
    expect(row!.n).toBe(1);
  });
});

describe('start-up outside development', () => {
  /** Starts a service with NODE_ENV=production and these settings; its exit code and output once it exits. */
  const production = async (name: 'api' | 'http-receiver' | 'smtp-receiver', overrides: Record<string, string>) => {
    const port = String(await freePort());
    const s = startService(
      name,
      configEnv(config, {
        NODE_ENV: 'production',
        API_PORT: port,
        HTTP_PORT: port,
        SMTP_PORT: port,
        API_HOST: '127.0.0.1',
        HTTP_HOST: '127.0.0.1',
        SMTP_HOST: '127.0.0.1',
        ...overrides,
      }),
    );
    const code = await until(`${name} exits`, async () => s.child.exitCode ?? undefined, 20_000).catch(
      async () => (await s.stop(), null),
    );
    return { code, output: s.output() };
  };

  it('refuses the development defaults, naming each setting', async () => {
    const api = await production('api', {});
    expect(api.code).toBeGreaterThan(0);
    expect(api.output).toContain('MTA_STS_RUA=mailto:tlsrpt@localhost');
    expect(api.output).toContain('MTA_STS_HOST_TARGET=localhost');
    const smtp = await production('smtp-receiver', {});
    expect(smtp.code).toBeGreaterThan(0);
    expect(smtp.output).toContain('TLS_CERT_FILE / TLS_KEY_FILE are empty');
    expect(smtp.output).toContain('SMTP_RECIPIENTS=tlsrpt@localhost');
    const http = await production('http-receiver', {});
    expect(http.code).toBeGreaterThan(0);
    expect(http.output).toContain('TLS_CERT_FILE / TLS_KEY_FILE are empty');
  });

  it('starts once they are set', async () => {
    const port = await freePort();
    const api = startService(
      'api',
      configEnv(config, {
        NODE_ENV: 'production',
        API_PORT: port,
        API_HOST: '127.0.0.1',
        MTA_STS_RUA: 'mailto:tlsrpt@reports.example.net',
        MTA_STS_HOST_TARGET: 'mta-sts.example.net',
      }),
    );
    await untilAnswering(api, 'api up in production', `http://127.0.0.1:${port}/healthz`);
    expect(await api.stop()).toBe(0);
  });
});
