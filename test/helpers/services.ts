// Runs the real services, built from services/*/main.ts by the global setup, as child processes against the suite's
// stores.
import { spawn, type ChildProcess } from 'node:child_process';
import { request, type Agent } from 'node:https';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inject } from 'vitest';
import { configEnv as envOf, type Config } from '../../services/common/config.ts';
import { readFile } from 'node:fs/promises';
import { serviceArgs, waitUntil, type ServiceName } from '../../dev/stack.ts';
import { devCertPaths } from '../../services/common/tls.ts';
import { until } from './env.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export interface RunningService {
  child: ChildProcess;
  output: () => string;
  stop: (signal?: NodeJS.Signals) => Promise<number | null>;
}

/** The configuration as a service's environment, with overrides. */
export function configEnv(config: Config, overrides: Record<string, string | number> = {}): Record<string, string> {
  const env = envOf(config);
  for (const [k, v] of Object.entries(overrides)) env[k] = String(v);
  return env;
}

export function startService(name: ServiceName, env: Record<string, string>): RunningService {
  const child = spawn(process.execPath, serviceArgs(name, [], inject('distDir')), {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  return {
    child,
    output: () => out,
    stop: (signal: NodeJS.Signals = 'SIGTERM') =>
      new Promise((r) => {
        if (child.exitCode !== null) return r(child.exitCode);
        child.once('exit', (code) => r(code));
        child.kill(signal);
      }),
  };
}

/** Waits until the service answers 2xx at `url` (its /healthz, /readyz); its output when it exits first. */
export async function untilAnswering(s: RunningService, what: string, url: string, timeoutMs = 30_000): Promise<void> {
  await until(
    what,
    async () => {
      if (s.child.exitCode !== null) throw new Error(s.output());
      return (await fetch(url).then(
        (r) => r.ok,
        () => false,
      ))
        ? true
        : undefined;
    },
    timeoutMs,
  );
}

export interface HttpsResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One HTTPS request that verifies the server's certificate against `ca`. */
export function httpsRequest(
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: Buffer; ca: string },
): Promise<HttpsResult> {
  return new Promise((resolvePromise, reject) => {
    const req = request(
      url,
      { method: options.method ?? 'POST', headers: options.headers, ca: options.ca, servername: 'localhost' },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolvePromise({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

/** POSTs a report to a receiver on 127.0.0.1; status 0 for a network error, receiptId on 202. */
export function postReport(
  port: number,
  ca: string,
  body: Buffer,
  options: { agent?: Agent | false; headers?: Record<string, string>; timeoutMs?: number } = {},
): Promise<{ status: number; id?: string }> {
  return new Promise((resolve) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path: '/v1/tlsrpt',
        method: 'POST',
        ca,
        servername: 'localhost',
        agent: options.agent,
        headers: options.headers ?? { 'content-type': 'application/tlsrpt+gzip' },
      },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            id: res.statusCode === 202 ? (JSON.parse(text) as { receiptId: string }).receiptId : undefined,
          }),
        );
        res.on('error', () => resolve({ status: 0 }));
      },
    );
    if (options.timeoutMs) req.setTimeout(options.timeoutMs, () => req.destroy());
    req.on('error', () => resolve({ status: 0 }));
    req.end(body);
  });
}

/** The development certificate a receiver started with DATA_DIR `dir` makes, once it is there (PEM). */
export async function devCa(dir: string): Promise<string> {
  await waitUntil('certificate', () => readFile(devCertPaths(dir).cert).then(() => true), 30_000);
  return await readFile(devCertPaths(dir).cert, 'utf8');
}

/** A service's resident memory in MB. */
export async function rssMb(s: RunningService): Promise<number> {
  const status = await readFile(`/proc/${s.child.pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
}
