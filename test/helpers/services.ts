// Runs the real service entry points (services/*/main.ts) as child processes against the suite's stores.
import { spawn, type ChildProcess } from 'node:child_process';
import { request } from 'node:https';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Config } from '../../services/common/config.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export interface RunningService {
  child: ChildProcess;
  output: () => string;
  stop: (signal?: NodeJS.Signals) => Promise<number | null>;
}

export function configEnv(config: Config, overrides: Record<string, string | number> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...config, ...overrides })) env[k] = String(v);
  return env;
}

export function startService(
  name: 'worker' | 'http-receiver' | 'smtp-receiver' | 'api',
  env: Record<string, string>,
): RunningService {
  const child = spawn(process.execPath, ['--import', 'tsx', resolve(root, 'services', name, 'main.ts')], {
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
