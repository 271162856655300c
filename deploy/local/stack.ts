// Starts Redis and ClickHouse as our own child processes under a data folder, on our own ports.
// Used by `npm start` (deploy/local/up.ts) and by the test suite's global setup, with different folders and ports.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, connect } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const deployDir = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const root = resolve(deployDir, '..');

export const SERVICES = ['worker', 'http-receiver', 'smtp-receiver', 'api', 'mailbox-fetcher', 'mta-sts'] as const;
export type ServiceName = (typeof SERVICES)[number];

/** Where `npm run build` and `npm start` put the built services (gitignored). */
export const DIST_DIR = join(root, 'dist');

/**
 * Builds each service (services/<name>/main.ts and what it imports from this repository) into one file,
 * `<outDir>/<name>/main.mjs`, with a source map; npm packages stay imports, resolved from this repository's
 * node_modules, so `outDir` must be inside it. Services run this JavaScript rather than TypeScript through tsx: tsx's
 * loader thread was ~30 MB of every process, and its keep-names helper a cost on every named closure.
 */
export async function buildServices(outDir: string = DIST_DIR): Promise<void> {
  const { build } = await import('esbuild');
  await build({
    entryPoints: SERVICES.map((name) => ({ in: join(root, 'services', name, 'main.ts'), out: join(name, 'main') })),
    outdir: outDir,
    outExtension: { '.js': '.mjs' },
    bundle: true,
    packages: 'external',
    platform: 'node',
    format: 'esm',
    target: 'node20',
    sourcemap: true,
    logLevel: 'warning',
  });
}

/**
 * The node arguments that run a built service (see buildServices), for every script that starts one (npm start, the
 * tests, the benchmark). The worker runs with --expose-gc to collect after large reports (WORKER_GC_AFTER_BYTES);
 * package.json's `npm run worker` says the same.
 */
export function serviceArgs(name: ServiceName, nodeFlags: string[] = [], outDir: string = DIST_DIR): string[] {
  const flags = name === 'worker' ? ['--expose-gc', ...nodeFlags] : nodeFlags;
  return [...flags, '--enable-source-maps', join(outDir, name, 'main.mjs')];
}

export interface ManagedProcess {
  name: string;
  /** Undefined when an already running instance on the same port was reused. */
  child: ChildProcess | undefined;
  stop(): Promise<void>;
}

export type StackLog = (line: string) => void;

export async function freePort(): Promise<number> {
  return await new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address();
      if (address === null || typeof address === 'string') return reject(new Error('no port'));
      srv.close(() => resolvePort(address.port));
    });
  });
}

async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

export async function waitUntil(
  what: string,
  probe: () => Promise<boolean>,
  timeoutMs: number,
  child?: ChildProcess,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child && child.exitCode !== null)
      throw new Error(`${what} exited with code ${child.exitCode} before it was ready`);
    if (await probe().catch(() => false)) return;
    await sleep(100);
  }
  throw new Error(`${what} did not become ready within ${timeoutMs} ms`);
}

/** Whether something accepts TCP connections on the port (a host of 0.0.0.0 or :: is tried as 127.0.0.1). */
export async function acceptsConnections(port: number, host = '127.0.0.1'): Promise<boolean> {
  return await new Promise((resolveOpen) => {
    const socket = connect({ host: host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host, port });
    const done = (ok: boolean): void => {
      socket.destroy();
      resolveOpen(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.on('error', () => done(false));
    socket.on('connect', () => done(true));
  });
}

/**
 * Sends `request` over TCP and reports whether the answer (all of it, once the server closes, or the first chunk)
 * passes `ok`; false on any error or after a second.
 */
export async function tcpProbe(
  port: number,
  request: string,
  ok: (answer: string) => boolean,
  untilClosed = false,
): Promise<boolean> {
  return await new Promise((resolveProbe) => {
    const socket = connect({ host: '127.0.0.1', port });
    let answer = '';
    const done = (result: boolean): void => {
      socket.destroy();
      resolveProbe(result);
    };
    socket.setTimeout(1000, () => done(false));
    socket.on('error', () => done(false));
    socket.on('connect', () => socket.write(request));
    socket.on('data', (d) => {
      answer += d.toString();
      if (!untilClosed) done(ok(answer));
    });
    socket.on('close', () => done(ok(answer)));
  });
}

/** Sends one inline command to Redis and reports whether it answered +PONG. */
export const redisPing = (port: number): Promise<boolean> => tcpProbe(port, 'PING\r\n', (a) => a.startsWith('+PONG'));

export async function clickhousePing(httpPort: number): Promise<boolean> {
  const res = await fetch(`http://127.0.0.1:${httpPort}/ping`, { signal: AbortSignal.timeout(1000) });
  return res.ok && (await res.text()).startsWith('Ok');
}

export function stopper(name: string, child: ChildProcess, log: StackLog): () => Promise<void> {
  return async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => {
      log(`${name} did not stop in 20 s; killing it`);
      child.kill('SIGKILL');
    }, 20_000);
    await exited;
    clearTimeout(timer);
  };
}

export function pipeLogs(name: string, child: ChildProcess, log: StackLog): void {
  const forward = (chunk: Buffer): void => {
    for (const line of chunk.toString().split('\n')) if (line.trim()) log(`[${name}] ${line}`);
  };
  child.stdout?.on('data', forward);
  child.stderr?.on('data', forward);
}

export interface RedisOptions {
  dir: string;
  port: number;
  log: StackLog;
}

export async function startRedis(opts: RedisOptions): Promise<ManagedProcess> {
  if (await redisPing(opts.port)) {
    opts.log(`redis already answers on port ${opts.port}; using it`);
    return { name: 'redis', child: undefined, stop: async () => {} };
  }
  await mkdir(opts.dir, { recursive: true });
  const child = spawn(
    'redis-server',
    [join(deployDir, 'redis/redis.conf'), '--port', String(opts.port), '--dir', opts.dir],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  pipeLogs('redis', child, (l) => {
    // Redis is chatty at start-up; pass on warnings only.
    if (/#|WARNING|error/i.test(l)) opts.log(l);
  });
  await waitUntil('redis', () => redisPing(opts.port), 30_000, child);
  return { name: 'redis', child, stop: stopper('redis', child, opts.log) };
}

export interface ClickHouseOptions {
  dir: string;
  httpPort: number;
  tcpPort: number;
  log: StackLog;
  /** jemalloc options; the default below unless MALLOC_CONF is set. The benchmark compares the two. */
  mallocConf?: string;
  /** More server configuration (a cluster node's: remote_servers, zookeeper, macros), written to config.d. */
  extraConfig?: string;
  /** Settings added to every user profile (a cluster node's distributed_product_mode). */
  profileSettings?: Record<string, string>;
}

/**
 * Debian's 18.16 runs on the system jemalloc, which hands freed pages back within seconds: a quarter to a third of
 * its insert CPU went to faulting them in again (perf). Keeping them (lazily freed pages stay reclaimable by the
 * kernel) costs a few hundred MB more resident memory; `npm run bench` measures the CPU saved ("Storage floor").
 */
export const CLICKHOUSE_MALLOC_CONF = 'dirty_decay_ms:60000,muzzy_decay_ms:-1';

export async function startClickHouse(opts: ClickHouseOptions): Promise<ManagedProcess> {
  if (await clickhousePing(opts.httpPort).catch(() => false)) {
    opts.log(`clickhouse already answers on port ${opts.httpPort}; using it`);
    return { name: 'clickhouse', child: undefined, stop: async () => {} };
  }
  const dir = resolve(opts.dir);
  for (const sub of ['etc', 'log', 'data', 'tmp', 'user_files', 'format_schemas'])
    await mkdir(join(dir, sub), { recursive: true });
  const template = await readFile(join(deployDir, 'clickhouse/config.xml'), 'utf8');
  const config = template
    .replaceAll('{{DIR}}', dir)
    .replaceAll('{{HTTP_PORT}}', String(opts.httpPort))
    .replaceAll('{{TCP_PORT}}', String(opts.tcpPort));
  await writeFile(join(dir, 'etc/config.xml'), config);
  if (opts.extraConfig) {
    await mkdir(join(dir, 'etc/config.d'), { recursive: true });
    await writeFile(join(dir, 'etc/config.d/extra.xml'), opts.extraConfig);
  }
  const settings = Object.entries(opts.profileSettings ?? {})
    .map(([k, v]) => `<${k}>${v}</${k}>`)
    .join('');
  const users = (await readFile(join(deployDir, 'clickhouse/users.xml'), 'utf8')).replaceAll(
    '{{PROFILE_SETTINGS}}',
    settings,
  );
  await writeFile(join(dir, 'etc/users.xml'), users);
  const child = spawn('clickhouse-server', [`--config-file=${join(dir, 'etc/config.xml')}`], {
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: dir,
    env: { ...process.env, MALLOC_CONF: opts.mallocConf ?? process.env.MALLOC_CONF ?? CLICKHOUSE_MALLOC_CONF },
  });
  pipeLogs('clickhouse', child, opts.log);
  await waitUntil('clickhouse', () => clickhousePing(opts.httpPort), 60_000, child);
  return { name: 'clickhouse', child, stop: stopper('clickhouse', child, opts.log) };
}
