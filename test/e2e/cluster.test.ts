// A ClickHouse cluster behind the real pipeline: ZooKeeper and 2 shards × 2 replicas of ClickHouse 18.16
// (dev/cluster.ts), the migrations in their cluster form (CLICKHOUSE_CLUSTER), the HTTPS receiver and two
// workers on one queue, each writing through a different node. Reports land on both shards; every count is exact
// (the API's read paths and the alert rules against the views and against the report texts); a report delivered
// twice counts once and a re-sent one replaces its first text; with one replica stopped nothing is lost, and the
// replica catches up when it is back.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { CLUSTER_NAME, startCluster, type ClusterNode, type LocalCluster } from '../../dev/cluster.ts';
import { freePort } from '../../dev/stack.ts';
import { createDb, domainSummary, type Db } from '../../services/api/queries.ts';
import type { ClickHouseClient } from '../../services/common/clickhouse.ts';
import type { Config } from '../../services/common/config.ts';
import { applyRetention } from '../../services/scheduler/retention.ts';
import { evaluateIncidents } from '../../services/scheduler/incident-evaluation.ts';
import { byDomainAndDay } from '../../services/common/incidents/derive.ts';
import { deriveDomains, incidentOptions } from '../../services/common/incidents/load.ts';
import { NO_DAY, pageIncidents, readIncidents, writeIncidents } from '../../services/common/incidents/store.ts';
import { queryRows, testConfig, testDatabase, until } from '../helpers/env.ts';
import {
  compareRulesWithViews,
  compareWithViews,
  expectedTotals,
  range,
  readPathReports,
  resent,
  type Report,
} from '../helpers/read-paths.ts';
import { configEnv, devCa, httpsRequest, postReport, startService, type RunningService } from '../helpers/services.ts';

let cluster: LocalCluster;
let config: Config;
let ch: ClickHouseClient;
let db: Db;
let receiver: RunningService;
let workers: RunningService[] = [];
let workerMetricsPorts: number[] = [];
let port: number;
let ca: string;
// KEEP_CLUSTER_DIR=<folder>: the cluster there, kept after the run (its servers' logs; with CLUSTER_LOG_LEVEL=debug
// in dev/cluster.ts, every query), to look into a failure.
const dir = process.env.KEEP_CLUSTER_DIR ?? join(inject('dataDir'), `cluster-${process.pid}`);
/** The counted text of each identity, and every receipt acknowledged. */
const latest = new Map<string, Report>();
const acknowledged: string[] = [];

const node = (shard: number, replica: number): ClusterNode =>
  cluster.nodes.find((n) => n.shard === shard && n.replica === replica)!;

/** A number from one node's own tables (not through the Distributed ones). */
async function localCount(
  n: ClusterNode,
  sql = 'SELECT uniqExact(report_key, policy_index) FROM policy_results_local',
): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${n.httpPort}/?database=${config.CLICKHOUSE_DATABASE}`, {
    method: 'POST',
    body: sql,
  });
  return Number((await res.text()).trim());
}

/**
 * POSTs `reports`; `counted`: whether their figures are to count (a copy POSTed later with other figures is a
 * conflict, kept and counted nowhere: docs/reliability.md "Which copy of a report counts").
 */
async function send(reports: Report[], counted = true): Promise<void> {
  // Eight at a time (the receiver's per-address limit is far above), so both workers have jobs to take.
  for (let i = 0; i < reports.length; i += 8) {
    const batch = reports.slice(i, i + 8);
    const answers = await Promise.all(batch.map((r) => postReport(port, ca, gzipSync(JSON.stringify(r)))));
    for (const [j, res] of answers.entries()) {
      expect(res.status).toBe(202);
      const r = batch[j]!;
      if (counted) latest.set(`${r['organization-name']}\u0000${r['report-id']}`, structuredClone(r));
      acknowledged.push(res.id!);
    }
  }
  // Stored, every one, before anything else is sent: a re-sent text must be processed after its first.
  await until(
    'every acknowledged report stored',
    async () => {
      const [row] = await queryRows<{ n: number }>(
        ch,
        `SELECT uniqExact(receipt_id) AS n FROM receipts WHERE outcome IN ('stored', 'conflict')`,
      );
      return row!.n === acknowledged.length ? true : undefined;
    },
    120_000,
  );
}

beforeAll(async () => {
  const log = (l: string): void => {
    if (/error|exited/i.test(l) && !l.includes('Logging errors to')) console.error(l);
  };
  cluster = await startCluster({ dir, log });
  config = testConfig({ CLICKHOUSE_URL: `http://127.0.0.1:${node(1, 1).httpPort}`, CLICKHOUSE_CLUSTER: CLUSTER_NAME });
  ch = await testDatabase(config);
  db = createDb(ch, { timeoutSeconds: 60, maxRows: 100_000 }, config.CLICKHOUSE_DATABASE);
  port = await freePort();
  const env = configEnv(config, {
    HTTP_PORT: port,
    HTTP_HOST: '127.0.0.1',
    DATA_DIR: dir,
    LOG_LEVEL: 'warn',
    // A few jobs each at a time, so the two workers share them.
    WORKER_CONCURRENCY: 4,
  });
  receiver = startService('http-receiver', env);
  workerMetricsPorts = [await freePort(), await freePort()];
  // Two workers on one queue, each writing through a node of its own shard.
  workers = [node(1, 1), node(2, 1)].map((n, i) =>
    startService('worker', {
      ...env,
      CLICKHOUSE_URL: `http://127.0.0.1:${n.httpPort}`,
      WORKER_METRICS_PORT: String(workerMetricsPorts[i]),
    }),
  );
  ca = await devCa(dir);
  // Any answer from the report port (404 here) means it listens.
  await until('receiver', async () =>
    (await httpsRequest(`https://localhost:${port}/`, { method: 'GET', ca }).catch(() => undefined))?.status === 404
      ? true
      : undefined,
  );
}, 300_000);

afterAll(async () => {
  try {
    const codes = await Promise.all([receiver, ...workers].map((s) => s?.stop()));
    expect(codes).toEqual([0, 0, 0]);
  } finally {
    // The cluster's own folder goes with it: no DROP DATABASE ON CLUSTER, which waits for every node.
    await ch?.close();
    await cluster?.stop();
    if (!process.env.KEEP_CLUSTER_DIR) await rm(dir, { recursive: true, force: true });
  }
}, 120_000);

describe('a ClickHouse cluster: 2 shards × 2 replicas', () => {
  it('reports through the receiver and two workers land on both shards; every figure is exact', async () => {
    const reports = readPathReports(120, 7);
    await send(reports);
    // The same reports again (a rua with mailto: and https:), and some POSTed again with other figures.
    await send(reports.slice(0, 20));
    const again = reports.filter((_, i) => i % 10 === 3).map((r, i) => resent(r, i));
    await send(again, false);
    // A read may land on a replica that has not fetched the newest parts yet (replicas catch up on their own, and
    // later under load): asked again until it has them.
    const conflicts = async (): Promise<number> => {
      const [row] = await queryRows<{ n: number }>(
        ch,
        "SELECT uniqExact(receipt_id) AS n FROM receipts WHERE outcome = 'conflict'",
      );
      return Number(row!.n);
    };
    await expect.poll(conflicts, { timeout: 60_000, interval: 500 }).toBe(again.length);

    const [keys] = await queryRows<{ n: number }>(ch, 'SELECT uniqExact(report_key) AS n FROM reports');
    expect(keys!.n).toBe(120);
    // Each report is on one shard, each shard holds some; the replicas of a shard, once in step, hold the same.
    const reportsOn = 'SELECT uniqExact(report_key) FROM reports_local';
    const shards = await until('replicas in step', async () => {
      const counts = await Promise.all(cluster.nodes.map((n) => localCount(n, reportsOn)));
      return counts[0] === counts[1] && counts[2] === counts[3] ? [counts[0]!, counts[2]!] : undefined;
    });
    expect(shards[0]).toBeGreaterThan(0);
    expect(shards[1]).toBeGreaterThan(0);
    expect(shards[0]! + shards[1]!).toBe(120);
    // Both workers took jobs.
    for (const p of workerMetricsPorts) {
      const text = await (await fetch(`http://127.0.0.1:${p}/metrics`)).text();
      expect(Number(/tlsrpt_jobs_total\{outcome="stored"[^}]*\} (\d+)/.exec(text)?.[1] ?? 0)).toBeGreaterThan(0);
    }
    await compareWithViews(ch, db, expectedTotals(latest.values()));
    await compareRulesWithViews(ch, db, config);
  }, 300_000);

  it("incidents: the evaluation stores a derivation's incidents on their domains' shards, and a list pages them all", async () => {
    const now = new Date('2025-03-05T08:00:00Z');
    const to = '2025-03-04';
    let seq = 0;
    await evaluateIncidents(db, ch, config, async (n) => ((seq += n), seq - n + 1), now);
    const derived = (await deriveDomains(db, undefined, to, incidentOptions(config))).sort(byDomainAndDay);
    const open = derived.filter((i) => i.state === 'open');
    expect(open.length).toBeGreaterThan(10);
    // Read through one node's Distributed tables: both shards' rows, each domain's newest version on its shard.
    await expect
      .poll(async () => (await readIncidents(db, { from: NO_DAY, to, detail: true })).sort(byDomainAndDay), {
        timeout: 30_000,
      })
      .toEqual(derived);
    const onShards = await Promise.all(
      [node(1, 1), node(2, 1)].map((n) => localCount(n, 'SELECT count() FROM incident_texts_local')),
    );
    expect(onShards.every((n) => n > 0)).toBe(true);
    // Pages of 7, most urgent first: every open incident once, across both shards.
    const listed = {
      from: NO_DAY,
      to,
      states: ['open'],
      actedStates: new Map<string, string>(),
      count: false as const,
    };
    const seen: string[] = [];
    for (let offset = 0; ; offset += 7) {
      const page = await pageIncidents(db, { ...listed, limit: 7, offset });
      seen.push(...page.incidents.map((i) => i.id));
      if (!page.more) break;
    }
    expect(seen.sort()).toEqual(open.map((i) => i.id).sort());
    // A domain derived again without incidents: its rows of the version before are no longer listed.
    const gone = open[0]!.domain;
    await writeIncidents(ch, [gone], [], Date.now() + 1, NO_DAY);
    // (Asked again until the shard's replica read has the new version: replicas fetch parts on their own.)
    const listedNow = async (): Promise<string[]> =>
      (await pageIncidents(db, { ...listed, limit: 1000, offset: 0 })).incidents.map((i) => i.id).sort();
    await expect.poll(listedNow, { timeout: 30_000 }).toEqual(
      open
        .filter((i) => i.domain !== gone)
        .map((i) => i.id)
        .sort(),
    );
  }, 120_000);

  it('retention deletes old rejects on every shard', async () => {
    const values = Array.from(
      { length: 10 },
      (_, i) => `('old-${i}', '2020-01-01 00:00:00', '2020-01-01 00:00:00', 'not-json')`,
    );
    await ch.command({
      query: `INSERT INTO rejects (receipt_id, received_at, rejected_at, reason) VALUES ${values.join(', ')}`,
    });
    const old = "SELECT count() FROM rejects_local WHERE receipt_id LIKE 'old-%'";
    // On its shards, once each shard's replicas are in step (an insert lands on one replica, then replicates).
    await until('the rows on their shards', async () => {
      const [a, b, c, d] = await Promise.all(cluster.nodes.map((n) => localCount(n, old)));
      return a === b && c === d && a! + c! === 10 ? true : undefined;
    });
    const issued = await applyRetention(ch, { ...config, REJECTS_RETENTION_DAYS: 30 });
    expect(issued).toEqual([expect.stringContaining(`ALTER TABLE rejects_local ON CLUSTER ${CLUSTER_NAME} DELETE`)]);
    await until('old rejects deleted on every node', async () => {
      const counts = await Promise.all(cluster.nodes.map((n) => localCount(n, old)));
      return counts.every((c) => c === 0) ? true : undefined;
    });
  }, 120_000);

  it('with one replica stopped nothing is lost, and it catches up when back', async () => {
    const stopped = node(2, 2);
    await until('replicas in step', async () =>
      (await localCount(stopped)) === (await localCount(node(2, 1))) ? true : undefined,
    );
    await stopped.stop();
    await send(readPathReports(40, 8));
    const totals = expectedTotals(latest.values());
    for (const [domain, t] of totals) {
      const s = await domainSummary(db, domain, range);
      expect([domain, s.successfulSessions, s.failedSessions, s.reports]).toEqual([
        domain,
        t.successful,
        t.failed,
        t.reports,
      ]);
    }
    await stopped.start();
    const peer = await localCount(node(2, 1));
    await until(
      'the replica caught up',
      async () => ((await localCount(stopped)) === peer ? true : undefined),
      120_000,
    );
  }, 300_000);
});
