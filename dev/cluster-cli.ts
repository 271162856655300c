// npm run cluster -- up | down: a local ClickHouse cluster (ZooKeeper, 2 shards × 2 replicas of ClickHouse 18.16) and
// a Redis master with two replicas and three Sentinels (dev/sentinel.ts) under .data/cluster on fixed ports, with the
// migrations applied in their cluster form. `up` runs until Ctrl-C (data
// kept); `down` stops one running elsewhere (another terminal, or `npm run cluster -- up &`).
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { CLUSTER_NAME, startCluster } from './cluster.ts';
import { startSentinelSet } from './sentinel.ts';
import { loadConfig } from '../services/common/config.ts';
import { migrate } from '../services/common/migrations.ts';

const dir = resolve(import.meta.dirname, '../.data/cluster');
const pidFile = join(dir, 'up.pid');
/**
 * ZooKeeper 9400; node i: HTTP 9410 + i, native 9420 + i, interserver 9430 + i; Redis 9440–9442, Sentinels 9443–9445
 * (beside the local stack's ports).
 */
const BASE_PORT = 9400;
const log = (line: string): void => console.error(line);

async function up(): Promise<void> {
  await mkdir(dir, { recursive: true });
  const cluster = await startCluster({ dir, log, basePort: BASE_PORT });
  const ports = [0, 1, 2, 3, 4, 5].map((i) => BASE_PORT + 40 + i);
  const redis = await startSentinelSet({ dir: join(dir, 'redis'), log, ports });
  await writeFile(pidFile, String(process.pid));
  const first = cluster.nodes[0]!;
  const env = { CLICKHOUSE_URL: `http://127.0.0.1:${first.httpPort}`, CLICKHOUSE_CLUSTER: CLUSTER_NAME };
  const config = loadConfig({ ...process.env, ...env });
  for (const line of (await migrate(config)).applied) log(`applied ${line}`);
  log(
    [
      `cluster "${CLUSTER_NAME}" up: ${cluster.nodes.map((n) => `shard ${n.shard} replica ${n.replica} on :${n.httpPort}`).join(', ')}; ZooKeeper on :${cluster.zookeeperPort}`,
      `Redis master on :${redis.serverPorts[0]}, replicas on :${redis.serverPorts.slice(1).join(', :')}; Sentinels on :${redis.sentinelPorts.join(', :')}`,
      `point the services at it: CLICKHOUSE_URL=${env.CLICKHOUSE_URL} CLICKHOUSE_CLUSTER=${CLUSTER_NAME} CLICKHOUSE_DATABASE=${config.CLICKHOUSE_DATABASE} REDIS_SENTINELS=${redis.sentinels} REDIS_SENTINEL_MASTER=${redis.masterName} REDIS_ACK_REPLICAS=1`,
      'Ctrl-C stops it (data kept under .data/cluster).',
    ].join('\n'),
  );
  const stop = async (): Promise<void> => {
    await redis.stop();
    await cluster.stop();
    await rm(pidFile, { force: true });
    process.exit(0);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
}

async function down(): Promise<void> {
  const pid = Number(await readFile(pidFile, 'utf8').catch(() => '0'));
  if (!pid) return log('no cluster running (no .data/cluster/up.pid)');
  try {
    // `up` stops its servers and ZooKeeper, then exits.
    process.kill(pid, 'SIGTERM');
    log(`asked the cluster (process ${pid}) to stop`);
  } catch {
    log(`process ${pid} is gone; removing its pid file`);
    await rm(pidFile, { force: true });
  }
}

const command = process.argv[2];
if (command === 'up') await up();
else if (command === 'down') await down();
else {
  log('usage: npm run cluster -- up | down');
  process.exit(2);
}
