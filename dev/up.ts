// npm start: the whole pipeline in the foreground. Starts Redis and ClickHouse under DATA_DIR on their own ports
// (or reuses ones already answering there), applies migrations, then runs every service. Ctrl-C stops what it
// started and keeps the data; running it again picks up where it left off.
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../services/common/config.ts';
import { migrate } from '../services/common/migrations.ts';
import { loadTlsCredentials } from '../services/common/tls.ts';
import {
  acceptsConnections,
  buildServices,
  DIST_DIR,
  SERVICES,
  serviceArgs,
  startClickHouse,
  startRedis,
  waitUntil,
  type ManagedProcess,
  type ServiceName,
} from './stack.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const config = loadConfig();
const dataDir = resolve(root, config.DATA_DIR);
const log = (line: string): void => console.log(`[stack] ${line}`);
// `--dist-dir DIR`: build and run the services there (the tests, beside a running stack's dist/).
const distArg = process.argv.indexOf('--dist-dir');
const distDir = distArg >= 0 ? resolve(process.argv[distArg + 1] ?? '') : DIST_DIR;

const redisUrl = new URL(config.REDIS_URL);
const chUrl = new URL(config.CLICKHOUSE_URL);
const local = (host: string): boolean => ['127.0.0.1', 'localhost', '[::1]'].includes(host);
const managed: ManagedProcess[] = [];
const services = new Map<ServiceName, ChildProcess>();
let stopping = false;

async function stopAll(code: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  log('stopping');
  // Services first (they finish what is in flight), then the stores.
  await Promise.all(
    [...services.values()].map(
      (child) =>
        new Promise<void>((r) => {
          if (child.exitCode !== null || child.signalCode !== null) return r();
          child.once('exit', () => r());
          child.kill('SIGTERM');
        }),
    ),
  );
  for (const m of managed.reverse()) await m.stop();
  log('stopped; data kept in ' + dataDir);
  process.exit(code);
}
/**
 * Runs a service and starts it again when it exits on its own: 1 s, doubling to 30 s between tries, back to 1 s
 * once it has run for a minute. One service's crash leaves the others serving.
 */
function supervise(name: ServiceName, delayMs = 1_000): void {
  const started = Date.now();
  const child = spawn(process.execPath, serviceArgs(name, [], distDir), {
    cwd: root,
    env: { ...process.env, DATA_DIR: dataDir },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  services.set(name, child);
  child.on('exit', (code, signal) => {
    if (stopping) return;
    const next = Date.now() - started > 60_000 ? 1_000 : Math.min(delayMs * 2, 30_000);
    const wait = Date.now() - started > 60_000 ? 1_000 : delayMs;
    log(`${name} exited unexpectedly (${signal ?? `code ${code}`}); restarting it in ${wait / 1000} s`);
    setTimeout(() => {
      if (!stopping) supervise(name, next);
    }, wait);
  });
}

process.on('SIGINT', () => void stopAll(0));
process.on('SIGTERM', () => void stopAll(0));

try {
  if (local(redisUrl.hostname)) {
    managed.push(await startRedis({ dir: join(dataDir, 'redis'), port: Number(redisUrl.port || 6379), log }));
  }
  if (local(chUrl.hostname)) {
    const httpPort = Number(chUrl.port || 8123);
    managed.push(
      await startClickHouse({ dir: join(dataDir, 'clickhouse'), httpPort, tcpPort: config.CLICKHOUSE_TCP_PORT, log }),
    );
  }
  const result = await migrate(config, log);
  log(`migrations: ${result.applied.length} applied, ${result.skipped.length} already there`);
  // Made once here so the receivers never race to generate two different development certificates.
  if (!config.HTTP_PLAINTEXT) await loadTlsCredentials({ ...config, DATA_DIR: dataDir });

  await buildServices(distDir);
  // The mailbox fetcher only when there is a mailbox to read.
  const mailboxes = config.IMAP_MAILBOXES.trim() !== '' || config.IMAP_MAILBOXES_FILE !== '';
  const running = SERVICES.filter((name) => name !== 'mailbox-fetcher' || mailboxes);
  for (const name of running) supervise(name);
  // "up" once every service listens, so a report sent right after it is taken.
  const listens: Record<ServiceName, [string, number]> = {
    worker: ['0.0.0.0', config.WORKER_METRICS_PORT],
    'http-receiver': [config.HTTP_HOST, config.HTTP_PORT],
    'smtp-receiver': [config.SMTP_HOST, config.SMTP_PORT],
    api: [config.API_HOST, config.API_PORT],
    scheduler: [config.SCHEDULER_METRICS_HOST, config.SCHEDULER_METRICS_PORT],
    'mailbox-fetcher': ['0.0.0.0', config.MAILBOX_METRICS_PORT],
    'mta-sts': [config.MTA_STS_HOST, config.MTA_STS_PORT],
  };
  await Promise.all(
    running
      .filter((name) => listens[name][1] !== 0)
      .map((name) =>
        waitUntil(name, () => acceptsConnections(listens[name][1], listens[name][0]), 120_000, services.get(name)),
      ),
  );
  const scheme = config.HTTP_PLAINTEXT ? 'http' : 'https';
  log(
    `up: POST reports to ${scheme}://localhost:${config.HTTP_PORT}${config.HTTP_PATH}; mail them to ` +
      `${config.SMTP_RECIPIENTS.join(', ')} on port ${config.SMTP_PORT}; query API http://localhost:${config.API_PORT}; ` +
      `dashboard http://localhost:${config.API_PORT}/ui/ (sign in with an API token${config.API_TOKENS.trim() === '' ? ': dev-token' : ''}); ` +
      `MTA-STS policy host https://mta-sts.<hosted domain>:${config.MTA_STS_PORT}/.well-known/mta-sts.txt; ` +
      `ClickHouse ${config.CLICKHOUSE_URL} database ${config.CLICKHOUSE_DATABASE}; Ctrl-C stops`,
  );
} catch (err) {
  log(`failed: ${err instanceof Error ? err.message : String(err)}`);
  await stopAll(1);
}
