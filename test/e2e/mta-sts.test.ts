/* eslint-disable @typescript-eslint/no-explicit-any, @typescript-eslint/no-unsafe-member-access -- response bodies are untyped JSON, checked by the assertions */
// Hosted MTA-STS: policies changed through the API (operators), served by the policy host as a sending MTA fetches
// them (HTTPS with the certificate of mta-sts.<domain>, verified against the test CA; 200, text/plain, CRLF, no
// redirect), a new id on every change, the testing → enforce readiness check against the stored reports, and the
// rollback to none that keeps serving for max_age.
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { freePort } from '../../dev/stack.ts';
import type { ClickHouseClient } from '../../services/common/clickhouse.ts';
import { storeDirectly, testConfig, testDatabase, until } from '../helpers/env.ts';
import { configEnv, startService, type RunningService } from '../helpers/services.ts';
import { testCa } from '../helpers/dns-and-ca.ts';

const ADMIN = 'sts-admin-token-1';
const LIMITED = 'sts-limited-token-1';
const config = testConfig({
  API_TOKENS: JSON.stringify([
    { name: 'operator', token: ADMIN },
    { name: 'owner', token: LIMITED, domains: ['hosted.example'] },
  ]),
  MTA_STS_RUA: 'mailto:tlsrpt@reports.example.net,https://reports.example.net/v1/tlsrpt',
  MTA_STS_HOST_TARGET: 'sts.reports.example.net',
  MTA_STS_READINESS_DAYS: '14',
  MTA_STS_REFRESH_SECONDS: '1',
});
let ch: ClickHouseClient;
let api: RunningService;
let host: RunningService;
let apiBase: string;
let stsPort: number;
let dir: string;
let ca: string;

let authority: Awaited<ReturnType<typeof testCa>>;

/** A test CA, and a certificate from it for each policy host name, as the policy host reads them. */
async function makeCertificates(hosts: string[]): Promise<void> {
  authority ??= await testCa('MTA-STS Test CA');
  for (const h of hosts) {
    const c = await authority.issue(h);
    await writeFile(join(dir, 'certs', `${h}.pem`), c.cert);
    await writeFile(join(dir, 'certs', `${h}.key`), c.private);
  }
  ca = authority.cert;
}

/** The policy as a sending MTA fetches it: SNI and Host of the name, the certificate verified, no redirect followed. */
function fetchPolicy(name: string, path = '/.well-known/mta-sts.txt', sni = name) {
  return new Promise<{ status: number; type: string | undefined; body: string }>((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port: stsPort, path, servername: sni, headers: { host: name }, ca, agent: false },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, type: res.headers['content-type'], body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

async function call(method: string, path: string, body?: unknown, token = ADMIN) {
  const res = await fetch(`${apiBase}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

const day = (ago: number): string => new Date(Date.now() - ago * 86400_000).toISOString().slice(0, 10);
function testingReport(d: string, failed: number) {
  return JSON.stringify({
    'organization-name': 'Google',
    'date-range': { 'start-datetime': `${d}T00:00:00Z`, 'end-datetime': `${d}T23:59:59Z` },
    'contact-info': 'smtp-tls-reporting@google.com',
    'report-id': `sts-${d}-${failed}`,
    policies: [
      {
        policy: {
          'policy-type': 'sts',
          'policy-domain': 'hosted.example',
          'policy-string': ['version: STSv1', 'mode: testing', 'mx: mx1.hosted.example', 'max_age: 86400'],
          'mx-host': ['mx1.hosted.example'],
        },
        summary: { 'total-successful-session-count': 500, 'total-failure-session-count': failed },
        'failure-details': failed
          ? [
              {
                'result-type': 'certificate-expired',
                'receiving-mx-hostname': 'mx2.hosted.example',
                'failed-session-count': failed,
              },
            ]
          : [],
      },
    ],
  });
}

beforeAll(async () => {
  ch = await testDatabase(config);
  dir = join(inject('dataDir'), `mta-sts-${config.QUEUE_NAME}`);
  await mkdir(join(dir, 'certs'), { recursive: true });
  await makeCertificates(['mta-sts.hosted.example', 'mta-sts.other.example']);
  const apiPort = await freePort();
  stsPort = await freePort();
  const env = configEnv(config, {
    API_PORT: apiPort,
    API_HOST: '127.0.0.1',
    MTA_STS_PORT: stsPort,
    MTA_STS_HOST: '127.0.0.1',
    MTA_STS_METRICS_PORT: 0,
    MTA_STS_CERT_DIR: join(dir, 'certs'),
    LOG_LEVEL: 'warn',
  });
  api = startService('api', env);
  host = startService('mta-sts', env);
  apiBase = `http://127.0.0.1:${apiPort}`;
  await until('api up', async () =>
    (await fetch(`${apiBase}/healthz`).then(
      (r) => r.ok,
      () => false,
    ))
      ? true
      : undefined,
  );
  await until('policy host up', async () =>
    (await fetchPolicy('mta-sts.hosted.example').then(
      () => true,
      (err: NodeJS.ErrnoException) => err.code !== 'ECONNREFUSED',
    ))
      ? true
      : undefined,
  );
}, 120_000);

afterAll(async () => {
  expect(await api.stop()).toBe(0);
  expect(await host.stop()).toBe(0);
  await rm(dir, { recursive: true, force: true });
  await ch.command({ query: `DROP DATABASE IF EXISTS ${config.CLICKHOUSE_DATABASE}` });
  await ch.close();
});

describe('hosted MTA-STS', () => {
  it('a policy set through the API is served as a sending MTA fetches it, with the records to publish', async () => {
    const put = await call('PUT', '/v1/mta-sts/Hosted.Example.', {
      mode: 'testing',
      mx: ['mx1.hosted.example', '*.backup.hosted.example'],
      maxAge: 604800,
    });
    // Its certificate was in place (the policy host reported it at start): in effect at once.
    expect(put.status).toBe(200);
    expect(put.body).toMatchObject({ changed: true, domain: 'hosted.example', mode: 'testing', state: 'active' });
    expect(put.body.certificate).toMatchObject({ state: 'issued', issuer: 'MTA-STS Test CA' });
    const id = put.body.id as string;
    expect(id).toMatch(/^[A-Za-z0-9]{1,32}$/);
    expect(put.body.records).toEqual({
      mtaSts: `_mta-sts.hosted.example. IN TXT "v=STSv1; id=${id}"`,
      tlsRpt:
        '_smtp._tls.hosted.example. IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@reports.example.net,https://reports.example.net/v1/tlsrpt"',
      policyHost: 'mta-sts.hosted.example. IN CNAME sts.reports.example.net.',
    });
    const served = await until('the policy served', async () => {
      const r = await fetchPolicy('mta-sts.hosted.example').catch(() => undefined);
      return r?.status === 200 ? r : undefined;
    });
    expect(served.type).toMatch(/^text\/plain/);
    expect(served.body).toBe(
      'version: STSv1\r\nmode: testing\r\nmx: mx1.hosted.example\r\nmx: *.backup.hosted.example\r\nmax_age: 604800\r\n',
    );
    // Anything else is a 404: another path, a domain we do not host (even with a certificate for it).
    expect((await fetchPolicy('mta-sts.hosted.example', '/other')).status).toBe(404);
    expect((await fetchPolicy('mta-sts.other.example')).status).toBe(404);
    expect(
      await fetchPolicy('mta-sts.hosted.example', '/.well-known/mta-sts.txt', 'mta-sts.unknown.example').catch(
        (e: Error) => e,
      ),
    ).toBeInstanceOf(Error);
    // The same policy again: nothing changes, the id stays.
    const again = await call('PUT', '/v1/mta-sts/hosted.example', {
      mode: 'testing',
      mx: ['mx1.hosted.example', '*.backup.hosted.example'],
      maxAge: 604800,
    });
    expect(again.body).toMatchObject({ changed: false, id });
    expect((await call('GET', '/v1/mta-sts')).body.policies).toEqual([
      expect.objectContaining({ domain: 'hosted.example', id }),
    ]);
  });

  it('a domain without a certificate is pending-certificate, its _mta-sts record held back, until one is in place', async () => {
    const put = await call('PUT', '/v1/mta-sts/late.example', {
      mode: 'testing',
      mx: ['mx.late.example'],
      maxAge: 86400,
    });
    expect(put.status).toBe(202);
    expect(put.body).toMatchObject({ changed: true, state: 'pending-certificate' });
    expect(Object.keys(put.body.records as object)).toEqual(['tlsRpt', 'policyHost']);
    expect(put.body.recordsNotYet).toEqual({ mtaSts: `_mta-sts.late.example. IN TXT "v=STSv1; id=${put.body.id}"` });
    // The policy host looks (every second here) and says why: no file, no ACME CA to order one.
    const missing = await until('the policy host reports the certificate missing', async () => {
      const r = await call('GET', '/v1/mta-sts/late.example');
      return r.body.certificate.state === 'missing' ? r : undefined;
    });
    expect(missing.status).toBe(200);
    expect(missing.body.certificate.reason).toContain('no ACME CA configured (MTA_STS_ACME_DIRECTORY)');
    expect(missing.body.message).toMatch(/^mta-sts\.late\.example has no usable certificate \(missing: /);
    expect(await fetchPolicy('mta-sts.late.example').catch((e: Error) => e)).toBeInstanceOf(Error);
    // A certificate put in place: active, every record to publish, the policy fetched.
    await makeCertificates(['mta-sts.late.example']);
    const active = await until('active', async () => {
      const r = await call('GET', '/v1/mta-sts/late.example');
      return r.body.state === 'active' ? r : undefined;
    });
    expect(active.body.records.mtaSts).toContain(`id=${put.body.id}`);
    expect(active.body).not.toHaveProperty('recordsNotYet');
    expect((await fetchPolicy('mta-sts.late.example')).status).toBe(200);
    const listed = (await call('GET', '/v1/mta-sts')).body.policies as Array<{ state: string }>;
    expect(listed.map((p) => p.state)).toEqual(['active', 'active']);
  });

  it('refuses bad policies, domain-limited tokens and other methods, with precise errors', async () => {
    const bad = async (body: unknown) => (await call('PUT', '/v1/mta-sts/hosted.example', body)).status;
    expect(await bad({ mode: 'strict', mx: ['mx1.hosted.example'], maxAge: 86400 })).toBe(400);
    expect(await bad({ mode: 'testing', mx: ['mx 1.hosted.example'], maxAge: 86400 })).toBe(400);
    expect(await bad({ mode: 'testing', mx: [], maxAge: 86400 })).toBe(400);
    expect(await bad({ mode: 'testing', mx: ['mx1.hosted.example'], maxAge: 60 })).toBe(400);
    expect(await bad('{not json')).toBe(400);
    expect(await bad('x'.repeat(20_000))).toBe(413);
    const limited = await call(
      'PUT',
      '/v1/mta-sts/hosted.example',
      { mode: 'none', mx: ['a.b'], maxAge: 86400 },
      LIMITED,
    );
    expect(limited.status).toBe(403);
    const post = await fetch(`${apiBase}/v1/mta-sts/hosted.example`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}` },
    });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, PUT, DELETE');
    expect((await call('GET', '/v1/mta-sts/nowhere.example')).status).toBe(404);
    // Live checks: only managed domains are checked (no aiming the checker elsewhere), within a token's domains.
    expect((await call('POST', '/v1/checks/nowhere.example')).status).toBe(404);
    expect((await call('POST', '/v1/checks/other.example', undefined, LIMITED)).status).toBe(403);
    expect((await call('GET', '/v1/checks/hosted.example', undefined, LIMITED)).body).toEqual({
      domain: 'hosted.example',
      checkedAt: null,
      results: [],
    });
  });

  it('testing → enforce only when the reports show no unacknowledged failure; every change a new id', async () => {
    const enforce = { mode: 'enforce', mx: ['mx1.hosted.example', '*.backup.hosted.example'], maxAge: 604800 };
    // Never seen in testing mode by any reporter: refused.
    const first = await call('PUT', '/v1/mta-sts/hosted.example', enforce);
    expect(first.status).toBe(409);
    expect(first.body.message).toMatch(/publish mode testing first/);
    await storeDirectly(ch, gzipSync(testingReport(day(3), 0)), 'sts-r1');
    await storeDirectly(ch, gzipSync(testingReport(day(2), 9)), 'sts-r2');
    const refused = await call('PUT', '/v1/mta-sts/hosted.example', enforce);
    expect(refused.status).toBe(409);
    expect(refused.body.detail).toEqual([
      {
        organization: 'Google',
        receivingMx: 'mx2.hosted.example',
        resultType: 'certificate-expired',
        failedSessions: 9,
      },
    ]);
    const before = (await call('GET', '/v1/mta-sts/hosted.example')).body.id as string;
    const ok = await call('PUT', '/v1/mta-sts/hosted.example', {
      ...enforce,
      acknowledge: { mx: ['mx2.hosted.example'] },
    });
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ changed: true, mode: 'enforce' });
    expect(ok.body.id).not.toBe(before);
    expect(ok.body.records.mtaSts).toContain(`id=${ok.body.id as string}`);
    await until(
      'enforce served',
      async () => (await fetchPolicy('mta-sts.hosted.example')).body.includes('mode: enforce') || undefined,
    );
  });

  it('rolls back to none, keeps serving it for max_age, and refuses to drop the domain before then', async () => {
    const none = await call('PUT', '/v1/mta-sts/hosted.example', {
      mode: 'none',
      mx: ['mx1.hosted.example'],
      maxAge: 86400,
    });
    expect(none.status).toBe(200);
    // The previous policy's max_age (7 days), not the new one's.
    const until7 = Date.parse(`${String(none.body.servedUntil).replace(' ', 'T')}Z`);
    expect(Math.abs(until7 - (Date.now() + 604800_000))).toBeLessThan(60_000);
    const drop = await call('DELETE', '/v1/mta-sts/hosted.example');
    expect(drop.status).toBe(409);
    expect(drop.body.message).toMatch(/may hold the previous policy until/);
    await until(
      'none served',
      async () => (await fetchPolicy('mta-sts.hosted.example')).body.includes('mode: none') || undefined,
    );
    expect((await call('DELETE', '/v1/mta-sts/nowhere.example')).status).toBe(404);
  });
});
