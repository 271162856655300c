// npm start's supervisor (dev/up.ts) as it runs, on the suite's Redis and ClickHouse: a service that dies
// is started again and the others keep serving; Ctrl-C (SIGINT) still stops everything.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { acceptsConnections, freePort } from '../../dev/stack.ts';
import type { ClickHouseClient } from '../../services/common/clickhouse.ts';
import { devCertPaths } from '../../services/common/tls.ts';
import { corpusReports } from '../helpers/corpus.ts';
import { testConfig, testDatabase, until } from '../helpers/env.ts';
import { configEnv, postReport } from '../helpers/services.ts';

const config = testConfig();
let ch: ClickHouseClient;
let stack: ChildProcess;
let out = '';
const ports: Record<string, number> = {};
const dataDir = join(inject('dataDir'), `stack-${config.QUEUE_NAME}`);

/** The pid of the stack's child running `dist/<name>/main.mjs`. */
function servicePid(name: string): number | undefined {
  const lines = execFileSync('ps', ['-o', 'pid=,args=', '--ppid', String(stack.pid)], { encoding: 'utf8' });
  const line = lines.split('\n').find((l) => l.includes(`/${name}/main.mjs`));
  return line ? Number(line.trim().split(/\s+/)[0]) : undefined;
}

beforeAll(async () => {
  ch = await testDatabase(config);
  for (const k of [
    'HTTP_PORT',
    'SMTP_PORT',
    'API_PORT',
    'WORKER_METRICS_PORT',
    'SMTP_METRICS_PORT',
    'HTTP_METRICS_PORT',
  ])
    ports[k] = await freePort();
  const env = configEnv(config, { ...ports, DATA_DIR: dataDir, LOG_LEVEL: 'warn', HTTP_HOST: '127.0.0.1' });
  stack = spawn(
    process.execPath,
    ['--import', 'tsx', 'dev/up.ts', '--dist-dir', join(inject('distDir'), '..', `stack-${config.QUEUE_NAME}`)],
    {
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  stack.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  stack.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  await until('stack up', async () => (out.includes('[stack] up:') ? true : undefined), 120_000);
}, 150_000);

afterAll(async () => {
  if (stack.exitCode === null) {
    const exited = new Promise((r) => stack.once('exit', r));
    stack.kill('SIGINT');
    await exited;
  }
  await ch.command({ query: `DROP DATABASE IF EXISTS ${config.CLICKHOUSE_DATABASE}` });
  await ch.close();
});

describe('npm start supervises its services', () => {
  it('a receiver killed with SIGKILL is started again, and reports are taken after', async () => {
    const first = servicePid('http-receiver');
    expect(first).toBeGreaterThan(0);
    process.kill(first!, 'SIGKILL');
    await until('restart logged', async () => (/http-receiver exited unexpectedly/.test(out) ? true : undefined));
    const second = await until('new receiver', async () => {
      const pid = servicePid('http-receiver');
      return pid && pid !== first && (await acceptsConnections(ports.HTTP_PORT!)) ? pid : undefined;
    });
    expect(second).not.toBe(first);
    expect(stack.exitCode).toBeNull();
    // The API never stopped meanwhile.
    expect(await acceptsConnections(ports.API_PORT!)).toBe(true);
    const ca = await readFile(devCertPaths(dataDir).cert, 'utf8');
    const r = await postReport(ports.HTTP_PORT!, ca, gzipSync(corpusReports()[0]!.body));
    expect(r.status).toBe(202);
  });

  it('Ctrl-C stops the stack and its services', async () => {
    const pids = ['worker', 'api', 'http-receiver', 'smtp-receiver'].map(servicePid);
    expect(pids.every((p) => p !== undefined && p > 0)).toBe(true);
    const exited = new Promise<number | null>((r) => stack.once('exit', (code) => r(code)));
    stack.kill('SIGINT');
    expect(await exited).toBe(0);
    for (const pid of pids) expect(() => process.kill(pid!, 0)).toThrow();
  });
});
