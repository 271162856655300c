// Starts the suite's own Redis and ClickHouse on free ports under .data/test-<pid>, and removes them after.
import { rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { TestProject } from 'vitest/node';
import { buildServices, freePort, startClickHouse, startRedis, type ManagedProcess } from '../../deploy/local/stack.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
    clickhouseUrl: string;
    dataDir: string;
    distDir: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const dataDir = resolve(`.data/test-${process.pid}`);
  const log = (line: string): void => {
    if (/error|exited/i.test(line) && !line.includes('Logging errors to')) console.error(line);
  };
  const started: ManagedProcess[] = [];
  const redisPort = await freePort();
  started.push(await startRedis({ dir: `${dataDir}/redis`, port: redisPort, log }));
  const [httpPort, tcpPort] = [await freePort(), await freePort()];
  started.push(await startClickHouse({ dir: `${dataDir}/clickhouse`, httpPort, tcpPort, log }));
  project.provide('redisUrl', `redis://127.0.0.1:${redisPort}`);
  project.provide('clickhouseUrl', `http://127.0.0.1:${httpPort}`);
  project.provide('dataDir', dataDir);
  // The services the tests start are built from this checkout, apart from a running stack's dist/.
  await buildServices(`${dataDir}/dist`);
  project.provide('distDir', `${dataDir}/dist`);
  return async () => {
    for (const p of started.reverse()) await p.stop();
    await rm(dataDir, { recursive: true, force: true });
  };
}
