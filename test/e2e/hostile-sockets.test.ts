// Raw bytes against every port we listen on, as an attacker on the internet would send them: each input gets its
// documented answer, and after each one every service is still up, under its memory bound, and a normal report
// is still stored. Then every read path of the API is run over what the hostile inputs stored.
import { randomUUID } from 'node:crypto';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { acceptsConnections, freePort, waitUntil } from '../../dev/stack.ts';
import type { ClickHouseClient } from '../../services/common/clickhouse.ts';
import { quoteString } from '../../services/common/clickhouse-compat.ts';
import { corpusReports } from '../helpers/corpus.ts';
import { queryRows, testConfig, testDatabase, until } from '../helpers/env.ts';
import { configEnv, devCa, postReport, rssMb, startService, type RunningService } from '../helpers/services.ts';

const TOKEN = 'hostile-admin-token';
const config = testConfig({
  API_TOKENS: JSON.stringify([{ name: 'ops', token: TOKEN }]),
  HTTP_REQUEST_TIMEOUT_MS: '3000',
  SMTP_SOCKET_TIMEOUT_MS: '3000',
});
const RSS_BOUND_MB: Record<string, number> = { http: 400, smtp: 300, worker: 600, api: 300 };
type PortName = 'https' | 'https-ops' | 'smtp' | 'smtp-ops' | 'worker-ops' | 'api';
const ports = {} as Record<PortName, number>;
const svc: Record<string, RunningService> = {};
let ch: ClickHouseClient;
let ca = '';

beforeAll(async () => {
  ch = await testDatabase(config);
  for (const p of ['https', 'https-ops', 'smtp', 'smtp-ops', 'worker-ops', 'api'] as PortName[])
    ports[p] = await freePort();
  const dir = join(inject('dataDir'), `hostile-sockets-${randomUUID()}`);
  const env = configEnv(config, {
    HTTP_PORT: ports.https,
    HTTP_HOST: '127.0.0.1',
    HTTP_METRICS_PORT: ports['https-ops'],
    SMTP_PORT: ports.smtp,
    SMTP_HOST: '127.0.0.1',
    SMTP_METRICS_PORT: ports['smtp-ops'],
    WORKER_METRICS_PORT: ports['worker-ops'],
    API_PORT: ports.api,
    API_HOST: '127.0.0.1',
    DATA_DIR: dir,
    LOG_LEVEL: 'error',
  });
  svc.http = startService('http-receiver', env);
  ca = await devCa(dir);
  svc.smtp = startService('smtp-receiver', env);
  svc.worker = startService('worker', env);
  svc.api = startService('api', env);
  await until('services up', async () => ((await normalReportStored()) ? true : undefined), 60_000);
  // Refused while the API is still starting: asked again.
  await until('api up', async () =>
    (await api('/v1/domains').then(
      (r) => r.status === 200,
      () => false,
    ))
      ? true
      : undefined,
  );
  // Every port listens before the first case (a service stopped while starting exits by signal, not by itself).
  for (const port of Object.values(ports)) await waitUntil(`port ${port}`, () => acceptsConnections(port), 30_000);
});

afterAll(async () => {
  // Every service is stopped before any exit code is checked: a failed check must not leave the others running.
  const codes = await Promise.all(Object.values(svc).map((s) => s.stop()));
  expect(codes.every((c) => c === 0)).toBe(true);
  await ch.command({ query: `DROP DATABASE IF EXISTS ${config.CLICKHOUSE_DATABASE}` });
  await ch.close();
});

async function api(path: string) {
  const res = await fetch(`http://127.0.0.1:${ports.api}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function normalReportStored(): Promise<boolean> {
  const r = await postReport(ports.https, ca, gzipSync(corpusReports()[0]!.body), { agent: false });
  if (r.status !== 202) return false;
  await until(`receipt ${r.id}`, async () => {
    const [row] = await queryRows<{ outcome: string }>(
      ch,
      `SELECT outcome FROM receipts WHERE receipt_id = ${quoteString(r.id!)}`,
    );
    return row?.outcome === 'stored' ? true : undefined;
  });
  return true;
}

/** Sends raw bytes to a port (TLS for the HTTPS receiver); resolves with what came back by the time it matched. */
function exchange(port: PortName, bytes: Buffer, done: RegExp): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    // An SMTP client speaks after the greeting (one that does not is a case of its own: early talker).
    const greeted = port === 'smtp' && !bytes.toString('latin1').startsWith('EARLY ');
    const onConnect = () => {
      if (!greeted) socket.write(bytes);
    };
    const socket =
      port === 'https'
        ? tlsConnect({ host: '127.0.0.1', port: ports.https, ca, servername: 'localhost' }, onConnect)
        : netConnect(ports[port], '127.0.0.1', onConnect);
    const finish = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(got);
    };
    const timer = setTimeout(finish, 4000);
    socket.on('data', (d: Buffer) => {
      const first = got === '';
      got += d.toString('latin1');
      if (greeted && first) socket.write(bytes);
      else if (done.test(got)) finish();
    });
    socket.on('close', finish);
    socket.on('error', finish);
  });
}

const auth = `Authorization: Bearer ${TOKEN}\r\n`;
const get = (target: string, headers = '') => `GET ${target} HTTP/1.1\r\nHost: x\r\n${headers}\r\n`;
const post = (target: string, body: string, headers = 'Content-Type: application/tlsrpt+json\r\n') =>
  `POST ${target} HTTP/1.1\r\nHost: x\r\n${headers}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
const smtpSession = (...commands: string[]) => `EHLO hostile.example\r\n${commands.join('\r\n')}\r\nQUIT\r\n`;
const report = corpusReports()[0]!.json;

/** [port, what it is, bytes, the answer expected (a status line or reply code, in what came back)]. */
const CASES: Array<[PortName, string, string | Buffer, RegExp]> = [
  // The HTTPS receiver, before any authentication: malformed targets ended the process before.
  ['https', 'POST //[', post('//[', '{}'), /^HTTP\/1\.1 404 /],
  ['https', 'POST //%', post('//%', '{}'), /^HTTP\/1\.1 404 /],
  ['https', 'POST //a:99999/v1/tlsrpt', post('//a:99999/v1/tlsrpt', '{}'), /^HTTP\/1\.1 404 /],
  ['https', 'POST //@/', post('//@/', '{}'), /^HTTP\/1\.1 404 /],
  ['https', 'POST /\\[', post('/\\[', '{}'), /^HTTP\/1\.1 404 /],
  ['https', 'POST http://[/v1/tlsrpt', post('http://[/v1/tlsrpt', '{}'), /^HTTP\/1\.1 400 /],
  ['https', 'POST http://[::1/v1/tlsrpt', post('http://[::1/v1/tlsrpt', '{}'), /^HTTP\/1\.1 400 /],
  ['https', 'POST http://a:b:c/v1/tlsrpt', post('http://a:b:c/v1/tlsrpt', '{}'), /^HTTP\/1\.1 400 /],
  ['https', 'POST absolute-form to the report path', post('https://x/v1/tlsrpt', report), /^HTTP\/1\.1 202 /],
  [
    'https',
    'a good report, then POST //[ on the same connection',
    post('/v1/tlsrpt', report) + post('//[', '{}'),
    /202[\s\S]*HTTP\/1\.1 404 /,
  ],
  ['https', 'OPTIONS *', 'OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n', /^HTTP\/1\.1 400 /],
  ['https', 'GET the report path', get('/v1/tlsrpt'), /^HTTP\/1\.1 405 /],
  ['https', 'GET /metrics on the public port', get('/metrics'), /^HTTP\/1\.1 404 /],
  ['https', 'GET /readyz on the public port', get('/readyz'), /^HTTP\/1\.1 404 /],
  ['https', 'an empty body', post('/v1/tlsrpt', ''), /^HTTP\/1\.1 400 /],
  ['https', 'text/html', post('/v1/tlsrpt', '<html>', 'Content-Type: text/html\r\n'), /^HTTP\/1\.1 415 /],
  ['https', 'Content-Encoding: br', post('/v1/tlsrpt', report, 'Content-Encoding: br\r\n'), /^HTTP\/1\.1 415 /],
  ['https', 'a report with ?__proto__=1', post('/v1/tlsrpt?__proto__=1&constructor=x', report), /^HTTP\/1\.1 202 /],
  [
    'https',
    'a path of percent junk below the report path',
    post('/v1/tlsrpt/%zz/%C0%80/%ED%A0%80', report),
    /^HTTP\/1\.1 202 /,
  ],
  [
    'https',
    'raw UTF-8 and high bytes in the target',
    Buffer.from(post('/v1/tlsrpt/\u00ff\u00fe', report), 'latin1'),
    /^HTTP\/1\.1 (202|400) /,
  ],
  [
    'https',
    'Content-Length: -1',
    'POST /v1/tlsrpt HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n',
    /^HTTP\/1\.1 400 /,
  ],
  [
    'https',
    'Content-Length: abc',
    'POST /v1/tlsrpt HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n',
    /^HTTP\/1\.1 400 /,
  ],
  [
    'https',
    'two different Content-Lengths',
    'POST /v1/tlsrpt HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}',
    /^HTTP\/1\.1 400 /,
  ],
  [
    'https',
    'Content-Length with chunked',
    'POST /v1/tlsrpt HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n',
    /^HTTP\/1\.1 400 /,
  ],
  [
    'https',
    'a chunk size that is not hex',
    'POST /v1/tlsrpt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n',
    /^HTTP\/1\.1 400 /,
  ],
  ['https', 'a NUL in a header', 'POST /v1/tlsrpt HTTP/1.1\r\nHost: x\r\nX-A: a\u0000b\r\n\r\n', /^HTTP\/1\.1 400 /],
  ['https', 'a header line without a colon', 'POST /v1/tlsrpt HTTP/1.1\r\nHost x\r\n\r\n', /^HTTP\/1\.1 400 /],
  [
    'https',
    '100 KB of headers',
    `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(100_000)}\r\n\r\n`,
    /^HTTP\/1\.1 431 /,
  ],
  ['https', 'a 100 KB target', `GET /${'a'.repeat(100_000)} HTTP/1.1\r\nHost: x\r\n\r\n`, /^HTTP\/1\.1 431 /],
  ['https', 'an HTTP/2 preface', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', /^HTTP\/1\.1 (400|505) /],
  ['https', 'HTTP/9.9', 'GET / HTTP/9.9\r\nHost: x\r\n\r\n', /^HTTP\/1\.1 (400|505) /],
  ['https', 'an unknown method', 'BREW /v1/tlsrpt HTTP/1.1\r\nHost: x\r\n\r\n', /^HTTP\/1\.1 400 /],
  ['https', 'binary garbage', Buffer.from([0, 1, 2, 3, 0xff, 0xfe, 13, 10, 13, 10]), /^HTTP\/1\.1 400 /],
  [
    'https',
    'a JSON body under a gzip type',
    post('/v1/tlsrpt', report, 'Content-Type: application/tlsrpt+gzip\r\n'),
    /^HTTP\/1\.1 202 /,
  ],
  // Its ops port (metrics and health, off the internet).
  ['https-ops', 'GET //[', get('//['), /^HTTP\/1\.1 404 /],
  ['https-ops', 'GET /metrics', get('/metrics'), /^HTTP\/1\.1 200 /],
  ['https-ops', 'GET /readyz?%zz', get('/readyz?%zz'), /^HTTP\/1\.1 200 /],
  ['https-ops', 'POST /metrics', post('/metrics', '{}'), /^HTTP\/1\.1 404 /],
  ['https-ops', 'binary garbage', Buffer.from([0xff, 0, 13, 10, 13, 10]), /^HTTP\/1\.1 400 /],
  // The API: the same targets, then bad escapes and parameters with a valid token.
  ['api', 'GET //[', get('//[', auth), /^HTTP\/1\.1 404 /],
  ['api', 'GET //%', get('//%', auth), /^HTTP\/1\.1 404 /],
  ['api', 'GET /\\[', get('/\\[', auth), /^HTTP\/1\.1 404 /],
  ['api', 'GET http://[/v1/domains', get('http://[/v1/domains', auth), /^HTTP\/1\.1 400 /],
  ['api', 'GET /v1/domains/%/summary', get('/v1/domains/%/summary', auth), /^HTTP\/1\.1 400 /],
  ['api', 'GET /v1/domains/%zz/summary', get('/v1/domains/%zz/summary', auth), /^HTTP\/1\.1 400 /],
  ['api', 'GET /v1/domains/%C0%80/daily', get('/v1/domains/%C0%80/daily', auth), /^HTTP\/1\.1 400 /],
  ['api', 'GET /v1/domains/%ED%A0%80/failures', get('/v1/domains/%ED%A0%80/failures', auth), /^HTTP\/1\.1 400 /],
  ['api', 'GET /v1/reports/%FF', get('/v1/reports/%FF', auth), /^HTTP\/1\.1 400 /],
  [
    'api',
    'GET /v1/domains?__proto__=1',
    get('/v1/domains?__proto__=1', auth),
    /^HTTP\/1\.1 400 [\s\S]*unknown parameter/,
  ],
  ['api', 'GET /v1/alerts?since above 2^53', get('/v1/alerts?since=90071992547409930', auth), /^HTTP\/1\.1 400 /],
  [
    'api',
    'a cursor of deep JSON',
    get(`/v1/reports?cursor=${Buffer.from('['.repeat(300)).toString('base64url')}`, auth),
    /^HTTP\/1\.1 400 /,
  ],
  [
    'api',
    'a cursor with __proto__',
    get(`/v1/reports?cursor=${Buffer.from('{"__proto__":{"day":"x"}}').toString('base64url')}`, auth),
    /^HTTP\/1\.1 400 /,
  ],
  ['api', 'no token', get('/v1/domains'), /^HTTP\/1\.1 401 /],
  [
    'api',
    'a token of 100 KB',
    get('/v1/domains', `Authorization: Bearer ${'t'.repeat(12_000)}\r\n`),
    /^HTTP\/1\.1 401 /,
  ],
  ['api', '/metrics without a token', get('/metrics'), /^HTTP\/1\.1 401 /],
  ['api', 'POST a query', post('/v1/domains', '{}', auth), /^HTTP\/1\.1 405 /],
  ['api', 'binary garbage', Buffer.from([0x16, 3, 1, 0, 5, 1, 0, 0, 1, 0]), /^HTTP\/1\.1 400 /],
  // SMTP: commands out of order, forbidden and malformed, and data that is not a report.
  ['smtp', 'talking before the greeting', 'EARLY EHLO x\r\n', /^421 /],
  ['smtp', 'DATA before RCPT', smtpSession('MAIL FROM:<a@b.example>', 'DATA'), /\r\n503 /],
  ['smtp', 'RCPT before MAIL', smtpSession('RCPT TO:<tlsrpt@localhost>'), /\r\n503 /],
  ['smtp', 'AUTH (disabled)', smtpSession('AUTH PLAIN AGFAYg=='), /\r\n500 [\s\S]*\r\n221 /],
  ['smtp', 'an unknown mailbox', smtpSession('MAIL FROM:<a@b.example>', 'RCPT TO:<root@localhost>'), /\r\n550 /],
  ['smtp', 'a NUL in a command', smtpSession('MAIL FROM:<a\u0000@b.example>'), /\r\n(250|5\d\d) [\s\S]*221 /],
  ['smtp', 'a 10 KB command line', smtpSession(`MAIL FROM:<${'a'.repeat(10_000)}@b.example>`), /\r\n5\d\d /],
  [
    'smtp',
    'BDAT',
    smtpSession('MAIL FROM:<a@b.example>', 'RCPT TO:<tlsrpt@localhost>', 'BDAT 10 LAST'),
    /\r\n50[0-4] /,
  ],
  [
    'smtp',
    'a mail that is not a report',
    smtpSession('MAIL FROM:<a@b.example>', 'RCPT TO:<tlsrpt@localhost>', 'DATA', 'Subject: hi\r\n\r\nhello\r\n.'),
    /\r\n554 /,
  ],
  [
    'smtp',
    'a mail with a broken MIME tree',
    smtpSession(
      'MAIL FROM:<a@b.example>',
      'RCPT TO:<tlsrpt@localhost>',
      'DATA',
      'Content-Type: multipart/mixed; boundary="x"\r\n\r\n--x\r\nContent-Type: multipart/mixed; boundary=""\r\n\r\n--\r\n.',
    ),
    /\r\n554 /,
  ],
  [
    'smtp',
    'STARTTLS then garbage instead of a handshake',
    'EHLO x\r\nSTARTTLS\r\n\u0000\u0001\u0002garbage\r\n',
    /220 [\s\S]*220 /,
  ],
  ['smtp', 'binary garbage', Buffer.from([0xff, 0xfe, 0, 13, 10, 0x80, 13, 10]), /^220 [\s\S]*\r\n5\d\d /],
  ['smtp', 'an HTTP request', get('/'), /^220 [\s\S]*\r\n421 HTTP requests not allowed/],
  // The other ops ports.
  ['smtp-ops', 'GET //[', get('//['), /^HTTP\/1\.1 404 /],
  ['smtp-ops', 'binary garbage', Buffer.from([0, 0, 13, 10, 13, 10]), /^HTTP\/1\.1 400 /],
  ['worker-ops', 'GET /\\[', get('/\\['), /^HTTP\/1\.1 404 /],
  ['worker-ops', 'GET /metrics', get('/metrics'), /^HTTP\/1\.1 200 /],
  ['worker-ops', 'binary garbage', Buffer.from([0xff, 13, 10, 13, 10]), /^HTTP\/1\.1 400 /],
];

describe('raw input on every port', () => {
  it('has at least 60 inputs over every port', () => {
    expect(CASES.length).toBeGreaterThanOrEqual(60);
    expect(new Set(CASES.map((c) => c[0])).size).toBe(6);
  });
  for (const [port, name, bytes, answer] of CASES) {
    it(`${port}: ${name}`, async () => {
      const got = await exchange(port, Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes), answer);
      expect(got.slice(0, 2000)).toMatch(answer);
      for (const [service, s] of Object.entries(svc)) {
        expect(s.child.exitCode, `${service} exited: ${s.output().slice(-2000)}`).toBeNull();
        expect(await rssMb(s), `${service} RSS (MB)`).toBeLessThan(RSS_BOUND_MB[service]!);
      }
      expect(await normalReportStored()).toBe(true);
    });
  }
});

describe('every read path over what the hostile inputs stored', () => {
  it('lists, summaries, series, breakdowns and every report answer 200', async () => {
    const all = await api('/v1/reports?from=2000-01-01&to=2099-12-31&limit=500');
    expect(all.status).toBe(200);
    const reports = all.body.reports as Array<{ reportKey: string }>;
    expect(reports.length).toBeGreaterThan(0);
    for (const r of reports) expect((await api(`/v1/reports/${r.reportKey}`)).status).toBe(200);
    const domains = await api('/v1/domains?from=2016-01-01&to=2016-12-31');
    expect(domains.status).toBe(200);
    for (const { domain } of domains.body.domains as Array<{ domain: string }>) {
      for (const path of ['summary', 'daily', 'failures', 'failures?by=reason-code'])
        expect(
          (
            await api(
              `/v1/domains/${encodeURIComponent(domain)}/${path}${path.includes('?') ? '&' : '?'}from=2016-01-01&to=2016-12-31`,
            )
          ).status,
        ).toBe(200);
    }
    expect((await api('/v1/alerts?since=0')).status).toBe(200);
    expect((await api('/v1/rejects')).status).toBe(200);
  });
});
