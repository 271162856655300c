// Starts Redis and ClickHouse as our own child processes under a data folder, on our own ports.
// Used by `npm start` (dev/up.ts) and by the test suite's global setup, with different folders and ports.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createServer, connect } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** The production configuration templates of Redis and ClickHouse, which the local stack runs too. */
const deployDir = join(root, 'deploy');

export { SERVICES, DIST_DIR, buildServices, serviceArgs, type ServiceName } from '../deploy/scripts/bundle.ts';

/**
 * A new folder for a test run's servers, on a short path whatever the checkout's: a UNIX socket's path may not exceed
 * 107 bytes (Dovecot's under run/ failed from a checkout at a 95-character path). The system's temporary folder when
 * its path is short, else /tmp; readable by the unprivileged users Dovecot's login processes run as.
 */
export async function shortStateDir(prefix: string): Promise<string> {
  const base = tmpdir().length <= 20 ? tmpdir() : '/tmp';
  const dir = await mkdtemp(join(base, prefix));
  await chmod(dir, 0o755);
  return dir;
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

/** Where a server that failed to start leaves a copy of its log: in the checkout, kept after its state is removed. */
export const FAILED_STARTS_DIR = join(root, '.data/failed-starts');

/** A server that did not become ready; `exited` when it ended first (a port taken since it was chosen, say). */
export class StartFailed extends Error {
  constructor(
    message: string,
    readonly exited: boolean,
  ) {
    super(message);
  }
}

/** Copies a failed server's log into FAILED_STARTS_DIR; says where, with its last lines. */
async function keptLog(what: string, logFile: string | undefined): Promise<string> {
  if (!logFile) return '';
  const text = await readFile(logFile, 'utf8').catch(() => '');
  await mkdir(FAILED_STARTS_DIR, { recursive: true });
  const kept = join(FAILED_STARTS_DIR, `${what}-${new Date().toISOString().replace(/[:.]/g, '-')}.log`);
  await writeFile(kept, text);
  const tail = text.trimEnd().split('\n').slice(-8).join('\n');
  return `; its log is kept in ${kept}${tail ? `, ending:\n${tail}` : ''}`;
}

export async function waitUntil(
  what: string,
  probe: () => Promise<boolean>,
  timeoutMs: number,
  child?: ChildProcess,
  logFile?: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child && child.exitCode !== null) {
      const where = await keptLog(what, logFile);
      throw new StartFailed(`${what} exited with code ${child.exitCode} before it was ready${where}`, true);
    }
    if (await probe().catch(() => false)) return;
    await sleep(100);
  }
  const where = await keptLog(what, logFile);
  throw new StartFailed(`${what} did not become ready within ${timeoutMs} ms${where}`, false);
}

/**
 * Starts a server on free ports, again on others when it exits before it is ready: a port chosen free may be taken
 * by another process before the server binds it (tests start servers side by side).
 */
export async function startOnFreePorts<T>(
  count: number,
  start: (ports: number[]) => Promise<T>,
  log: StackLog,
  attempts = 3,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const ports: number[] = [];
    for (let i = 0; i < count; i++) ports.push(await freePort());
    try {
      return await start(ports);
    } catch (err) {
      if (!(err instanceof StartFailed && err.exited) || attempt >= attempts) throw err;
      log(`${err.message.split('\n')[0]}; starting it again on other ports`);
    }
  }
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

/** Passes a child's output to `log` line by line, and all of it into `file` when given (for keptLog). */
export function pipeLogs(name: string, child: ChildProcess, log: StackLog, file?: string): void {
  const copy = file ? createWriteStream(file, { flags: 'a' }) : undefined;
  copy?.on('error', () => {});
  const forward = (chunk: Buffer): void => {
    copy?.write(chunk);
    for (const line of chunk.toString().split('\n')) if (line.trim()) log(`[${name}] ${line}`);
  };
  child.stdout?.on('data', forward);
  child.stderr?.on('data', forward);
  child.once('exit', () => copy?.end());
}

export interface RedisOptions {
  dir: string;
  port: number;
  log: StackLog;
  /** A replica of the Redis on this port (the benchmark's cost of REDIS_ACK_REPLICAS). */
  replicaOf?: number;
}

export async function startRedis(opts: RedisOptions): Promise<ManagedProcess> {
  if (await redisPing(opts.port)) {
    opts.log(`redis already answers on port ${opts.port}; using it`);
    return { name: 'redis', child: undefined, stop: async () => {} };
  }
  await mkdir(opts.dir, { recursive: true });
  const child = spawn(
    'redis-server',
    [
      join(deployDir, 'redis/redis.conf'),
      '--port',
      String(opts.port),
      '--dir',
      opts.dir,
      ...(opts.replicaOf ? ['--replicaof', '127.0.0.1', String(opts.replicaOf)] : []),
    ],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const logFile = join(opts.dir, 'redis.log');
  pipeLogs(
    'redis',
    child,
    (l) => {
      // Redis is chatty at start-up; pass on warnings only.
      if (/#|WARNING|error/i.test(l)) opts.log(l);
    },
    logFile,
  );
  await waitUntil('redis', () => redisPing(opts.port), 30_000, child, logFile);
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
  await waitUntil(
    'clickhouse',
    () => clickhousePing(opts.httpPort),
    60_000,
    child,
    join(dir, 'log/clickhouse-server.err.log'),
  );
  return { name: 'clickhouse', child, stop: stopper('clickhouse', child, opts.log) };
}
