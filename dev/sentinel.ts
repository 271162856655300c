// A Redis master with two replicas and three Sentinels, each its own process and port (Debian's redis-server and
// redis-sentinel), for the failover test and `npm run cluster`. The servers run the production redis.conf (AOF,
// appendfsync always) with min-replicas-to-write 1: a master that lost every replica refuses writes rather than
// accept what a failover would lose.
import { spawn } from 'node:child_process';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { freePort, pipeLogs, redisPing, stopper, waitUntil, type ManagedProcess, type StackLog } from './stack.ts';

const redisConf = join(resolve(dirname(fileURLToPath(import.meta.url)), '..'), 'deploy/redis/redis.conf');

export interface SentinelSet {
  masterName: string;
  /** The data servers' ports; the first was the master at start. */
  serverPorts: number[];
  sentinelPorts: number[];
  /** REDIS_SENTINELS for the services. */
  sentinels: string;
  /** The master's port as the Sentinels name it now. */
  masterPort(): Promise<number>;
  /** kill -9 of one data server (the master, for a failover). */
  kill(port: number): void;
  /** Starts a killed server again, with its data: the Sentinels make it a replica of the master they chose. */
  restart(port: number): Promise<void>;
  stop(): Promise<void>;
}

export interface SentinelSetOptions {
  dir: string;
  log: StackLog;
  masterName?: string;
  /** Ports for the three servers and three Sentinels; free ones by default. */
  ports?: number[];
  /** How long a master may not answer before the Sentinels call it down. */
  downAfterMs?: number;
  /** Passwords: the data servers' (requirepass, masterauth) and the Sentinels' own. */
  auth?: { password: string; sentinelPassword: string };
  /** TLS everywhere (clients, replication, Sentinels): PEM files; the certificate must name 127.0.0.1. */
  tls?: { cert: string; key: string; ca: string };
}

export async function startSentinelSet(o: SentinelSetOptions): Promise<SentinelSet> {
  const masterName = o.masterName ?? 'tlsrpt';
  const ports = o.ports ?? [];
  for (let i = ports.length; i < 6; i++) ports.push(await freePort());
  const [serverPorts, sentinelPorts] = [ports.slice(0, 3), ports.slice(3, 6)];
  const [masterPort] = serverPorts as [number];
  const processes = new Map<number, ManagedProcess>();

  const tlsCa = o.tls ? await readFile(o.tls.ca, 'utf8') : undefined;
  /** How a server or Sentinel listens: its port, or only TLS on it (replication and Sentinel links too). */
  const listen = (port: number): string[] =>
    o.tls
      ? ['--port', '0', '--tls-port', String(port), '--tls-cert-file', o.tls.cert, '--tls-key-file', o.tls.key].concat([
          '--tls-ca-cert-file',
          o.tls.ca,
          '--tls-auth-clients',
          'no',
          '--tls-replication',
          'yes',
        ])
      : ['--port', String(port)];
  const clientOptions = (port: number, password: string | undefined) => ({
    port,
    host: '127.0.0.1',
    ...(password ? { password } : {}),
    ...(tlsCa ? { tls: { ca: tlsCa } } : {}),
  });
  /** PING as a client does: over TLS and signed in, where the set asks for that. */
  const ping = async (port: number, password: string | undefined): Promise<boolean> => {
    if (!o.tls && !password) return redisPing(port);
    const client = new Redis({ ...clientOptions(port, password), lazyConnect: true, maxRetriesPerRequest: 0 });
    client.on('error', () => {});
    try {
      await client.connect();
      return (await client.ping()) === 'PONG';
    } catch {
      return false;
    } finally {
      client.disconnect();
    }
  };
  const startServer = async (port: number, replicaOf?: number): Promise<void> => {
    const dir = join(o.dir, `redis-${port}`);
    await mkdir(dir, { recursive: true });
    // A copy of its own: Sentinel's REPLICAOF ends in CONFIG REWRITE of the file a server was started with.
    const conf = join(dir, 'redis.conf');
    if (!(await readFile(conf).catch(() => undefined))) await copyFile(redisConf, conf);
    const args = [conf, ...listen(port), '--dir', dir, '--min-replicas-to-write', '1'];
    args.push('--min-replicas-max-lag', '10');
    if (o.auth) args.push('--requirepass', o.auth.password, '--masterauth', o.auth.password);
    if (replicaOf) args.push('--replicaof', '127.0.0.1', String(replicaOf));
    processes.set(port, launch(`redis-${port}`, 'redis-server', args, port, dir, o.log));
    await waitUntil(`redis-${port}`, () => ping(port, o.auth?.password), 30_000, processes.get(port)!.child);
  };
  const startSentinel = async (port: number): Promise<void> => {
    const dir = join(o.dir, `sentinel-${port}`);
    await mkdir(dir, { recursive: true });
    // Sentinel rewrites its file as it learns the set: one file each, in its own folder.
    const conf = join(dir, 'sentinel.conf');
    const lines = [...listen(port)].reduce<string[]>(
      (out, v, i, all) => (i % 2 === 0 ? [...out, `${v.slice(2)} ${all[i + 1]}`] : out),
      [],
    );
    await writeFile(
      conf,
      [
        ...lines,
        'bind 127.0.0.1',
        'daemonize no',
        `dir ${dir}`,
        ...(o.auth ? [`requirepass ${o.auth.sentinelPassword}`] : []),
        `sentinel monitor ${masterName} 127.0.0.1 ${masterPort} 2`,
        ...(o.auth
          ? [`sentinel auth-pass ${masterName} ${o.auth.password}`, `sentinel sentinel-pass ${o.auth.sentinelPassword}`]
          : []),
        `sentinel down-after-milliseconds ${masterName} ${o.downAfterMs ?? 1000}`,
        `sentinel failover-timeout ${masterName} 10000`,
        `sentinel parallel-syncs ${masterName} 1`,
        '',
      ].join('\n'),
    );
    processes.set(port, launch(`sentinel-${port}`, 'redis-sentinel', [conf], port, dir, o.log));
    await waitUntil(`sentinel-${port}`, () => ping(port, o.auth?.sentinelPassword), 30_000, processes.get(port)!.child);
  };

  await startServer(masterPort);
  for (const port of serverPorts.slice(1)) await startServer(port, masterPort);
  for (const port of sentinelPorts) await startSentinel(port);

  const ask = async <T>(port: number, ...args: string[]): Promise<T> => {
    const client = new Redis({
      ...clientOptions(port, o.auth?.sentinelPassword),
      lazyConnect: true,
      maxRetriesPerRequest: 0,
    });
    try {
      await client.connect();
      return (await client.call('SENTINEL', ...args)) as T;
    } finally {
      client.disconnect();
    }
  };
  // Ready when every Sentinel knows both replicas and the two other Sentinels: only then can they fail over.
  await waitUntil(
    'sentinels',
    async () => {
      for (const port of sentinelPorts) {
        const replicas = await ask<unknown[]>(port, 'replicas', masterName);
        const others = await ask<unknown[]>(port, 'sentinels', masterName);
        if (replicas.length < 2 || others.length < 2) return false;
      }
      return true;
    },
    60_000,
  );

  return {
    masterName,
    serverPorts,
    sentinelPorts,
    sentinels: sentinelPorts.map((p) => `127.0.0.1:${p}`).join(','),
    masterPort: async () => Number((await ask<string[]>(sentinelPorts[0]!, 'get-master-addr-by-name', masterName))[1]),
    kill: (port) => void processes.get(port)?.child?.kill('SIGKILL'),
    restart: async (port) => {
      const child = processes.get(port)?.child;
      if (child && child.exitCode === null && child.signalCode === null) throw new Error(`redis on ${port} runs`);
      // With its old arguments: the first server comes back as a master and is turned into a replica.
      await startServer(port, port === masterPort ? undefined : masterPort);
    },
    stop: async () => {
      for (const p of [...sentinelPorts, ...serverPorts]) await processes.get(p)?.stop();
    },
  };
}

function launch(name: string, command: string, args: string[], port: number, dir: string, log: StackLog) {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  pipeLogs(
    name,
    child,
    (l) => (/# |WARNING|error|failover|\+switch-master|\+sdown|\+odown/i.test(l) ? log(l) : undefined),
    join(dir, `${name}.log`),
  );
  return { name: `${name} (${port})`, child, stop: stopper(name, child, log) } satisfies ManagedProcess;
}
