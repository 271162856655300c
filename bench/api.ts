// npm run bench -- --api [--api-baseline <git revision>]: the API's requests/s and latency on a read route
// (GET /v1/domains and GET /v1/domains/{domain}/summary, keep-alive, 16 clients) and on one without ClickHouse
// (GET /v1/diagnoses, the HTTP layer's own cost) over 2,000 synthetic reports, for
// the API as it is and, in the same run against the same ClickHouse, for the API of another revision (checked out
// into .data/, run from there). Ratios, not absolutes: this machine's speed drifts.
import { execFileSync } from 'node:child_process';
import { existsSync, symlinkSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { Agent, request, type Server } from 'node:http';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Registry } from 'prom-client';
import { createClickHouse } from '../services/common/clickhouse.ts';
import { loadConfig } from '../services/common/config.ts';
import { createLogger } from '../services/common/logger.ts';
import { migrate } from '../services/common/migrations.ts';
import { createDb } from '../services/common/db.ts';
import { createApi } from '../services/api/server.ts';
import { freePort, startClickHouse } from '../dev/stack.ts';
import { pipelineSample } from './scale.ts';
import { domainName } from './scale-history.ts';

const root = resolve(import.meta.dirname, '..');
type CreateApi = (config: never, deps: never) => Server | Promise<Server>;

/** `seconds` of `clients` keep-alive clients asking `path` in turn: answers/s and latency percentiles. */
async function load(port: number, paths: string[], clients: number, seconds: number) {
  const agent = new Agent({ keepAlive: true, maxSockets: clients });
  const latencies: number[] = [];
  let failed = 0;
  const end = performance.now() + seconds * 1000;
  const one = (path: string) =>
    new Promise<void>((done) => {
      const t0 = performance.now();
      const req = request(
        { host: '127.0.0.1', port, path, agent, headers: { authorization: 'Bearer dev-token' } },
        (res) => {
          res.resume();
          res.on('end', () => {
            if (res.statusCode === 200) latencies.push(performance.now() - t0);
            else failed++;
            done();
          });
        },
      );
      req.on('error', () => (failed++, done()));
      req.end();
    });
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      for (let i = c; performance.now() < end; i++) await one(paths[i % paths.length]!);
    }),
  );
  const took = (performance.now() - t0) / 1000;
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
  return { perSec: latencies.length / took, p50: at(0.5), p99: at(0.99), failed };
}

/** The API of `rev`, checked out beside this one (its own code, this checkout's node_modules). */
async function baselineApi(rev: string): Promise<CreateApi> {
  const dir = join(root, `.data/bench-api-${rev.replace(/[^A-Za-z0-9]/g, '')}`);
  if (!existsSync(dir)) {
    execFileSync('git', ['worktree', 'add', '--detach', dir, rev], { cwd: root, stdio: 'ignore' });
    symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'));
  }
  const found = ['services/api/server.ts', 'services/api/app.ts'].find((f) => existsSync(join(dir, f)))!;
  const mod = (await import(pathToFileURL(join(dir, found)).href)) as { createApi: CreateApi };
  return mod.createApi;
}

export async function apiBench(quick: boolean, baseline: string | undefined, log: (l: string) => void) {
  const dir = join(root, `.data/bench-api-ch-${process.pid}`);
  const httpPort = await freePort();
  const server = await startClickHouse({ dir, httpPort, tcpPort: await freePort(), log: () => {} });
  const config = loadConfig({
    CLICKHOUSE_URL: `http://127.0.0.1:${httpPort}`,
    CLICKHOUSE_DATABASE: 'apibench',
    NODE_ENV: 'development',
    LOG_LEVEL: 'silent',
  });
  const client = createClickHouse(config);
  const lines: string[] = [];
  try {
    await migrate(config);
    const day = new Date(Date.now() - 86400_000).toISOString().slice(0, 10);
    await pipelineSample(client, 2000, day, 200);
    const db = createDb(client, { timeoutSeconds: 30, maxRows: 100_000 });
    const deps = {
      db,
      logger: createLogger('bench', 'silent'),
      ready: async () => true,
      sessions: { ttlSeconds: 60, create: async () => '', find: async () => undefined, destroy: async () => {} },
      clickhouse: client,
    };
    const apis: Array<[string, CreateApi]> = [['this checkout', createApi]];
    if (baseline) apis.unshift([`baseline ${baseline}`, await baselineApi(baseline)]);
    const reads = [
      '/v1/domains?limit=100',
      ...Array.from({ length: 20 }, (_, i) => `/v1/domains/${domainName(i)}/summary`),
    ];
    const sets: Array<[string, string[]]> = [
      ['GET /v1/domains and /v1/domains/{domain}/summary (ClickHouse reads)', reads],
      ['GET /v1/diagnoses (no ClickHouse: the HTTP layer and JSON alone)', ['/v1/diagnoses']],
    ];
    const seconds = quick ? 3 : 10;
    for (const [title, paths] of sets) {
      const results: Array<[string, Awaited<ReturnType<typeof load>>]> = [];
      // Each API twice, alternating, so a slow spell of the machine falls on both.
      for (const round of [1, 2])
        for (const [name, make] of apis) {
          const srv = await make(config as never, { ...deps, registry: new Registry() } as never);
          await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
          const port = (srv.address() as { port: number }).port;
          await load(port, paths, 16, 1);
          const r = await load(port, paths, 16, seconds);
          log(`  api ${name} round ${round}: ${r.perSec.toFixed(0)}/s, p99 ${r.p99.toFixed(1)} ms`);
          results.push([name, r]);
          await new Promise<void>((r2) => srv.close(() => r2()));
        }
      const best = (name: string) =>
        results
          .filter(([n]) => n === name)
          .map(([, r]) => r)
          .reduce((a, r) => (r.perSec > a.perSec ? r : a));
      const first = best(apis[0]![0]);
      lines.push(
        `## API: ${title}, 16 keep-alive clients, ${seconds} s, best of 2 rounds, 2,000 reports stored`,
        '',
        '| API | requests/s | p50 | p99 | failed | requests/s ratio | p99 ratio |',
        '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
        ...apis.map(([name]) => {
          const r = best(name);
          return `| ${name} | ${r.perSec.toFixed(0)} | ${r.p50.toFixed(1)} ms | ${r.p99.toFixed(1)} ms | ${r.failed} | ${(r.perSec / first.perSec).toFixed(2)} | ${(r.p99 / first.p99).toFixed(2)} |`;
        }),
        '',
      );
    }
  } finally {
    await client.close();
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
  const markdown = lines.join('\n').trimEnd() + '\n';
  console.log(markdown);
  await writeFile(join(root, 'bench/results/api.md'), markdown);
}
