// An HTTP request fuzzer (fast-check over request lines, headers and bodies) against the running HTTPS receiver
// and API: no input may end either process or meet our own bug (a 500). A short run in `npm test`;
// `npm run fuzz` runs it long (HTTP_FUZZ_RUNS). Afterwards every read path runs over what the fuzzer stored.
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { connect as netConnect, type Socket } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { acceptsConnections, freePort, waitUntil } from '../../dev/stack.ts';
import type { ClickHouseClient } from '../../services/common/clickhouse.ts';
import { devCertPaths } from '../../services/common/tls.ts';
import { corpusReports } from '../helpers/corpus.ts';
import { testConfig, testDatabase, until } from '../helpers/env.ts';
import { configEnv, postReport, startService, type RunningService } from '../helpers/services.ts';

const RUNS = Number(process.env.HTTP_FUZZ_RUNS ?? 1000);
const SEED = Number(process.env.HTTP_FUZZ_SEED ?? 8460);
const TOKEN = 'fuzz-admin-token';
const config = testConfig({
  API_TOKENS: JSON.stringify([{ name: 'ops', token: TOKEN }]),
  HTTP_REQUEST_TIMEOUT_MS: '2000',
});
const svc: Record<string, RunningService> = {};
let ch: ClickHouseClient;
let ca = '';
let httpsPort = 0;
let apiPort = 0;

beforeAll(async () => {
  ch = await testDatabase(config);
  httpsPort = await freePort();
  apiPort = await freePort();
  const dir = join(inject('dataDir'), `http-fuzz-${randomUUID()}`);
  const env = configEnv(config, {
    HTTP_PORT: httpsPort,
    HTTP_HOST: '127.0.0.1',
    API_PORT: apiPort,
    API_HOST: '127.0.0.1',
    DATA_DIR: dir,
    LOG_LEVEL: 'fatal',
    // The fuzzer comes from one address.
    HTTP_RATE_LIMIT_PER_MINUTE: '1000000',
  });
  svc.http = startService('http-receiver', env);
  svc.worker = startService('worker', env);
  svc.api = startService('api', env);
  await waitUntil('certificate', () => readFile(devCertPaths(dir).cert).then(() => true), 30_000);
  ca = await readFile(devCertPaths(dir).cert, 'utf8');
  for (const port of [httpsPort, apiPort]) await waitUntil(`port ${port}`, () => acceptsConnections(port), 30_000);
});

afterAll(async () => {
  // Every service is stopped before any exit code is checked: a failed check must not leave the others running.
  const codes = await Promise.all(Object.values(svc).map((s) => s.stop()));
  expect(codes.every((c) => c === 0)).toBe(true);
  await ch.command({ query: `DROP DATABASE IF EXISTS ${config.CLICKHOUSE_DATABASE}` });
  await ch.close();
});

const token = fc.stringMatching(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,20}$/);
const anyText = fc.string({ unit: 'binary', maxLength: 60 });
const report = () => corpusReports()[0]!.json;

const method = fc.oneof(fc.constantFrom('GET', 'POST', 'HEAD', 'PUT', 'DELETE', 'OPTIONS', 'PATCH'), token);
const target = fc.oneof(
  fc.constantFrom('/v1/tlsrpt', '/v1/domains', '/v1/reports', '/v1/alerts', '/openapi.json', '/metrics', '*'),
  fc
    .tuple(fc.constantFrom('/v1/tlsrpt', '/v1/domains/', '/v1/reports/', '//', '/', 'http://', '/\\'), anyText)
    .map(([a, b]) => a + b),
  fc
    .array(fc.oneof(fc.constantFrom('%', '%zz', '%C0%80', '%ED%A0%80', '%FF', '?', '&', '=', '#', '..', '['), token), {
      maxLength: 8,
    })
    .map((parts) => `/v1/domains/${parts.join('')}/summary?${parts.join('=')}`),
);
const header = fc.oneof(
  fc.tuple(token, anyText),
  fc.tuple(
    fc.constantFrom(
      'Content-Type',
      'Content-Encoding',
      'Content-Length',
      'Transfer-Encoding',
      'Authorization',
      'Expect',
    ),
    fc.oneof(
      anyText,
      fc.constantFrom('application/tlsrpt+gzip', 'application/tlsrpt+json', 'gzip', 'chunked', '-1', '99999999999'),
      fc.constant(`Bearer ${TOKEN}`),
    ),
  ),
);
const body = fc.oneof(
  fc.uint8Array({ maxLength: 2048 }).map((b) => Buffer.from(b)),
  fc.constant(null).map(() => Buffer.from(report())),
  fc.constant(null).map(() => gzipSync(report())),
  fc.tuple(fc.nat({ max: 2000 }), fc.uint8Array({ minLength: 1, maxLength: 16 })).map(([at, junk]) => {
    const b = Buffer.from(report());
    b.set(junk, Math.min(at, b.length - junk.length));
    return gzipSync(b);
  }),
);
const request = fc
  .record({
    port: fc.constantFrom('https', 'api'),
    method,
    target,
    headers: fc.array(header, { maxLength: 6 }),
    body,
    length: fc.oneof(fc.constant('exact'), fc.constant('none'), fc.integer({ min: -5, max: 5000 })),
    version: fc.constantFrom('HTTP/1.1', 'HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0', 'HTTP/1.1 extra'),
  })
  .map((r) => {
    const length =
      r.length === 'exact'
        ? `Content-Length: ${r.body.length}\r\n`
        : r.length === 'none'
          ? ''
          : `Content-Length: ${r.length}\r\n`;
    const head = `${r.method} ${r.target} ${r.version}\r\nHost: x\r\n${r.headers.map(([k, v]) => `${k}: ${v}\r\n`).join('')}${length}\r\n`;
    return { port: r.port, bytes: Buffer.concat([Buffer.from(head, 'latin1'), r.body]) };
  });

/** Sends one request; resolves with what came back (after 300 ms of silence the client gives up: a lying length). */
function send(port: 'https' | 'api', bytes: Buffer): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    let quiet: NodeJS.Timeout;
    const socket: Socket =
      port === 'https'
        ? tlsConnect({ host: '127.0.0.1', port: httpsPort, ca, servername: 'localhost' }, () => socket.write(bytes))
        : netConnect(apiPort, '127.0.0.1', () => socket.write(bytes));
    const finish = () => {
      clearTimeout(quiet);
      socket.destroy();
      resolve(got);
    };
    const wait = () => {
      clearTimeout(quiet);
      quiet = setTimeout(finish, 300);
    };
    wait();
    socket.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      wait();
    });
    socket.on('close', finish);
    socket.on('error', finish);
  });
}

describe('HTTP request fuzzing', () => {
  it(`${RUNS} fuzzed requests: no answer is a 500 (our bug), no process ends`, async () => {
    const statuses = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(request, async ({ port, bytes }) => {
        const answer = await send(port, bytes);
        const status = /^HTTP\/1\.[01] (\d{3})/.exec(answer)?.[1] ?? 'none';
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
        expect(status).not.toBe('500');
        for (const [name, s] of Object.entries(svc))
          expect(s.child.exitCode, `${name}: ${s.output().slice(-3000)}`).toBeNull();
      }),
      { numRuns: RUNS, seed: SEED },
    );
    // Both sides were reached: refusals and (in runs long enough to draw well-formed requests) acceptances.
    expect(statuses.get('400') ?? 0).toBeGreaterThan(0);
    if (RUNS >= 1000) expect((statuses.get('202') ?? 0) + (statuses.get('200') ?? 0)).toBeGreaterThan(0);
  }, 600_000);

  it('afterwards a normal report is stored, and every read path answers over what the fuzzer stored', async () => {
    const r = await postReport(httpsPort, ca, gzipSync(corpusReports()[1]!.body), { agent: false });
    expect(r.status).toBe(202);
    const get = async (path: string) =>
      (await fetch(`http://127.0.0.1:${apiPort}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } })).status;
    const list = await until('reports', async () => {
      const res = await fetch(`http://127.0.0.1:${apiPort}/v1/reports?from=2000-01-01&to=2099-12-31&limit=500`, {
        headers: { authorization: `Bearer ${TOKEN}` },
      });
      const b = (await res.json()) as { reports: Array<{ reportKey: string }> };
      return b.reports.length > 0 ? b.reports : undefined;
    });
    for (const { reportKey } of list) expect(await get(`/v1/reports/${reportKey}`)).toBe(200);
    expect(await get('/v1/domains?from=2000-01-01&to=2000-12-31')).toBe(200);
    expect(await get('/v1/rejects')).toBe(200);
  });
});
