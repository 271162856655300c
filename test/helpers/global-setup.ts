// Starts the suite's own Redis and ClickHouse on free ports in a short temporary folder (every test's servers keep
// their state and sockets under it), builds the services into .data/test-<pid>/dist, and removes both after.
import { rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { TestProject } from 'vitest/node';
import {
  buildServices,
  shortStateDir,
  startOnFreePorts,
  startClickHouse,
  startRedis,
  type ManagedProcess,
} from '../../dev/stack.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
    clickhouseUrl: string;
    dataDir: string;
    distDir: string;
  }
}

interface Servers {
  provided: { redisUrl: string; clickhouseUrl: string; dataDir: string; distDir: string };
  users: number;
  stop: () => Promise<void>;
}

// The integration and e2e projects share one set of servers: their setups run in the one main process of vitest,
// where globalThis is common to both (each project loads this file anew).
const shared = globalThis as { tlsrptTestServers?: Promise<Servers> };

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  shared.tlsrptTestServers ??= startServers();
  const servers = await shared.tlsrptTestServers;
  servers.users++;
  for (const [key, value] of Object.entries(servers.provided)) project.provide(key as keyof Servers['provided'], value);
  return async () => {
    if (--servers.users > 0) return;
    delete shared.tlsrptTestServers;
    await servers.stop();
  };
}

async function startServers(): Promise<Servers> {
  const dataDir = await shortStateDir(`tlsrpt-test-${process.pid}-`);
  // The build stays in the checkout: its imports resolve from this repository's node_modules.
  const distDir = resolve(`.data/test-${process.pid}/dist`);
  const log = (line: string): void => {
    if (/error|exited/i.test(line) && !line.includes('Logging errors to')) console.error(line);
  };
  const started: ManagedProcess[] = [];
  let redisPort = 0;
  let httpPort = 0;
  started.push(
    await startOnFreePorts(1, ([port]) => startRedis({ dir: `${dataDir}/redis`, port: (redisPort = port!), log }), log),
  );
  started.push(
    await startOnFreePorts(
      2,
      ([http, tcpPort]) =>
        startClickHouse({ dir: `${dataDir}/clickhouse`, httpPort: (httpPort = http!), tcpPort: tcpPort!, log }),
      log,
    ),
  );
  // The services the tests start are built from this checkout, apart from a running stack's dist/.
  await buildServices(distDir);
  return {
    provided: {
      redisUrl: `redis://127.0.0.1:${redisPort}`,
      clickhouseUrl: `http://127.0.0.1:${httpPort}`,
      dataDir,
      distDir,
    },
    users: 0,
    stop: async () => {
      for (const p of started.reverse()) await p.stop();
      await rm(dataDir, { recursive: true, force: true });
      await rm(resolve(distDir, '..'), { recursive: true, force: true });
    },
  };
}
