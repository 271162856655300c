/* eslint-disable @typescript-eslint/no-unsafe-assignment -- expect.stringMatching() is typed any */
// Live checks against real parts: Debian's dnsmasq serving the test zones on a free port, SMTP servers as MX hosts
// with good, expired, wrong-name and self-signed certificates and one without STARTTLS, HTTPS policy hosts that
// serve the policy, a 404, a redirect, or a certificate for another name. Loopback addresses 127.0.0.x stand for
// the hosts; the checker is allowed them here only (POSTURE_ALLOW_PRIVATE), and refuses them otherwise.
import { createServer as createHttps, type Server as HttpsServer } from 'node:https';
import { createServer as createNetServer } from 'node:net';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createHash, X509Certificate } from 'node:crypto';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { freePort } from '../../dev/stack.ts';
import { startDnsmasq, testCa } from '../helpers/dns-and-ca.ts';
import type { ClickHouseClient } from '../../services/common/clickhouse.ts';
import { checkAllDomains, runChecks, type PostureConfig } from '../../services/scheduler/posture/run.ts';
import { createLogger } from '../../services/common/logger.ts';
import type { CheckResult } from '../../services/scheduler/posture/checks.ts';
import { storeDirectly, testConfig, testDatabase } from '../helpers/env.ts';
import { createDb, getReport } from '../../services/api/queries.ts';
import { diagnose } from '../../services/api/diagnosis.ts';
import { execFile } from 'node:child_process';
import { RULES } from '../../services/scheduler/rules/index.ts';
import { gzipSync } from 'node:zlib';
import { checkNowClient, CheckNowUnavailable } from '../../services/common/check-now.ts';
import { createRedis } from '../../services/common/redis.ts';
import { startPostureChecks } from '../../services/scheduler/posture-checks.ts';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import { createApi } from '../../services/api/server.ts';
import { redisSessions } from '../../services/api/ui/sessions.ts';

const config = testConfig();
let ch: ClickHouseClient;
let stopDns: () => void = () => {};
let dir: string;
const smtpServers: SMTPServer[] = [];
const httpsServers: HttpsServer[] = [];
let posture: PostureConfig;
/** The port every test MX listens on (each on its own loopback address). */
let mxPort: number;
let policyPort: number;
/** mx1.good.test's TLSA record, made from its certificate. */
let mx1Tlsa: string;

const ca = await testCa('Posture Test CA');
const cert = ca.issue;

const POLICY = (mx: string[]) =>
  ['version: STSv1', 'mode: enforce', ...mx.map((m) => `mx: ${m}`), 'max_age: 604800'].map((l) => `${l}\r\n`).join('');

async function smtp(address: string, port: number, tls: { key: string; cert: string } | undefined) {
  const server = new SMTPServer({
    ...(tls ? { key: tls.key, cert: tls.cert } : { disabledCommands: ['STARTTLS'] }),
    authOptional: true,
    logger: false,
  });
  server.on('error', () => {});
  await new Promise<void>((r) => server.listen(port, address, () => r()));
  smtpServers.push(server);
}

async function policyHost(
  address: string,
  port: number,
  tls: { private: string; cert: string },
  answer: (res: import('node:http').ServerResponse) => void,
) {
  const server = createHttps({ key: tls.private, cert: tls.cert }, (_req, res) => answer(res));
  await new Promise<void>((r) => server.listen(port, address, () => r()));
  httpsServers.push(server);
}

const drippers: Array<import('node:net').Server & { closeAllConnections?: () => void }> = [];
async function dripping(server: import('node:net').Server, address: string, port: number) {
  await new Promise<void>((r) => server.listen(port, address, () => r()));
  drippers.push(server);
}

const find = (results: CheckResult[], check: string, subject?: string) =>
  results.find((r) => r.check === check && (subject === undefined || r.subject === subject));

beforeAll(async () => {
  ch = await testDatabase(config);
  dir = join(inject('dataDir'), `posture-${config.QUEUE_NAME}`);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'ca.pem'), ca.cert);
  const [smtpPort, httpsPort] = [await freePort(), await freePort()];
  mxPort = smtpPort;
  policyPort = httpsPort;
  const hosts: Array<[string, string]> = [
    ['mx1.good.test', '127.0.0.11'],
    ['mta-sts.good.test', '127.0.0.21'],
    ['mx-expired.bad.test', '127.0.0.12'],
    ['mx-wrongname.bad.test', '127.0.0.13'],
    ['mx-selfsigned.bad.test', '127.0.0.14'],
    ['mx-plain.bad.test', '127.0.0.15'],
    ['mx-extra.bad.test', '127.0.0.11'],
    ['mta-sts.bad.test', '127.0.0.22'],
    ['mta-sts.redirect.test', '127.0.0.23'],
    ['mta-sts.wrongcert.test', '127.0.0.24'],
    ['mta-sts.soon.test', '127.0.0.26'],
    ['mx-slow.slow.test', '127.0.0.16'],
    ['mta-sts.slow.test', '127.0.0.25'],
    ...Array.from({ length: 20 }, (_, i): [string, string] => [`mx${i}.stall.test`, '127.0.0.16']),
  ];
  // mx1.good.test's certificate, and its TLSA record made from it (3 1 1: the SHA-256 of its public key).
  const mx1 = await cert('mx1.good.test');
  const mx1Spki = createHash('sha256')
    .update(new X509Certificate(mx1.cert).publicKey.export({ type: 'spki', format: 'der' }))
    .digest('hex');
  mx1Tlsa = `3 1 1 ${mx1Spki}`;
  const dnsmasq = await startDnsmasq(
    dir,
    [
      ...hosts.map(([h, a]) => `--host-record=${h},${a}`),
      '--mx-host=good.test,mx1.good.test,10',
      '--txt-record=_mta-sts.good.test,v=STSv1; id=20261130a',
      '--txt-record=_smtp._tls.good.test,v=TLSRPTv1; rua=mailto:tlsrpt@good.test',
      // Its TLSA record (3 1 1 and a SHA-256) for mx1.good.test: RR type 52.
      `--dns-rr=_25._tcp.mx1.good.test,52,030101${mx1Spki}`,
      // And one for mx-extra.bad.test (the same server) that matches nothing it presents: DANE senders refuse it.
      `--dns-rr=_25._tcp.mx-extra.bad.test,52,030101${'ab'.repeat(32)}`,
      ...['mx-expired', 'mx-wrongname', 'mx-selfsigned', 'mx-plain', 'mx-extra'].map(
        (h, i) => `--mx-host=bad.test,${h}.bad.test,${10 + i}`,
      ),
      // Two policy records (a drift), and no TLS-RPT record.
      '--txt-record=_mta-sts.bad.test,v=STSv1; id=1',
      '--txt-record=_mta-sts.bad.test,v=STSv1; id=2',
      '--mx-host=redirect.test,mx1.good.test,10',
      '--txt-record=_mta-sts.redirect.test,v=STSv1; id=r1',
      '--mx-host=wrongcert.test,mx1.good.test,10',
      '--txt-record=_mta-sts.wrongcert.test,v=STSv1; id=w1',
      // A policy host whose certificate ends in ten days.
      '--mx-host=soon.test,mx1.good.test,10',
      '--txt-record=_mta-sts.soon.test,v=STSv1; id=soon1',
      // Hosts that drip: an MX sending "220-slow" lines, a policy host sending its body a byte at a time.
      '--mx-host=slow.test,mx-slow.slow.test,10',
      '--mx-host=slow.test,mx1.good.test,20',
      '--txt-record=_mta-sts.slow.test,v=STSv1; id=s1',
      ...Array.from({ length: 20 }, (_, i) => `--mx-host=stall.test,mx${i}.stall.test,${10 + i}`),
      ...Array.from({ length: 20 }, (_, i) => `--mx-host=stall2.test,mx${i}.stall.test,${10 + i}`),
    ],
    ['mx1.good.test', '127.0.0.11'],
  );
  stopDns = dnsmasq.stop;
  const dnsPort = dnsmasq.port;
  await smtp('127.0.0.11', smtpPort, { key: mx1.private, cert: mx1.cert });
  await smtp(
    '127.0.0.12',
    smtpPort,
    await cert('mx-expired.bad.test', { expired: true }).then((c) => ({ key: c.private, cert: c.cert })),
  );
  await smtp('127.0.0.13', smtpPort, await cert('someone-else.test').then((c) => ({ key: c.private, cert: c.cert })));
  await smtp(
    '127.0.0.14',
    smtpPort,
    await cert('mx-selfsigned.bad.test', { selfSigned: true }).then((c) => ({ key: c.private, cert: c.cert })),
  );
  await smtp('127.0.0.15', smtpPort, undefined);
  await dripping(
    createNetServer((socket) => {
      socket.on('error', () => {});
      const timer = setInterval(() => socket.write('220-slow\r\n'), 200);
      socket.on('close', () => clearInterval(timer));
    }),
    '127.0.0.16',
    smtpPort,
  );
  const slowPolicy = await cert('mta-sts.slow.test');
  await dripping(
    createHttps({ key: slowPolicy.private, cert: slowPolicy.cert }, (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      const timer = setInterval(() => res.write('v'), 200);
      res.on('close', () => clearInterval(timer));
    }),
    '127.0.0.25',
    httpsPort,
  );
  const ok = (body: string) => (res: import('node:http').ServerResponse) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(body);
  };
  await policyHost('127.0.0.21', httpsPort, await cert('mta-sts.good.test'), ok(POLICY(['mx1.good.test'])));
  await policyHost('127.0.0.22', httpsPort, await cert('mta-sts.bad.test'), (res) => {
    res.writeHead(404);
    res.end();
  });
  await policyHost('127.0.0.23', httpsPort, await cert('mta-sts.redirect.test'), (res) => {
    res.writeHead(301, { location: 'https://elsewhere.test/.well-known/mta-sts.txt' });
    res.end();
  });
  await policyHost('127.0.0.24', httpsPort, await cert('mta-sts.someone-else.test'), ok(POLICY(['mx1.good.test'])));
  await policyHost(
    '127.0.0.26',
    httpsPort,
    await cert('mta-sts.soon.test', { days: 10 }),
    ok(POLICY(['mx1.good.test'])),
  );
  posture = {
    POSTURE_DOMAINS: [],
    POSTURE_DNS_SERVERS: [`127.0.0.1:${dnsPort}`],
    POSTURE_ALLOW_PRIVATE: true,
    POSTURE_SMTP_PORT: smtpPort,
    POSTURE_HTTPS_PORT: httpsPort,
    POSTURE_CA_FILE: join(dir, 'ca.pem'),
    POSTURE_TIMEOUT_MS: 5000,
    POSTURE_DOMAIN_TIMEOUT_MS: 30_000,
    POSTURE_CONCURRENCY: 4,
  };
}, 120_000);

afterAll(async () => {
  stopDns();
  for (const s of drippers) {
    s.closeAllConnections?.();
    await new Promise<void>((r) => s.close(() => r()));
  }
  for (const s of smtpServers) await new Promise<void>((r) => s.close(() => r()));
  for (const s of httpsServers) await new Promise<void>((r) => s.close(() => r()));
  await rm(dir, { recursive: true, force: true });
  await ch.command({ query: `DROP DATABASE IF EXISTS ${config.CLICKHOUSE_DATABASE}` });
  await ch.close();
});

describe('live checks of a domain setup', () => {
  it('a good domain: records, policy, coverage and its MX all pass, and the run is stored', async () => {
    const { results } = await runChecks(ch, 'good.test', posture);
    expect(results.map((r) => [r.check, r.subject, r.severity])).toEqual([
      ['mta-sts-record', 'good.test', 'ok'],
      ['tlsrpt-record', 'good.test', 'ok'],
      ['policy', 'good.test', 'ok'],
      ['mx-coverage', 'good.test', 'ok'],
      ['mx-tls', 'mx1.good.test', 'ok'],
    ]);
    expect(find(results, 'mx-tls')!.detail).toMatchObject({ starttls: true, trusted: true, nameMatches: true });
    expect(find(results, 'mx-tls')!.detail.daysToExpiry).toBeGreaterThan(80);
    expect(find(results, 'mx-tls')!.detail.tlsa).toEqual([mx1Tlsa]);
    expect(find(results, 'mx-tls')!.detail).toMatchObject({ tlsaMatch: true, issuer: 'Posture Test CA' });
    expect(find(results, 'mx-tls')!.summary).toMatch(/TLSA: 1 record\(s\), one matches$/);
    const stored = await (
      await ch.query({
        query: "SELECT count() AS n FROM posture_checks WHERE domain = 'good.test'",
        format: 'JSONEachRow',
      })
    ).json<{ n: string }>();
    expect(Number(stored[0]!.n)).toBe(5);
  });

  it('two runs started in the same second are two runs: the later one stored a second on, each finding once', async () => {
    const at = new Date();
    const [first, second] = await Promise.all([
      runChecks(ch, 'good.test', posture, at),
      runChecks(ch, 'good.test', posture, at),
    ]);
    expect(first.checkedAt).not.toBe(second.checkedAt);
    const runs = await (
      await ch.query({
        query: `SELECT toString(checked_at) AS at, count() AS n FROM posture_checks
                WHERE domain = 'good.test' AND checked_at IN ('${first.checkedAt}', '${second.checkedAt}')
                GROUP BY checked_at ORDER BY checked_at`,
        format: 'JSONEachRow',
      })
    ).json<{ at: string; n: string }>();
    expect(runs.map((r) => [r.at, Number(r.n)])).toEqual([first.checkedAt, second.checkedAt].sort().map((a) => [a, 5]));
  });

  it('finds each broken part: duplicate and missing records, a 404 policy, each bad MX host', async () => {
    const { results } = await runChecks(ch, 'bad.test', posture);
    expect(find(results, 'mta-sts-record')!).toMatchObject({
      severity: 'critical',
      summary: expect.stringMatching(/has 2 v=STSv1 TXT records/),
    });
    expect(find(results, 'tlsrpt-record')!).toMatchObject({
      severity: 'critical',
      summary: expect.stringMatching(/has 0 v=TLSRPTv1/),
    });
    expect(find(results, 'policy')!).toMatchObject({
      severity: 'critical',
      summary: expect.stringMatching(/answered HTTP 404/),
    });
    const mx = (host: string) => find(results, 'mx-tls', host)!;
    expect(mx('mx-expired.bad.test').summary).toMatch(/expired 2 day\(s\) ago/);
    expect(mx('mx-wrongname.bad.test').summary).toMatch(/does not name mx-wrongname\.bad\.test/);
    expect(mx('mx-selfsigned.bad.test').summary).toMatch(/not trusted \(DEPTH_ZERO_SELF_SIGNED_CERT\)/);
    expect(mx('mx-plain.bad.test').summary).toMatch(/does not offer STARTTLS/);
    for (const h of ['mx-expired', 'mx-wrongname', 'mx-selfsigned', 'mx-plain'])
      expect(mx(`${h}.bad.test`).severity).toBe('critical');
    // A TLSA record that matches nothing the host presents: said, and kept in the detail.
    expect(mx('mx-extra.bad.test').summary).toMatch(/TLSA: 1 record\(s\), none matches the certificate$/);
    expect(mx('mx-extra.bad.test').detail.tlsaMatch).toBe(false);
  });

  it('a redirect and a certificate for another name are policy failures, as for a sending MTA', async () => {
    const redirect = (await runChecks(ch, 'redirect.test', posture)).results;
    expect(find(redirect, 'policy')!.summary).toMatch(/redirects \(HTTP 301\)/);
    const wrong = (await runChecks(ch, 'wrongcert.test', posture)).results;
    expect(find(wrong, 'policy')!.summary).toMatch(
      /fetching https:\/\/mta-sts\.wrongcert\.test.*failed: .*(altnames|Hostname)/i,
    );
  });

  it("a policy host's certificate ending within three weeks is a warning, with the days left", async () => {
    const { results } = await runChecks(ch, 'soon.test', posture);
    const policy = find(results, 'policy')!;
    expect(policy.severity).toBe('warning');
    expect(policy.summary).toMatch(
      /^the certificate of mta-sts\.soon\.test expires in (9|10) day\(s\): senders cannot fetch the policy after$/,
    );
    // The good domain's (90 days) is fine, and says when it ends.
    const good = find((await runChecks(ch, 'good.test', posture)).results, 'policy')!;
    expect(good.severity).toBe('ok');
    expect(good.detail.daysToExpiry).toBeGreaterThan(80);
  });

  it('an MX not covered by the policy, and a policy changed without a new id', async () => {
    // good.test's policy now lists another MX: mx1 is no longer covered, and the id in DNS stayed the same.
    const server = httpsServers[0]!;
    server.removeAllListeners('request');
    server.on('request', (_req, res: import('node:http').ServerResponse) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(POLICY(['mx9.good.test']));
    });
    const { results } = await runChecks(ch, 'good.test', posture, new Date(Date.now() + 1000));
    expect(find(results, 'mx-coverage')!).toMatchObject({
      severity: 'critical',
      summary: expect.stringMatching(/mx1\.good\.test not covered/),
    });
    expect(find(results, 'policy')!).toMatchObject({
      severity: 'critical',
      summary: expect.stringMatching(/changed but its id 20261130a did not/),
    });
  });

  it('joins each reported failure to the check nearest in time, and raises posture alerts', async () => {
    const today = new Date().toISOString().slice(0, 10);
    await storeDirectly(
      ch,
      gzipSync(
        JSON.stringify({
          'organization-name': 'Google',
          'date-range': { 'start-datetime': `${today}T00:00:00Z`, 'end-datetime': `${today}T23:59:59Z` },
          'contact-info': 'smtp-tls-reporting@google.com',
          'report-id': 'posture-join-1',
          policies: [
            {
              policy: {
                'policy-type': 'sts',
                'policy-domain': 'bad.test',
                'policy-string': ['version: STSv1', 'mode: enforce', 'mx: *.bad.test', 'max_age: 86400'],
              },
              summary: { 'total-successful-session-count': 10, 'total-failure-session-count': 16 },
              'failure-details': [
                { 'result-type': 'sts-policy-fetch-error', 'failed-session-count': 12 },
                {
                  'result-type': 'certificate-expired',
                  'receiving-mx-hostname': 'mx-expired.bad.test',
                  'failed-session-count': 4,
                },
              ],
            },
          ],
        }),
      ),
      'posture-join-1',
    );
    const db = createDb(ch, { timeoutSeconds: 30, maxRows: 100_000 });
    const [row] = await db.rows<{ report_key: string }>(
      "SELECT report_key FROM reports WHERE report_id = 'posture-join-1'",
    );
    const report = (await getReport(db, { name: 't', domains: undefined }, row!.report_key, { detailLimit: 100 }))!;
    const notes = report.policies[0]!.failureDetails.map(
      (d) => (d as { posture?: { sentence: string } }).posture?.sentence,
    );
    expect(notes[0]).toMatch(
      /^Our check at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC found: https:\/\/mta-sts\.bad\.test\/\.well-known\/mta-sts\.txt answered HTTP 404\.$/,
    );
    expect(notes[1]).toMatch(/found: mx-expired\.bad\.test: the certificate expired 2 day\(s\) ago\.$/);
    const found = await RULES.posture({
      db,
      config: {} as never,
      now: new Date(),
      sinceSql: `toDate('${today}') - 1`,
      daysSql: '1',
      previousRun: undefined,
    });
    const titles = found.filter((c) => c.policy_domain === 'bad.test').map((c) => c.title);
    expect(titles).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/answered HTTP 404/),
        expect.stringMatching(/mx-expired\.bad\.test: the certificate expired/),
      ]),
    );
    expect(found.every((c) => c.policy_domain !== 'good.test' || c.severity === 'critical')).toBe(true);
  });

  it('refuses private and loopback addresses unless allowed: the checker cannot probe our own network', async () => {
    const { results } = await runChecks(
      ch,
      'good.test',
      { ...posture, POSTURE_ALLOW_PRIVATE: false },
      new Date(Date.now() + 2000),
    );
    expect(find(results, 'policy')!.summary).toMatch(/not a public address, not contacted/);
    expect(find(results, 'mx-tls', 'mx1.good.test')!.summary).toMatch(/not a public address, not contacted/);
  });

  describe('hosts that drip bytes to hold the checker', () => {
    // One connection may take a second in all, one domain four.
    const quick = () => ({ ...posture, POSTURE_TIMEOUT_MS: 1000, POSTURE_DOMAIN_TIMEOUT_MS: 4000 });
    const db = {
      rows: async <T>(sql: string) => await (await ch.query({ query: sql, format: 'JSONEachRow' })).json<T>(),
    };

    it('an MX and a policy host that drip are cut off at the connection deadline; the other MX is checked', async () => {
      const { results } = await runChecks(ch, 'slow.test', quick(), new Date(Date.now() + 3000));
      expect(find(results, 'policy')!.summary).toMatch(/no complete answer within 1000 ms/);
      expect(find(results, 'mx-tls', 'mx-slow.slow.test')!.summary).toMatch(/no complete exchange within 1000 ms/);
      expect(find(results, 'mx-tls', 'mx1.good.test')!.severity).toBe('ok');
      expect(find(results, 'run')).toBeUndefined();
    });

    it("a domain of twenty dripping MX hosts is stored as timed out at the domain's deadline, with what was found", async () => {
      const started = Date.now();
      const { results } = await runChecks(ch, 'stall.test', quick(), new Date(Date.now() + 4000));
      const took = Date.now() - started;
      // Twenty hosts, four at a time, a second each: five seconds; the deadline stops it at four.
      expect(took).toBeGreaterThanOrEqual(4000);
      expect(took).toBeLessThan(4000 + 3000);
      expect(find(results, 'run')).toMatchObject({ severity: 'warning', detail: { timedOut: true, deadlineMs: 4000 } });
      const hosts = results.filter((r) => r.check === 'mx-tls');
      expect(hosts.length).toBeGreaterThanOrEqual(4);
      expect(hosts.length).toBeLessThan(20);
      for (const h of hosts) expect(h.summary).toMatch(/no complete exchange within 1000 ms/);
      const stored = await db.rows<{ n: number | string }>(
        "SELECT count() AS n FROM posture_checks WHERE domain = 'stall.test' AND check_name = 'run'",
      );
      expect(Number(stored[0]!.n)).toBeGreaterThanOrEqual(1);
    });

    it('the scheduled run checks domains side by side: two stalling domains hold neither the other nor each other', async () => {
      const config = { ...quick(), POSTURE_DOMAINS: ['stall.test', 'stall2.test', 'good.test'] };
      const since = new Date(Date.now() - 1000);
      const started = Date.now();
      await checkAllDomains(ch, config, db, createLogger('posture', 'silent'));
      // One after another, the two stalling domains alone took eight seconds.
      expect(Date.now() - started).toBeLessThan(7500);
      const runs = await db.rows<{ domain: string }>(
        `SELECT DISTINCT domain FROM posture_checks WHERE checked_at >= toDateTime(${Math.floor(since.getTime() / 1000)})
         ORDER BY domain`,
      );
      expect(runs.map((r) => r.domain)).toEqual(expect.arrayContaining(['good.test', 'stall.test', 'stall2.test']));
    });
  });

  describe('check now: the API asks over a queue, the scheduler checks', () => {
    it('answers the run the scheduler made, refuses a domain not managed, and gives up when no scheduler runs', async () => {
      const redis = createRedis(config.REDIS_URL, 'worker');
      const db = createDb(ch, { timeoutSeconds: 30, maxRows: 100_000 });
      const logger = createLogger('posture', 'silent');
      const scheduler = startPostureChecks(
        { ...posture, POSTURE_DOMAINS: ['good.test'], QUEUE_NAME: config.QUEUE_NAME, POSTURE_INTERVAL_MS: 0 },
        { redis, clickhouse: ch, db, logger },
      );
      const client = checkNowClient(redis, config.QUEUE_NAME);
      const nobody = checkNowClient(redis, `${config.QUEUE_NAME}-without-scheduler`);
      try {
        const run = await client.check('good.test', 30_000);
        expect(run.results.map((r) => [r.check, r.severity])).toContainEqual(['mx-tls', 'ok']);
        const [stored] = await db.rows<{ at: string }>(
          "SELECT toString(max(checked_at)) AS at FROM posture_checks WHERE domain = 'good.test'",
        );
        expect(stored!.at).toBe(run.checkedAt);
        // The scheduler checks only managed domains, whatever reaches its queue.
        await expect(client.check('bad.test', 30_000)).rejects.toThrow(/not a managed domain/);
        const waited = nobody.check('good.test', 500);
        await expect(waited).rejects.toBeInstanceOf(CheckNowUnavailable);
        await expect(waited).rejects.toThrow(/no check of good.test finished within 0.5 s/);
      } finally {
        await nobody.close();
        await client.close();
        await scheduler.close();
        redis.disconnect();
      }
    });

    it("the dashboard's Check now runs one through the scheduler; the checks page shows it, each finding's history", async () => {
      const redis = createRedis(config.REDIS_URL, 'worker');
      const db = createDb(ch, { timeoutSeconds: 30, maxRows: 100_000 });
      const logger = createLogger('posture', 'silent');
      const managed = { ...posture, POSTURE_DOMAINS: ['good.test'], QUEUE_NAME: config.QUEUE_NAME };
      const scheduler = startPostureChecks(
        { ...managed, POSTURE_INTERVAL_MS: 0 },
        { redis, clickhouse: ch, db, logger },
      );
      const checkNow = checkNowClient(redis, config.QUEUE_NAME);
      const server = await createApi(
        { ...config, ...managed, API_TOKENS: JSON.stringify([{ name: 'operator', token: 'checks-operator-1' }]) },
        {
          db,
          logger,
          registry: new Registry(),
          ready: async () => true,
          sessions: redisSessions(redis, config.QUEUE_NAME, 600),
          clickhouse: ch,
          checkNow,
        },
      );
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      try {
        const signIn = await fetch(`${base}/ui/sign-in`, {
          method: 'POST',
          redirect: 'manual',
          headers: { origin: base, 'content-type': 'application/x-www-form-urlencoded' },
          body: 'token=checks-operator-1&next=%2Fui%2Fchecks%2Fgood.test',
        });
        const cookie = signIn.headers.get('set-cookie')!.split(';')[0]!;
        const runsBefore = await db.rows<{ n: number }>(
          "SELECT uniqExact(checked_at) AS n FROM posture_checks WHERE domain = 'good.test'",
        );
        const post = (domain: string) =>
          fetch(`${base}/ui/checks/${domain}/run`, {
            method: 'POST',
            redirect: 'manual',
            headers: { origin: base, cookie, 'content-type': 'application/x-www-form-urlencoded' },
            body: `next=${encodeURIComponent(`/ui/checks/${domain}`)}`,
          });
        const ran = await post('good.test');
        expect(ran.status).toBe(303);
        expect(ran.headers.get('location')).toBe('/ui/checks/good.test');
        const [after] = await db.rows<{ n: number; at: string }>(
          "SELECT uniqExact(checked_at) AS n, toString(max(checked_at)) AS at FROM posture_checks WHERE domain = 'good.test'",
        );
        expect(Number(after!.n)).toBe(Number(runsBefore[0]!.n) + 1);
        const page = await fetch(`${base}/ui/checks/good.test`, { headers: { cookie } });
        expect(page.status).toBe(200);
        const shown = (await page.text()).replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ');
        expect(shown).toContain(`The run of ${after!.at} UTC`);
        expect(shown).toMatch(/mx-tls mx1\.good\.test ok/);
        const n = Number(after!.n);
        expect(shown).toContain(`Each finding over the last ${n} ${n === 1 ? 'run' : 'runs'}`);
        // Not managed: never checked, whoever asks; a cross-site form is refused before anything runs.
        expect((await post('bad.test')).status).toBe(404);
        const crossSite = await fetch(`${base}/ui/checks/good.test/run`, {
          method: 'POST',
          headers: { origin: 'https://elsewhere.example', cookie },
        });
        expect(crossSite.status).toBe(403);
      } finally {
        await new Promise<void>((r) => server.close(() => r()));
        await checkNow.close();
        await scheduler.close();
        redis.disconnect();
      }
    });
  });
});

describe("the diagnosis' commands, run against a host in that failure state", () => {
  /** A command as the dashboard suggests it for `host`, run against the test MX at `address`. */
  const runCheck = (command: string, host: string, address: string): Promise<string> =>
    new Promise((resolve) => {
      // The suite's CA stands in for the public ones a real MX's chain leads to.
      const local = command
        .replaceAll('openssl s_client ', `openssl s_client -CAfile ${join(dir, 'ca.pem')} `)
        .replaceAll(`-connect ${host}:25`, `-connect ${address}:${mxPort}`)
        .replaceAll(`--server ${host}`, `--server ${address}:${mxPort}`)
        // A policy host: port 443 is the test server's, and curl trusts the suite's CA.
        .replaceAll(`-connect ${host}:443`, `-connect ${address}:${policyPort}`)
        .replaceAll('curl ', `curl --cacert ${join(dir, 'ca.pem')} --connect-to ${host}:443:${address}:${policyPort} `);
      execFile('bash', ['-c', local], { timeout: 15_000 }, (_err, stdout, stderr) => resolve(`${stdout}\n${stderr}`));
    });
  const checksFor = (resultType: string, host: string, policyDomain = 'bad.test'): string[] =>
    diagnose(
      {
        resultType,
        failedSessionCount: 1,
        receivingMxHostname: host,
        receivingIp: null,
        sendingMtaIp: null,
        failureReasonCode: null,
        additionalInformation: null,
      },
      { policyDomain, organization: 'Google' },
    ).checks;

  it('certificate-expired: prints the expiry date, in the past', async () => {
    const [command] = checksFor('certificate-expired', 'mx-expired.bad.test');
    const out = await runCheck(command!, 'mx-expired.bad.test', '127.0.0.12');
    const notAfter = /notAfter=(.+)/.exec(out)?.[1];
    expect(notAfter, out).toBeDefined();
    expect(Date.parse(notAfter!)).toBeLessThan(Date.now());
  });

  it('certificate-not-trusted: prints the chain and why it is not trusted', async () => {
    const [command] = checksFor('certificate-not-trusted', 'mx-selfsigned.bad.test');
    const out = await runCheck(command!, 'mx-selfsigned.bad.test', '127.0.0.14');
    expect(out).toMatch(/BEGIN CERTIFICATE/);
    expect(out).toMatch(/Verify return code: (18|19|21) /);
  });

  it('certificate-host-mismatch: says the name does not match', async () => {
    const [command] = checksFor('certificate-host-mismatch', 'mx-wrongname.bad.test');
    const out = await runCheck(command!, 'mx-wrongname.bad.test', '127.0.0.13');
    expect(out).toMatch(/hostname mismatch|verify error:num=62/);
  });

  it('sts-policy-fetch-error: the policy host answers 404', async () => {
    const [curl] = checksFor('sts-policy-fetch-error', '', 'bad.test');
    const out = await runCheck(curl!, 'mta-sts.bad.test', '127.0.0.22');
    expect(out).toMatch(/< HTTP\/1\.1 404/);
  });

  it('sts-webpki-invalid: the certificate of mta-sts.<domain> is for another name', async () => {
    const [openssl] = checksFor('sts-webpki-invalid', '', 'wrongcert.test');
    const out = await runCheck(openssl!, 'mta-sts.wrongcert.test', '127.0.0.24');
    expect(out).toMatch(/hostname mismatch|verify error:num=62/);
    // The same command against a good policy host verifies.
    const [good] = checksFor('sts-webpki-invalid', '', 'good.test');
    expect(await runCheck(good!, 'mta-sts.good.test', '127.0.0.21')).toMatch(/Verify return code: 0 \(ok\)/);
  });

  it('starttls-not-supported: the EHLO reply without STARTTLS, and openssl finding none', async () => {
    const [swaks, openssl] = checksFor('starttls-not-supported', 'mx-plain.bad.test');
    const ehlo = await runCheck(swaks!, 'mx-plain.bad.test', '127.0.0.15');
    expect(ehlo).toMatch(/<-\s+250/);
    expect(ehlo).not.toMatch(/STARTTLS/);
    expect(await runCheck(openssl!, 'mx-plain.bad.test', '127.0.0.15')).toMatch(/STARTTLS|starttls/);
  });
});
