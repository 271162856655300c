// npm run cluster -- up | down: a local ClickHouse cluster (ZooKeeper, 2 shards × 2 replicas of ClickHouse 18.16) under
// .data/cluster on fixed ports, with the migrations applied in their cluster form. `up` runs until Ctrl-C (data
// kept); `down` stops one running elsewhere (another terminal, or `npm run cluster -- up &`).
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { CLUSTER_NAME, startCluster } from './cluster.ts';
import { loadConfig } from '../services/common/config.ts';
import { migrate } from '../services/common/migrations.ts';

const dir = resolve(import.meta.dirname, '../.data/cluster');
const pidFile = join(dir, 'up.pid');
/** ZooKeeper 9400; node i: HTTP 9410 + i, native 9420 + i, interserver 9430 + i (beside the local stack's ports). */
const BASE_PORT = 9400;
const log = (line: string): void => console.error(line);

async function up(): Promise<void> {
  await mkdir(dir, { recursive: true });
  const cluster = await startCluster({ dir, log, basePort: BASE_PORT });
  await writeFile(pidFile, String(process.pid));
  const first = cluster.nodes[0]!;
  const env = { CLICKHOUSE_URL: `http://127.0.0.1:${first.httpPort}`, CLICKHOUSE_CLUSTER: CLUSTER_NAME };
  const config = loadConfig({ ...process.env, ...env });
  for (const line of (await migrate(config)).applied) log(`applied ${line}`);
  log(
    [
      `cluster "${CLUSTER_NAME}" up: ${cluster.nodes.map((n) => `shard ${n.shard} replica ${n.replica} on :${n.httpPort}`).join(', ')}; ZooKeeper on :${cluster.zookeeperPort}`,
      `point the services at it: CLICKHOUSE_URL=${env.CLICKHOUSE_URL} CLICKHOUSE_CLUSTER=${CLUSTER_NAME} CLICKHOUSE_DATABASE=${config.CLICKHOUSE_DATABASE}`,
      'Ctrl-C stops it (data kept under .data/cluster).',
    ].join('\n'),
  );
  const stop = async (): Promise<void> => {
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
