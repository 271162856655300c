// The policy host's certificate from a real ACME CA: Debian's pebble, validating HTTP-01 through dnsmasq, both
// started here. The policy host orders a certificate for mta-sts.<domain> of a hosted domain by itself; a
// sending-MTA-style fetch of the policy then verifies it against pebble's root.
import { existsSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { request } from 'node:https';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { freePort } from '../../dev/stack.ts';
import { putPolicy } from '../../services/api/mta-sts.ts';
import { createDb } from '../../services/api/queries.ts';
import { certificateHistory } from '../../services/common/sts-certificates.ts';
import { clientRows } from '../../services/common/sts-policies.ts';
import type { ClickHouseClient } from '../../services/common/clickhouse.ts';
import { testConfig, testDatabase, until } from '../helpers/env.ts';
import { startDnsmasq, startPebble, type Dnsmasq, type Pebble } from '../helpers/dns-and-ca.ts';
import { configEnv, startService, type RunningService } from '../helpers/services.ts';

const config = testConfig();
let ch: ClickHouseClient;
let dir: string;
let dns: Dnsmasq;
let pebble: Pebble;
let host: RunningService;
let stsPort: number;

beforeAll(async () => {
  ch = await testDatabase(config);
  dir = join(inject('dataDir'), `acme-${config.QUEUE_NAME}`);
  await mkdir(join(dir, 'certs'), { recursive: true });
  dns = await startDnsmasq(dir, ['--host-record=mta-sts.acme.test,127.0.0.1'], ['mta-sts.acme.test', '127.0.0.1']);
  const challengePort = await freePort();
  pebble = await startPebble(dir, dns.port, challengePort);
  // acme.test resolves to the challenge server; broken.acme.test does not resolve at all (the CA cannot validate it).
  for (const domain of ['acme.test', 'broken.acme.test'])
    await putPolicy(createDb(ch, { timeoutSeconds: 30, maxRows: 1000 }), ch, {
      domain,
      input: { mode: 'testing', mx: [`mx.${domain}`], maxAge: 86400 },
      by: 'test',
      readinessDays: 14,
      now: new Date(),
    });
  stsPort = await freePort();
  host = startService(
    'mta-sts',
    configEnv(config, {
      MTA_STS_HOST: '127.0.0.1',
      MTA_STS_PORT: stsPort,
      MTA_STS_METRICS_PORT: 0,
      MTA_STS_CERT_DIR: join(dir, 'certs'),
      MTA_STS_REFRESH_SECONDS: 1,
      MTA_STS_ACME_DIRECTORY: pebble.directoryUrl,
      MTA_STS_ACME_CA_FILE: pebble.apiCaFile,
      MTA_STS_ACME_HTTP_PORT: challengePort,
      MTA_STS_ACME_EMAIL: 'ops@acme.test',
      LOG_LEVEL: 'info',
    }),
  );
}, 120_000);

afterAll(async () => {
  expect(await host.stop()).toBe(0);
  pebble.stop();
  dns.stop();
  await rm(dir, { recursive: true, force: true });
  await ch.command({ query: `DROP DATABASE IF EXISTS ${config.CLICKHOUSE_DATABASE}` });
  await ch.close();
});

describe('the policy host with certificates from an ACME CA', () => {
  it('orders a certificate over HTTP-01 and serves the policy with it, verified against the CA root', async () => {
    await until(
      'the certificate issued',
      async () => (existsSync(join(dir, 'certs', 'mta-sts.acme.test.pem')) ? true : undefined),
      90_000,
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n${host.output()}`);
    });
    expect(host.output()).toMatch(/certificate issued by the ACME CA/);
    const root = await pebble.root();
    const fetchPolicy = () =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        request(
          {
            host: '127.0.0.1',
            port: stsPort,
            path: '/.well-known/mta-sts.txt',
            servername: 'mta-sts.acme.test',
            headers: { host: 'mta-sts.acme.test' },
            ca: root,
            agent: false,
          },
          (res) => {
            let body = '';
            res.on('data', (d: Buffer) => (body += d.toString()));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
          },
        )
          .on('error', reject)
          .end();
      });
    // The new certificate is picked up at the next refresh.
    const got = await until(
      'the policy served with it',
      () =>
        fetchPolicy().then(
          (r) => r,
          () => undefined,
        ),
      15_000,
    );
    expect(got).toEqual({
      status: 200,
      body: 'version: STSv1\r\nmode: testing\r\nmx: mx.acme.test\r\nmax_age: 86400\r\n',
    });
  });

  it('records each certificate state for the API and the dashboard: pending, then issued or failed with the reason', async () => {
    const states = async (host: string) =>
      (await certificateHistory(clientRows(ch), host)).reverse().map((r) => ({ state: r.state, r }));
    const issued = await until('issued recorded', async () => {
      const h = await states('mta-sts.acme.test');
      return h.at(-1)?.state === 'issued' ? h : undefined;
    });
    expect(issued.map((s) => s.state)).toEqual(['pending', 'issued']);
    expect(issued[1]!.r.issuer).toMatch(/Pebble/);
    expect(issued[1]!.r.valid_until > issued[1]!.r.valid_from).toBe(true);
    const failed = await until(
      'failed recorded',
      async () => {
        const h = await states('mta-sts.broken.acme.test');
        return h.at(-1)?.state === 'failed' ? h : undefined;
      },
      60_000,
    );
    expect(failed.map((s) => s.state)).toEqual(['pending', 'failed']);
    expect(failed[1]!.r.reason).toMatch(
      /^the ACME order failed: .+; tried again after \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/,
    );
    // The CA's own words, naming the host it could not validate.
    expect(failed[1]!.r.reason).toMatch(/broken\.acme\.test/);
    expect(host.output()).toMatch(/ACME order failed; tried again in an hour/);
  });
});
