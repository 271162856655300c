/* eslint-disable @typescript-eslint/no-explicit-any, @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-member-access, @typescript-eslint/no-unsafe-call, @typescript-eslint/no-unsafe-argument -- response bodies are untyped JSON, checked by the assertions */
// The query API and alerts over real ClickHouse, with rows written by the worker's own code path.
import { insertMarginSeconds } from '../../services/scheduler/insert-margin.ts';
import { createServer, type Server } from 'node:http';
import { createHash } from 'node:crypto';
import { connect as netConnect, type AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClickHouseClient } from '../../services/common/clickhouse.ts';
import { createLogger } from '../../services/common/logger.ts';
import { quoteString } from '../../services/common/clickhouse-compat.ts';
import {
  ALERT_MAX_PER_RULE,
  alertSequence,
  evaluateAlerts,
  daysToEvaluate,
  type ReserveSeq,
} from '../../services/scheduler/alert-evaluation.ts';
import { createApi } from '../../services/api/server.ts';
import { forwardRetry } from '../../services/common/forwarding.ts';
import { RULES } from '../../services/scheduler/rules/index.ts';
import type { RuleName } from '../../services/scheduler/rules/rule-kit.ts';
import { redisSessions } from '../../services/api/ui/sessions.ts';
import { createDb, type Db } from '../../services/api/queries.ts';
import { createWebhookQueue, createWebhookWorker, enqueueAlerts, signBody } from '../../services/scheduler/webhooks.ts';
import { BatchWriter } from '../../services/worker/batch-writer.ts';
import { processReportJob } from '../../services/worker/process-job.ts';
import { corpusReports, sourcePolicies } from '../helpers/corpus.ts';
import { queryRows, testConfig, testDatabase, until, testWriter } from '../helpers/env.ts';

/** The per-day rules of earlier releases, off by default since incidents. */
const LEGACY_RULES = Object.keys(RULES) as RuleName[];
const ADMIN = 'admin-token-123456';
const LIMITED = 'limited-token-123456';
const config = testConfig({
  API_TOKENS: JSON.stringify([
    { name: 'admin', sha256: createHash('sha256').update(ADMIN).digest('hex') },
    { name: 'limited', token: LIMITED, domains: ['random.net'] },
  ]),
});
let ch: ClickHouseClient;
let db: Db;
let server: Server;
let base: string;
let writer: BatchWriter;
let seq: ReserveSeq;
let seqRedis: Redis;

let receipt = 0;
async function store(json: string | Buffer): Promise<void> {
  const body = Buffer.isBuffer(json) ? json : Buffer.from(json);
  const job = {
    v: 1,
    receiptId: `api-test-${++receipt}`,
    receivedAt: new Date().toISOString(),
    channel: 'https',
    bodyBase64: body.toString('base64'),
  };
  await writer.write(processReportJob(job, job.receiptId, { maxDecompressedBytes: 50 * 1024 * 1024 }).rows);
}

function report(
  org: string,
  domain: string,
  day: string,
  ok: number,
  failed: number,
  extra: Record<string, unknown> = {},
) {
  return JSON.stringify({
    'organization-name': org,
    'date-range': { 'start-datetime': `${day}T00:00:00Z`, 'end-datetime': `${day}T23:59:59Z` },
    'contact-info': 'x@example.net',
    'report-id': `${org}-${domain}-${day}`,
    policies: [
      {
        policy: {
          'policy-type': 'sts',
          'policy-domain': domain,
          'policy-string': ['version: STSv1', 'mode: enforce', `mx: mx.${domain}`, 'max_age: 86400'],
        },
        summary: { 'total-successful-session-count': ok, 'total-failure-session-count': failed },
        ...extra,
      },
    ],
  });
}

async function get(path: string, token = ADMIN) {
  const res = await fetch(`${base}${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> & Record<string, any> };
}

beforeAll(async () => {
  ch = await testDatabase(config);
  db = createDb(ch, { timeoutSeconds: 10, maxRows: 10_000 });
  writer = testWriter(config, ch, { maxRows: 10_000, maxWaitMs: 10 });
  seqRedis = new Redis(config.REDIS_URL);
  seq = alertSequence(seqRedis, `${config.QUEUE_NAME}:alert-seq`, db);
  for (const r of corpusReports()) await store(r.body);
  await store('this is not a report');
  server = await createApi(config, {
    db,
    logger: createLogger('api-test', 'silent'),
    registry: new Registry(),
    ready: async () => true,
    sessions: redisSessions(seqRedis, config.QUEUE_NAME, 3600),
    clickhouse: ch,
    forwards: forwardRetry(seqRedis, config.QUEUE_NAME),
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  seqRedis.disconnect();
  await new Promise<void>((r) => server.close(() => r()));
  await ch.command({ query: `DROP DATABASE IF EXISTS ${config.CLICKHOUSE_DATABASE}` });
  await ch.close();
});

describe('authentication', () => {
  it('no answer of tenant data may be cached: every JSON answer says no-store', async () => {
    for (const [path, token] of [
      ['/v1/domains', ADMIN],
      ['/v1/domains', ''],
      ['/v1/rejects', LIMITED],
      ['/v1/nowhere', ADMIN],
    ] as const) {
      const res = await fetch(`${base}${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
      expect(res.headers.get('cache-control'), path).toBe('no-store');
    }
  });
  it('401 without a token or with a wrong one, with a JSON body', async () => {
    expect(await get('/v1/domains', '')).toMatchObject({ status: 401, body: { error: 'unauthorized' } });
    expect((await get('/v1/domains', 'wrong-token-xxxxxxxx')).status).toBe(401);
  });
  it('a token limited to some domains sees only those, and no operator endpoints', async () => {
    expect((await get('/v1/domains/company-y.example/summary?from=2016-04-01&to=2016-04-01', LIMITED)).status).toBe(
      403,
    );
    expect((await get('/v1/rejects', LIMITED)).status).toBe(403);
    const all = await get('/v1/domains?from=2025-05-01&to=2025-06-30', LIMITED);
    expect(all.body.domains.map((d: { domain: string }) => d.domain)).toEqual(['random.net']);
    const reports = await get('/v1/reports?from=2016-01-01&to=2026-12-31&limit=500', LIMITED);
    expect(reports.body.reports.map((r: { organization: string }) => r.organization)).toEqual([
      'Microsoft Corporation',
    ]);
  });
});

describe('a domain no report was about', () => {
  it('is a 404 with its reason, not zeros; a known domain with nothing in the range is zeros', async () => {
    for (const path of ['summary', 'daily', 'failures']) {
      const typo = await get(`/v1/domains/random.nett/${path}?from=2025-05-23&to=2025-05-23`);
      expect(typo, path).toMatchObject({
        status: 404,
        body: { error: 'not-found', message: 'no reports for random.nett' },
      });
    }
    const quiet = await get('/v1/domains/random.net/summary?from=2024-05-23&to=2024-05-23');
    expect(quiet).toMatchObject({ status: 200, body: { successfulSessions: 0, failedSessions: 0, reports: 0 } });
  });
});

describe('figures match the source reports', () => {
  it('domain summary counts each session once (Microsoft sts + tlsa) and splits by type', async () => {
    const { body } = await get('/v1/domains/random.net/summary?from=2025-05-23&to=2025-05-23');
    expect(body).toMatchObject({ successfulSessions: 2, failedSessions: 0, reports: 1 });
    expect(body.byPolicy).toEqual([
      expect.objectContaining({ policyType: 'sts', stsMode: 'enforce', successfulSessions: 2 }),
      expect.objectContaining({ policyType: 'tlsa', stsMode: '', successfulSessions: 2 }),
    ]);
  });

  it('the RFC example: totals, failure breakdown with an other bucket, all equal to the source', async () => {
    const source = sourcePolicies(
      corpusReports().find((r) => r.file.includes('kravietz__tlsrpt-rs__tlsrpt_fixtures_rfc8460.json'))!.json,
    )[0]!;
    const summary = await get('/v1/domains/company-y.example/summary?from=2016-04-01&to=2016-04-01');
    expect(summary.body).toMatchObject({ successfulSessions: source.successful, failedSessions: source.failed });
    const byType = await get(
      '/v1/domains/company-y.example/failures?from=2016-04-01&to=2016-04-01&by=result-type&limit=2',
    );
    const detailSum = source.details.reduce((a, d) => a + Number(d['failed-session-count']), 0);
    expect(byType.body.totalFailedSessions).toBe(detailSum);
    expect(byType.body.buckets).toHaveLength(2);
    const shown = byType.body.buckets.reduce((a: number, b: { failedSessions: number }) => a + b.failedSessions, 0);
    expect(shown + byType.body.other.failedSessions).toBe(detailSum);
    for (const by of ['organization', 'receiving-mx', 'sending-ip', 'reason-code']) {
      const r = await get(`/v1/domains/company-y.example/failures?from=2016-04-01&to=2016-04-01&by=${by}`);
      expect(r.status, by).toBe(200);
      expect(r.body.totalFailedSessions, by).toBe(detailSum);
    }
  });

  it('daily series covers every day of the range', async () => {
    const { body } = await get('/v1/domains/company-y.example/daily?from=2016-03-30&to=2016-04-02');
    expect(body.days.map((d: { day: string }) => d.day)).toEqual([
      '2016-03-30',
      '2016-03-31',
      '2016-04-01',
      '2016-04-02',
    ]);
    expect(body.days[2]).toMatchObject({ successfulSessions: 5326, failedSessions: 303 });
    expect(body.days[0]).toMatchObject({ successfulSessions: 0, failedSessions: 0, reports: 0 });
  });

  it('domains: latest day, failure rate and status', async () => {
    const { body } = await get('/v1/domains?from=2024-01-09&to=2024-01-09');
    expect(body.domains).toEqual([
      expect.objectContaining({
        domain: 'example.com',
        latestDay: '2024-01-09',
        failedSessions: 3,
        failureRate: 1,
        status: 'failing',
      }),
    ]);
  });

  it('reports page by cursor through every report exactly once; one report in full with its raw JSON', async () => {
    const keys: string[] = [];
    let next: string | null = null;
    do {
      const page = await get(`/v1/reports?from=2016-01-01&to=2026-12-31&limit=4${next ? `&cursor=${next}` : ''}`);
      expect(page.status).toBe(200);
      keys.push(...page.body.reports.map((r: { reportKey: string }) => r.reportKey));
      next = page.body.next as string | null;
    } while (next);
    const [distinct] = await queryRows<{ n: number }>(ch, 'SELECT count() AS n FROM reports_dedup');
    expect(keys).toHaveLength(distinct!.n);
    expect(new Set(keys).size).toBe(keys.length);
    const ms = corpusReports().find((r) => r.file.includes('sebastka__tlsrpt__test_fixtures_microsoft-tlsa-sts.json'))!;
    const found = await get(`/v1/reports?from=2026-08-18&to=2026-08-18&domain=karlsen.fr`);
    const full = await get(`/v1/reports/${found.body.reports[0].reportKey}`);
    expect(full.body.raw).toEqual(JSON.parse(ms.json));
    expect(full.body.policies.map((p: { policy_type: string }) => p.policy_type)).toEqual(['tlsa', 'sts']);
    expect(full.body.receipts[0]).toMatchObject({ channel: 'https' });
    expect((await get('/v1/reports/0123456789abcdef0123456789abcdef')).status).toBe(404);
  });

  it('each failure detail of a report carries its diagnosis, rendered with its evidence', async () => {
    const list = await get('/v1/reports?from=2016-04-01&to=2016-04-01&domain=company-y.example');
    const full = await get(`/v1/reports/${list.body.reports[0].reportKey}`);
    const details = full.body.policies.flatMap((p: { failureDetails: unknown[] }) => p.failureDetails);
    expect(details.length).toBeGreaterThan(0);
    for (const d of details as Array<{
      result_type: string;
      diagnosis: { sentence: string; resultType: string; fix: string[] };
    }>) {
      expect(d.diagnosis.resultType).toBe(d.result_type);
      expect(d.diagnosis.sentence).toMatch(
        new RegExp(`^${full.body.report.organization} reported \\d+ failed session`),
      );
      expect(d.diagnosis.fix.length).toBeGreaterThan(0);
    }
    const kb = await get('/v1/diagnoses');
    expect(Object.keys(kb.body.resultTypes)).toContain('sts-policy-fetch-error');
  });

  it('domains page by name, and a prefix finds by the start of the name', async () => {
    const all = await get('/v1/domains?from=2025-01-01&to=2025-12-31');
    const names = all.body.domains.map((d: { domain: string }) => d.domain);
    expect(names.length).toBeGreaterThan(2);
    expect(all.body.next).toBeNull();
    const paged: string[] = [];
    let next: string | null = null;
    do {
      const page = await get(`/v1/domains?from=2025-01-01&to=2025-12-31&limit=1${next ? `&cursor=${next}` : ''}`);
      paged.push(...page.body.domains.map((d: { domain: string }) => d.domain));
      next = page.body.next as string | null;
    } while (next);
    expect(paged).toEqual(names);
    const c = await get('/v1/domains?from=2025-01-01&to=2025-12-31&prefix=C');
    expect(c.body.domains.map((d: { domain: string }) => d.domain)).toEqual(
      names.filter((n: string) => n.startsWith('c')),
    );
    expect((await get("/v1/domains?prefix=a'b")).status).toBe(400);
  });

  it('rejects, for the operators', async () => {
    const today = new Date().toISOString().slice(0, 10);
    const { body } = await get(`/v1/rejects?from=${today}&to=${today}`);
    expect(body.rejects).toEqual([expect.objectContaining({ reason: 'not-json', channel: 'https' })]);
  });
});

describe('hostile parameters', () => {
  const attempts = [
    "/v1/domains?from=2024-01-01'%20OR%20'1'='1",
    '/v1/domains?to=2024-13-45',
    '/v1/domains?from=2024-02-01&to=2024-01-01',
    '/v1/domains?from=2000-01-01&to=2024-01-01',
    "/v1/domains/x'%20OR%201=1%20--/summary",
    '/v1/domains/%00evil/daily',
    '/v1/domains/example.com/failures?by=result_type;DROP%20TABLE%20reports',
    '/v1/domains/example.com/failures?limit=1;DROP',
    '/v1/domains/example.com/failures?limit=100000',
    "/v1/reports?domain=a'b",
    `/v1/reports?cursor=${Buffer.from(JSON.stringify({ day: "2024-01-01' OR 1=1 --", key: 'x' })).toString('base64url')}`,
    '/v1/reports?cursor=not-base64-json',
    '/v1/reports?limit=-1',
    '/v1/reports?unknown=1',
    '/v1/reports?limit=1&limit=2',
    "/v1/reports/abc'def",
    `/v1/rejects?cursor=${Buffer.from(JSON.stringify({ at: "1' OR '1", id: 'x' })).toString('base64url')}`,
    '/v1/alerts?since=1%20OR%201=1',
    '/v1/alerts?since=-5',
    // Each of these ended the process before (issue 12): bad percent-escapes, a cursor past 2^53, __proto__.
    '/v1/domains/%/summary',
    '/v1/domains/%zz/summary',
    '/v1/domains/%C0%80/daily',
    '/v1/domains/%ED%A0%80/failures',
    '/v1/reports/%E0%A4%A',
    '/v1/alerts?since=90071992547409930',
    '/v1/alerts?since=999999999999999999',
    '/v1/domains?__proto__=1',
    '/v1/domains?constructor=1&toString=2',
  ];
  for (const path of attempts) {
    it(`400 or 404 for ${path.slice(0, 80)}`, async () => {
      const res = await get(path);
      expect([400, 404]).toContain(res.status);
      if (res.status === 400)
        expect(res.body).toMatchObject({
          error: 'invalid-parameter',
          field: expect.any(String),
          reason: expect.any(String),
        });
    });
  }
  it('and the data is untouched', async () => {
    const [row] = await queryRows<{ n: number }>(ch, 'SELECT count() AS n FROM reports_dedup');
    expect(row!.n).toBeGreaterThan(10);
  });
});

describe('request targets the URL parser refuses', () => {
  // Raw, since fetch would normalize them; each one ended the process before.
  const targets = ['//[', '//%', '//a:99999/v1/domains', '//@/', '/\\[', 'http://[/v1/domains', '*'];
  for (const target of targets) {
    it(`GET ${target}: an answer, and the API still serves`, async () => {
      const answer = await rawRequest(`GET ${target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN}\r\n\r\n`);
      expect(answer).toMatch(/^HTTP\/1\.1 (400|404) /);
      expect((await get('/v1/domains')).status).toBe(200);
    });
  }
  it('after a good request on the same keep-alive connection', async () => {
    const answer = await rawRequest(
      `GET /v1/domains HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN}\r\n\r\nGET //[ HTTP/1.1\r\nHost: x\r\n\r\n`,
      2,
    );
    expect(answer).toMatch(/^HTTP\/1\.1 200 [\s\S]*HTTP\/1\.1 (400|404) /);
    expect((await get('/v1/domains')).status).toBe(200);
  });
});

/** Sends raw bytes to the API; resolves with what came back once `responses` status lines arrived or it closed. */
function rawRequest(text: string, responses = 1): Promise<string> {
  return new Promise((resolve) => {
    const s = netConnect(Number(new URL(base).port), '127.0.0.1', () => s.write(text));
    let got = '';
    const done = () => {
      s.destroy();
      resolve(got);
    };
    s.on('data', (d: Buffer) => {
      got += d.toString();
      if ((got.match(/HTTP\/1\.1 \d{3}/g) ?? []).length >= responses && got.endsWith('}')) done();
    });
    s.on('close', done);
    s.on('error', done);
  });
}

describe('hostile stored reports are read back safely', () => {
  const hostile = (id: string, extra: Record<string, unknown> = {}) =>
    JSON.parse(report('Hostile Org', 'hostile.example', '2024-06-01', 10, 5, extra).replace('Hostile Org-', id)) as {
      policies: Array<Record<string, unknown>>;
    };

  it('a report with 20,000 failure details is read in pages, every detail once', async () => {
    const r = hostile('many-details-');
    r.policies[0]!['failure-details'] = Array.from({ length: 20_000 }, (_, i) => ({
      'result-type': 'certificate-expired',
      'failed-session-count': 1,
      'receiving-ip': `192.0.2.${i % 250}`,
    }));
    await store(JSON.stringify(r));
    const list = await get('/v1/reports?from=2024-06-01&to=2024-06-01&domain=hostile.example');
    const key = list.body.reports.find((x: { reportId: string }) => x.reportId.startsWith('many-details-')).reportKey;
    let seen = 0;
    let after: string | null = null;
    let pages = 0;
    do {
      const page = await get(`/v1/reports/${key}?detailLimit=5000${after ? `&detailsAfter=${after}` : ''}`);
      expect(page.status).toBe(200);
      seen += page.body.policies[0].failureDetails.length;
      after = page.body.failureDetailsNext as string | null;
      pages++;
    } while (after);
    expect(seen).toBe(20_000);
    expect(pages).toBe(4);
  });

  it('a report holding a deep array under __proto__ (stored before the worker refused depth) answers, without it', async () => {
    // Written straight into ClickHouse as an old version would have: the reader must not trust what is stored.
    const r = hostile('deep-');
    const text = JSON.stringify(r).replace(/}$/, `,"__proto__":${'['.repeat(100_000)}${']'.repeat(100_000)}}`);
    await store(JSON.stringify(r));
    const list = await get('/v1/reports?from=2024-06-01&to=2024-06-01&domain=hostile.example');
    const key = list.body.reports.find((x: { reportId: string }) => x.reportId.startsWith('deep-')).reportKey as string;
    await ch.command({
      query: `ALTER TABLE raw_reports UPDATE raw_json = ${quoteString(text)} WHERE report_key = '${key}'`,
    });
    await until('mutation', async () => {
      const [m] = await queryRows<{ n: number }>(
        ch,
        `SELECT count() AS n FROM system.mutations WHERE is_done = 0 AND database = currentDatabase()`,
      );
      return m!.n === 0 ? true : undefined;
    });
    const res = await get(`/v1/reports/${key}`);
    expect(res.status).toBe(200);
    expect(res.body.raw).toBeNull();
    expect(res.body.rawOmitted).toMatch(/nests too deep/);
    expect((await get('/v1/domains')).status).toBe(200);
  });

  it('a token limited to one domain sees only its own policies, details and raw policies of a shared report', async () => {
    const shared = JSON.parse(report('Shared Org', 'random.net', '2024-06-02', 7, 1)) as {
      policies: Array<Record<string, unknown>>;
    };
    const other = JSON.parse(report('Shared Org', 'secret.example', '2024-06-02', 9, 3)) as {
      policies: Array<Record<string, unknown>>;
    };
    other.policies[0]!['failure-details'] = [
      { 'result-type': 'certificate-expired', 'failed-session-count': 3, 'receiving-mx-hostname': 'mx.secret.example' },
    ];
    await store(JSON.stringify({ ...shared, policies: [...shared.policies, ...other.policies] }));
    const list = await get('/v1/reports?from=2024-06-02&to=2024-06-02&domain=random.net', LIMITED);
    expect(list.body.reports).toHaveLength(1);
    const mine = await get(`/v1/reports/${list.body.reports[0].reportKey}`, LIMITED);
    expect(mine.status).toBe(200);
    const text = JSON.stringify(mine.body);
    expect(text).not.toContain('secret.example');
    expect(mine.body.policies.map((p: { policy_domain: string }) => p.policy_domain)).toEqual(['random.net']);
    expect(mine.body.raw.policies).toHaveLength(1);
    const all = await get(`/v1/reports/${list.body.reports[0].reportKey}`);
    expect(JSON.stringify(all.body)).toContain('mx.secret.example');
  });
});

describe('/openapi.json', () => {
  it('documents exactly the routes that are served', async () => {
    const doc = (await (await fetch(`${base}/openapi.json`)).json()) as {
      paths: Record<string, { get: { parameters: Array<{ name: string; in: string }> } }>;
    };
    const paths = Object.keys(doc.paths);
    expect(paths.length).toBeGreaterThanOrEqual(8);
    for (const p of paths) {
      const concrete = p
        .replace('{domain}', 'random.net')
        .replace('{reportKey}', '0123456789abcdef0123456789abcdef')
        .replace('{receiptId}', 'no-such-receipt')
        .replace('{id}', p.startsWith('/v1/forwards/') ? '0'.repeat(32) : `${'0'.repeat(20)}.random.net`);
      if (!doc.paths[p]!.get) {
        // A write only (an operator's choice of a report's copy, a forward's retry): served, and a 404 for one that
        // does not exist.
        const res = await fetch(`${base}${concrete}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${ADMIN}` },
        });
        expect(res.status, `${p}: ${await res.text()}`).toBe(404);
        continue;
      }
      const res = await get(concrete);
      // A report or hosted policy that does not exist is a 404.
      const lookup = p.includes('{reportKey}') || p.includes('{id}') || p.startsWith('/v1/mta-sts/');
      expect(res.status === 200 || (lookup && res.status === 404), `${p}: ${res.status}`).toBe(true);
      // Every documented query parameter is accepted (no "unknown parameter").
      for (const param of doc.paths[p]!.get.parameters.filter((x) => x.in === 'query')) {
        const r = await get(`${concrete}?${param.name}=zz`);
        expect(r.body.reason, `${p} ${param.name}`).not.toBe('unknown parameter');
      }
    }
    expect((await get('/v1/undocumented')).status).toBe(404);
  });
});

describe('alerts', () => {
  it('finds each rule, stores each alert once, and a poller sees each alert exactly once', async () => {
    // A week of daily reports, then silence; failures under enforce; a fetch error; a failure rate over 5%
    // (fetch.example's 3 failed sessions are below the 100-session minimum: no failure-rate alert).
    const days = Array.from({ length: 7 }, (_, i) => `2026-10-0${i + 1}`);
    for (const day of days)
      await store(report('Daily Org', 'daily.example', day, 1000, day === '2026-10-07' ? 200 : 0));
    await store(
      report('Fetch Org', 'fetch.example', '2026-10-05', 0, 3, {
        'failure-details': [
          { 'result-type': 'sts-policy-fetch-error', 'failed-session-count': 3, 'failure-reason-code': 'HTTP 404' },
        ],
      }),
    );
    const now = new Date('2026-10-12T12:00:00Z');
    const cfg = { ...config, ALERT_RULES: LEGACY_RULES, ALERT_LOOKBACK_DAYS: 30 };
    const first = await evaluateAlerts(db, ch, cfg, seq, now);
    const rules = new Set(first.map((a) => `${a.rule}:${a.policy_domain}`));
    expect(rules).toEqual(
      new Set([
        'failure-rate:daily.example',
        'enforce-failure:daily.example',
        'reporter-stopped:daily.example',
        'enforce-failure:fetch.example',
        'new-result-type:fetch.example',
        'sts-policy-fetch-error:fetch.example',
      ]),
    );
    expect(await evaluateAlerts(db, ch, cfg, seq, now)).toEqual([]);

    const seen: string[] = [];
    let cursor = '0';
    const poll = async () => {
      const r = await get(`/v1/alerts?since=${cursor}&limit=3`);
      seen.push(...r.body.alerts.map((a: { id: string }) => a.id));
      cursor = r.body.next as string;
      return r.body.alerts.length as number;
    };
    while ((await poll()) > 0);
    expect(seen.sort()).toEqual(first.map((a) => a.alert_id).sort());
    expect(await poll()).toBe(0);

    // Something new happens; the next poll from the same cursor sees only it.
    await store(report('Late Org', 'late.example', '2026-10-11', 10, 90));
    const second = await evaluateAlerts(db, ch, cfg, seq, now);
    expect(second.map((a) => a.rule).sort()).toEqual(['enforce-failure', 'failure-rate']);
    const before = seen.length;
    while ((await poll()) > 0);
    expect(seen.slice(before).sort()).toEqual(second.map((a) => a.alert_id).sort());
  });

  it('a report with 10,001 result types disables no rule: each rule is bounded, runs alone, and makes progress', async () => {
    // Before: new-result-type read 10,001 rows past max_result_rows and the whole evaluation threw, for everyone.
    const details = Array.from({ length: 10_001 }, (_, i) => ({
      'result-type': `junk-${i}`,
      'failed-session-count': 1,
    }));
    await store(report('Flood Org', 'flood.example', '2026-11-02', 0, 10_001, { 'failure-details': details }));
    await store(report('Real Org', 'real.example', '2026-11-03', 100, 900));
    const now = new Date('2026-11-05T12:00:00Z');
    const cfg = { ...config, ALERT_RULES: LEGACY_RULES, ALERT_LOOKBACK_DAYS: 30 };
    const failures: string[] = [];
    const first = await evaluateAlerts(db, ch, cfg, seq, now, (rule) => failures.push(rule));
    expect(failures).toEqual([]);
    expect(first.some((a) => a.rule === 'failure-rate' && a.policy_domain === 'real.example')).toBe(true);
    const newTypes = () => first.filter((a) => a.rule === 'new-result-type' && a.policy_domain === 'flood.example');
    expect(newTypes()).toHaveLength(ALERT_MAX_PER_RULE);
    // The next evaluations find the rest, never one twice.
    const all = new Set(newTypes().map((a) => a.result_type));
    for (let i = 0; i < 11; i++) {
      for (const a of await evaluateAlerts(db, ch, cfg, seq, now))
        if (a.rule === 'new-result-type') all.add(a.result_type);
    }
    expect(all.size).toBe(10_001);

    // A rule that fails (here: ClickHouse refuses its query) is reported alone; the others still run.
    const failing: Db = {
      // The failure-rate rule's query, and only it, is refused.
      rows: (sql) =>
        sql.includes('successful_sessions + failed_sessions >=') ? Promise.reject(new Error('injected')) : db.rows(sql),
    };
    await store(report('Enforce Org', 'enforce.example', '2026-11-04', 100, 900));
    const isolated = await evaluateAlerts(failing, ch, cfg, seq, now, (rule) => failures.push(rule));
    expect(failures).toEqual(['failure-rate']);
    expect(isolated.map((a) => `${a.rule}:${a.policy_domain}`)).toContain('enforce-failure:enforce.example');
  });

  it('two evaluations at once never give two alerts one seq (it was max(seq) + 1, read by each)', async () => {
    await store(report('Twin Org', 'twin-a.example', '2026-11-06', 100, 900));
    await store(report('Twin Org', 'twin-b.example', '2026-11-06', 100, 900));
    const now = new Date('2026-11-07T12:00:00Z');
    const cfg = { ...config, ALERT_RULES: LEGACY_RULES, ALERT_LOOKBACK_DAYS: 30 };
    // One finds the failure rates, the other the enforce failures, at the same moment.
    const [a, b] = await Promise.all([
      evaluateAlerts(db, ch, { ...cfg, ALERT_RULES: ['failure-rate'] }, seq, now),
      evaluateAlerts(db, ch, { ...cfg, ALERT_RULES: ['enforce-failure'] }, seq, now),
    ]);
    expect(a.length).toBeGreaterThan(0);
    expect(b.length).toBeGreaterThan(0);
    const seqs = [...a, ...b].map((x) => x.seq);
    expect(new Set(seqs).size).toBe(seqs.length);
    const [row] = await queryRows<{ n: number; d: number }>(ch, 'SELECT count() AS n, uniqExact(seq) AS d FROM alerts');
    expect(row!.d).toBe(row!.n);
  });

  it('webhooks: delivered with a valid signature, retried until the receiver takes them', async () => {
    const got: Array<{ body: string; signature: string | undefined }> = [];
    let calls = 0;
    const hook = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        calls++;
        if (calls === 1) {
          res.writeHead(500).end();
          return;
        }
        got.push({ body, signature: req.headers['x-tlsrpt-signature'] as string | undefined });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => hook.listen(0, '127.0.0.1', () => r()));
    const url = `http://127.0.0.1:${(hook.address() as AddressInfo).port}/hook`;
    const redis = new Redis(config.REDIS_URL, { maxRetriesPerRequest: null });
    const name = `${config.QUEUE_NAME}-hooks`;
    const queue = createWebhookQueue(redis, name);
    const worker = createWebhookWorker(name, redis.duplicate(), 'secret-1', createLogger('hooks', 'silent'));
    try {
      await enqueueAlerts(queue, [url], [{ id: 'alert-1', title: 'test' }]);
      await until('delivered', async () => (got.length > 0 ? true : undefined), 20_000);
      expect(calls).toBe(2);
      expect(got[0]!.signature).toBe(signBody('secret-1', got[0]!.body));
      expect(JSON.parse(got[0]!.body)).toEqual({ alert: { id: 'alert-1', title: 'test' } });
    } finally {
      await worker.close();
      await queue.close();
      redis.disconnect();
      hook.close();
    }
  });

  it('counts rows as new back to twice the ClickHouse request timeout before the last evaluation, as incidents do', async () => {
    // A day whose insert started 400 s before the previous evaluation began, and was seen only after it.
    const previous = '2026-12-01 12:00:00';
    await ch.insert({
      table: 'ingest_days',
      values: [{ day: '2019-03-04', inserted_at: '2026-12-01 11:53:20' }],
      format: 'JSONEachRow',
    });
    const since = "toDate('2019-03-01')";
    const days = (timeoutMs: number) =>
      daysToEvaluate(db, since, previous, insertMarginSeconds({ CLICKHOUSE_REQUEST_TIMEOUT_MS: timeoutMs }));
    // A 300 s request timeout: a 600 s margin, the day counts (before, a fixed 300 s missed it).
    expect(await days(300_000)).toContain('2019-03-04');
    // A 30 s timeout: the insert ended long before the previous evaluation, which saw it.
    expect(await days(30_000)).not.toContain('2019-03-04');
  });
});
