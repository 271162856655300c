// A local ClickHouse cluster: Debian's ZooKeeper and 2 shards × 2 replicas of ClickHouse 18.16, each its own process
// with its own ports and data folder. Used by `npm run cluster` and the cluster test; production runs its own.
import { spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import {
  freePort,
  pipeLogs,
  startOnFreePorts,
  startClickHouse,
  tcpProbe,
  waitUntil,
  type ClickHouseOptions,
  type ManagedProcess,
  type StackLog,
} from './stack.ts';

export const CLUSTER_NAME = 'tlsrpt';

export interface ClusterNode {
  shard: number;
  replica: number;
  httpPort: number;
  tcpPort: number;
  process: ManagedProcess;
  /** Stops this node's server (its data stays). */
  stop(): Promise<void>;
  /** Starts it again on the same ports and data. */
  start(): Promise<void>;
}

export interface LocalCluster {
  zookeeperPort: number;
  nodes: ClusterNode[];
  stop(): Promise<void>;
}

/** ZooKeeper answers "imok" to "ruok", then closes. */
const zookeeperOk = (port: number): Promise<boolean> => tcpProbe(port, 'ruok', (a) => a === 'imok', true);

export async function startZooKeeper(
  dir: string,
  port: number,
  log: StackLog,
): Promise<ManagedProcess & { port: number }> {
  const data = resolve(dir, 'data');
  await mkdir(data, { recursive: true });
  const config = join(resolve(dir), 'zoo.cfg');
  await writeFile(
    config,
    [
      'tickTime=500',
      'initLimit=10',
      'syncLimit=5',
      `dataDir=${data}`,
      `clientPort=${port}`,
      'clientPortAddress=127.0.0.1',
      'admin.enableServer=false',
      '4lw.commands.whitelist=ruok',
      // One server, our own: no snapshots of its log kept past a few.
      'autopurge.purgeInterval=1',
      '',
    ].join('\n'),
  );
  const child = spawn('/usr/share/zookeeper/bin/zkServer.sh', ['start-foreground', config], {
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: resolve(dir),
    env: { ...process.env, ZOO_LOG_DIR: resolve(dir), JVMFLAGS: '-Xmx256m' },
  });
  // All its output in a file: a start that fails points there (keptLog); errors also to `log`.
  const logFile = join(resolve(dir), 'zookeeper.log');
  pipeLogs('zookeeper', child, (l) => (/ERROR|Exception/.test(l) ? log(l) : undefined), logFile);
  await waitUntil('zookeeper', () => zookeeperOk(port), 60_000, child, logFile);
  return {
    name: 'zookeeper',
    port,
    child,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** The config.d of one node: the cluster's shards and replicas, ZooKeeper, and this node's macros. */
function nodeConfig(
  all: Array<{ shard: number; replica: number; tcpPort: number }>,
  me: { shard: number; replica: number; interserverPort: number },
  zookeeperPort: number,
): string {
  const shards = [...new Set(all.map((n) => n.shard))].map(
    (s) =>
      `<shard><internal_replication>true</internal_replication>${all
        .filter((n) => n.shard === s)
        .map((n) => `<replica><host>127.0.0.1</host><port>${n.tcpPort}</port></replica>`)
        .join('')}</shard>`,
  );
  // CLUSTER_LOG_LEVEL=debug logs every query with its id (how the cluster test's crash of 18.16 was found).
  return `<?xml version="1.0"?>
<yandex>
    <logger><level>${process.env.CLUSTER_LOG_LEVEL ?? 'warning'}</level></logger>
    <remote_servers><${CLUSTER_NAME}>${shards.join('')}</${CLUSTER_NAME}></remote_servers>
    <zookeeper><node><host>127.0.0.1</host><port>${zookeeperPort}</port></node><session_timeout_ms>10000</session_timeout_ms></zookeeper>
    <macros><shard>${me.shard}</shard><replica>s${me.shard}r${me.replica}</replica></macros>
    <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>
    <interserver_http_host>127.0.0.1</interserver_http_host>
    <interserver_http_port>${me.interserverPort}</interserver_http_port>
</yandex>
`;
}

/**
 * Starts ZooKeeper and `shards` × `replicas` ClickHouse servers under `dir` on free ports. Every node's profiles run
 * IN/JOIN subqueries of Distributed tables on the node's own shard (distributed_product_mode = local): rows of one
 * report live on one shard, so the subquery that finds a report's newest version needs only that shard.
 */
export async function startCluster(opts: {
  dir: string;
  shards?: number;
  replicas?: number;
  log: StackLog;
  /** Fixed ports from here (ZooKeeper; +10+i HTTP, +20+i TCP, +30+i interserver of node i); free ports otherwise. */
  basePort?: number;
}): Promise<LocalCluster> {
  const shards = opts.shards ?? 2;
  const replicas = opts.replicas ?? 2;
  const base = opts.basePort;
  const port = async (offset: number): Promise<number> => (base ? base + offset : await freePort());
  // On free ports, ZooKeeper starts again on another when its port was taken before it bound it.
  const zookeeper = base
    ? await startZooKeeper(join(opts.dir, 'zookeeper'), base, opts.log)
    : await startOnFreePorts(1, ([p]) => startZooKeeper(join(opts.dir, 'zookeeper'), p!, opts.log), opts.log);
  const zookeeperPort = zookeeper.port;
  const layout: Array<{ shard: number; replica: number; httpPort: number; tcpPort: number; interserverPort: number }> =
    [];
  for (let s = 1; s <= shards; s++)
    for (let r = 1; r <= replicas; r++) {
      const i = layout.length + 1;
      layout.push({
        shard: s,
        replica: r,
        httpPort: await port(10 + i),
        tcpPort: await port(20 + i),
        interserverPort: await port(30 + i),
      });
    }
  const nodes: ClusterNode[] = [];
  try {
    // One at a time: on two cores, four servers starting at once time out their ZooKeeper sessions.
    for (const n of layout) {
      const options: ClickHouseOptions = {
        dir: join(opts.dir, `s${n.shard}r${n.replica}`),
        httpPort: n.httpPort,
        tcpPort: n.tcpPort,
        log: opts.log,
        extraConfig: nodeConfig(layout, n, zookeeperPort),
        profileSettings: { distributed_product_mode: 'local' },
      };
      const node: ClusterNode = {
        shard: n.shard,
        replica: n.replica,
        httpPort: n.httpPort,
        tcpPort: n.tcpPort,
        process: await startClickHouse(options),
        stop: async () => await node.process.stop(),
        start: async () => {
          node.process = await startClickHouse(options);
        },
      };
      nodes.push(node);
    }
  } catch (err) {
    for (const n of nodes) await n.stop();
    await zookeeper.stop();
    throw err;
  }
  return {
    zookeeperPort,
    nodes,
    stop: async () => {
      await Promise.all(nodes.map((n) => n.stop()));
      await zookeeper.stop();
    },
  };
}
