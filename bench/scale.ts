// npm run bench -- --scale: every read path of the API, the alert and incident evaluations on a provider-sized history, at two
// history sizes, on our own ClickHouse 18.16. The history (bench/scale-history.ts) goes straight into the base
// tables; a sample of reports goes through the worker's own code (decode, normalize, rows, TabSeparated inserts). The
// history grows backwards in time, so the questions (the last days, one domain, one report) stay the same and only
// the history behind them grows. Prints p50/p95 latency, rows read and peak memory per call (ClickHouse's query_log).
import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { createClickHouse, type ClickHouseClient } from '../services/common/clickhouse.ts';
import { loadConfig } from '../services/common/config.ts';
import { migrate } from '../services/common/migrations.ts';
import { encodeTsv } from '../services/common/tsv.ts';
import { clickHouseInsert } from '../services/worker/batch-writer.ts';
import { processReportJob } from '../services/worker/process-job.ts';
import { INSERT_PHASES, TABLE_COLUMNS } from '../schemas/rows.ts';
import { evaluateAlerts, type AlertWatermark } from '../services/scheduler/alert-evaluation.ts';
import { evaluateIncidents } from '../services/scheduler/incident-evaluation.ts';
import { findIncident, listIncidents } from '../services/api/incidents.ts';
import { pageIncidents } from '../services/common/incidents/store.ts';
import { incidentOptions } from '../services/common/incidents/load.ts';
import type { Principal } from '../services/api/auth.ts';
import {
  domainDaily,
  domainSummary,
  failureBreakdown,
  getReport,
  listDomains,
  listReports,
  type Db,
} from '../services/api/queries.ts';
import { freePort, startClickHouse } from '../dev/stack.ts';
import type { PageContext } from '../services/api/ui/context.ts';
import { domainPage } from '../services/api/ui/pages/domain.ts';
import { domainsPage } from '../services/api/ui/pages/domains.ts';
import { makeReport, rng } from '../dev/report-mix.ts';
import { cpuSeconds } from './proc.ts';
import { domainName, insertHistory, resentDomain } from './scale-history.ts';

const root = resolve(import.meta.dirname, '..');
const DAY = 86400_000;
const isoDay = (t: number): string => new Date(t).toISOString().slice(0, 10);

export interface ScaleOptions {
  domains: number;
  /** Policy rows of each history size (two per report). */
  sizes: [number, number];
  calls: number;
  log: (line: string) => void;
}

/** The options and the ClickHouse server measured (its process's CPU: the query log leaves out inserts and merges). */
interface RunContext extends ScaleOptions {
  serverPid: number | undefined;
}

export interface PathFigures {
  path: string;
  p50Ms: number;
  p95Ms: number;
  rowsRead: number;
  peakMemoryMb: number;
  /** CPU seconds per call: this process (every thread) and the ClickHouse server's (merges included). */
  cpu?: { node: number; clickhouse: number };
}

export interface ScaleResult {
  domains: number;
  sizes: number[];
  /** Per size, per read path. */
  figures: PathFigures[][];
  /** The *_dedup views' answer to the same questions, on the smaller history, once each (the design before). */
  viewsBefore: PathFigures[];
  historySeconds: number[];
  /** Open incidents when the incident lists were measured, per size. */
  openIncidents: number[];
}

/** A Db that tags each query so its rows read and memory can be found in system.query_log afterwards. */
/** BENCH_SLOW_QUERY_MS: print every query slower than that (its time and start), to see where a read path goes. */
const SLOW_QUERY_MS = Number(process.env.BENCH_SLOW_QUERY_MS ?? Infinity);

function taggedDb(client: ClickHouseClient, ids: string[]): Db {
  return {
    rows: async <T>(sql: string): Promise<T[]> => {
      const id = randomUUID();
      ids.push(id);
      const t0 = performance.now();
      const result = await client.query({
        query: sql,
        format: 'JSONEachRow',
        query_id: id,
        clickhouse_settings: { log_queries: 1, max_execution_time: 120, output_format_json_quote_64bit_integers: 0 },
      });
      const rows = await result.json<T>();
      const ms = performance.now() - t0;
      if (ms > SLOW_QUERY_MS)
        console.error(
          `    slow query ${ms.toFixed(0)} ms, ${rows.length} rows: ${sql.replace(/\s+/g, ' ').slice(0, 300)}`,
        );
      return rows;
    },
  };
}

async function queryLog(client: ClickHouseClient, ids: string[]): Promise<{ rows: number; memoryMb: number }> {
  await client.command({ query: 'SYSTEM FLUSH LOGS' });
  const [r] = await (
    await client.query({
      query: `SELECT sum(read_rows) AS rows, max(memory_usage) AS memory FROM system.query_log
              WHERE type = 2 AND query_id IN (${ids.map((i) => `'${i}'`).join(', ')})`,
      format: 'JSONEachRow',
      clickhouse_settings: { output_format_json_quote_64bit_integers: 0 },
    })
  ).json<{ rows: number; memory: number }>();
  return { rows: Number(r?.rows ?? 0), memoryMb: Number(r?.memory ?? 0) / 1048576 };
}

const percentile = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
};

/** Runs `call(i)` `calls` times; latency percentiles, mean rows read and the peak memory of one query. */
async function measurePath(
  client: ClickHouseClient,
  path: string,
  calls: number,
  call: (db: Db, i: number) => Promise<unknown>,
  serverPid?: number,
): Promise<PathFigures> {
  const times: number[] = [];
  const ids: string[] = [];
  const db = taggedDb(client, ids);
  const node0 = process.cpuUsage();
  const server0 = serverPid ? await cpuSeconds(serverPid) : 0;
  for (let i = 0; i < calls; i++) {
    const t0 = performance.now();
    await call(db, i);
    times.push(performance.now() - t0);
  }
  const node = process.cpuUsage(node0);
  const server = serverPid ? await cpuSeconds(serverPid) : 0;
  const log = await queryLog(client, ids);
  return {
    path,
    p50Ms: percentile(times, 0.5),
    p95Ms: percentile(times, 0.95),
    rowsRead: Math.round(log.rows / calls),
    peakMemoryMb: log.memoryMb,
    ...(serverPid
      ? { cpu: { node: (node.user + node.system) / 1e6 / calls, clickhouse: (server - server0) / calls } }
      : {}),
  };
}

/** `count` reports of the bench mix for history domains on `day`, through the worker's code and inserts. */
export async function pipelineSample(
  client: ClickHouseClient,
  count: number,
  day: string,
  domains: number,
  /** Each report about one domain (RFC 8460's reports are), not each of its policies about another. */
  oneDomainEach = false,
): Promise<void> {
  const random = rng(11);
  const insert = clickHouseInsert(client);
  const rows = Array.from({ length: count }, (_, i) => {
    const report = makeReport(random, i) as {
      'date-range': Record<string, string>;
      'report-id': string;
      policies: Array<{ policy: Record<string, unknown> }>;
    };
    report['date-range'] = { 'start-datetime': `${day}T00:00:00Z`, 'end-datetime': `${day}T23:59:59Z` };
    report['report-id'] = `scale-sample-${day}-${i}`;
    const domain = oneDomainEach ? domainName(Math.floor(random() * domains)) : undefined;
    for (const p of report.policies) p.policy['policy-domain'] = domain ?? domainName(Math.floor(random() * domains));
    const job = {
      v: 1,
      receiptId: `scale-sample-${day}-${i}`,
      receivedAt: new Date().toISOString(),
      channel: 'https',
      bodyBase64: gzipSync(JSON.stringify(report)).toString('base64'),
    };
    return processReportJob(job, job.receiptId, { maxDecompressedBytes: 1 << 26 }).rows;
  });
  for (const phase of INSERT_PHASES) {
    for (const t of phase) {
      const withRows = rows.filter((r) => r[t].length > 0);
      if (withRows.length === 0) continue;
      await insert(
        t,
        withRows.map((r) => encodeTsv(TABLE_COLUMNS[t], r[t])),
        withRows.reduce((a, r) => a + r[t].length, 0),
      );
    }
  }
}

const everyone: Principal = { name: 'bench', domains: undefined };

async function measureAll(
  client: ClickHouseClient,
  opts: RunContext,
  lastDay: string,
  keys: { history: string[]; sample: string[] },
): Promise<PathFigures[]> {
  const end = Date.parse(`${lastDay}T00:00:00Z`);
  const range = (days: number) => ({ from: isoDay(end - (days - 1) * DAY), to: lastDay });
  // A different domain each call (every tenth one fails: those have failure details).
  const domain = (i: number): string => domainName((i * 7919 * 10) % opts.domains);
  const n = opts.calls;
  const out: PathFigures[] = [];
  const path = async (name: string, call: (db: Db, i: number) => Promise<unknown>, calls = n): Promise<void> => {
    out.push(await measurePath(client, name, calls, call, opts.serverPid));
    opts.log(`  ${name}: p50 ${out.at(-1)!.p50Ms.toFixed(1)} ms`);
  };
  await path('one report by key (the history: 2 policies)', (db, i) =>
    getReport(db, everyone, keys.history[i % keys.history.length]!, { detailLimit: 1000 }),
  );
  await path('one report by key (worker sample: up to 20 policies, 50 details)', (db, i) =>
    getReport(db, everyone, keys.sample[i % keys.sample.length]!, { detailLimit: 1000 }),
  );
  await path('domain summary, 7 days', (db, i) => domainSummary(db, domain(i), range(7)));
  await path('domain daily series, 90 days', (db, i) => domainDaily(db, domain(i), range(90)));
  // The worst case of the version look-up: a domain whose every report was re-sent with other figures.
  await path('domain daily series, 90 days, every report re-sent', (db, i) =>
    domainDaily(db, resentDomain(i, opts.domains), range(90)),
  );
  // The smaller history holds 50 days: a 30-day question has its whole answer at both sizes.
  await path('domain daily series, 30 days', (db, i) => domainDaily(db, domain(i), range(30)));
  await path('domain failure breakdown by result type, 30 days', (db, i) =>
    failureBreakdown(db, domain(i), range(30), 'result-type', 10),
  );
  await path('domain list, first page of 100, 7 days', (db) =>
    listDomains(db, everyone, range(7), 0.05, { limit: 100 }),
  );
  await path('domain list, page of 100 after a cursor', (db, i) =>
    listDomains(db, everyone, range(7), 0.05, { limit: 100, cursor: { domain: domain(i) } }),
  );
  await path('domain list, search by prefix', (db, i) =>
    listDomains(db, everyone, range(7), 0.05, { limit: 100, prefix: `d${(i % 9) + 1}${i % 10}` }),
  );
  await path('report list, first page of 100', (db) => listReports(db, everyone, range(7), { limit: 100 }));
  await path('report list of one domain, 90 days', (db, i) =>
    listReports(db, everyone, range(90), { limit: 100, domain: domain(i) }),
  );
  await path('report list of one domain, 30 days', (db, i) =>
    listReports(db, everyone, range(30), { limit: 100, domain: domain(i) }),
  );
  // The dashboard's pages as the server renders them (every query of the page, the chart drawn to SVG).
  const page = (db: Db, query: Record<string, string>, params: Record<string, string> = {}): PageContext => ({
    db,
    principal: everyone,
    query: new URLSearchParams(query),
    params,
    threshold: 0.05,
    readinessDays: 14,
    publish: { rua: 'mailto:tlsrpt@reports.example', hostTarget: 'policy.reports.example' },
    postureDomains: [],
    incidents: { resolveDays: 3, stoppedAfterDays: 3, regularShare: 0.6, windowDays: 120 },
    now: new Date(end + DAY),
  });
  await path('dashboard: domain list page (50 domains, trends), 7 days', (db) =>
    domainsPage(page(db, { from: range(7).from, to: lastDay })),
  );
  await path('dashboard: one domain page, 30 days', (db, i) =>
    domainPage(page(db, { from: range(30).from, to: lastDay }, { domain: domain(i) })),
  );
  return out;
}

async function measureAlerts(
  client: ClickHouseClient,
  opts: RunContext,
  lastDay: string,
  sampleDay: string,
): Promise<PathFigures[]> {
  // The per-day rules of earlier releases (off by default since incidents), all of them, as measured before.
  const config = loadConfig({
    ALERT_RULES: 'failure-rate,new-result-type,enforce-failure,reporter-stopped,sts-policy-fetch-error,posture',
  });
  const now = new Date(Date.parse(`${lastDay}T12:00:00Z`) + DAY);
  let mark: string | undefined;
  const watermark: AlertWatermark = { read: async () => mark, write: async (at) => void (mark = at) };
  let seq = 0;
  const reserve = async (count: number): Promise<number> => ((seq += count), seq - count + 1);
  const out: PathFigures[] = [];
  const failed: string[] = [];
  const onError = (rule: string, err: unknown): void => {
    failed.push(rule);
    opts.log(`  rule ${rule} failed: ${err instanceof Error ? err.message : String(err)}`);
  };
  out.push(
    await measurePath(
      client,
      `alert evaluation, first (${config.ALERT_LOOKBACK_DAYS} days)`,
      1,
      (db) => evaluateAlerts(db, client, config, reserve, now, onError, watermark),
      opts.serverPid,
    ),
  );
  opts.log(`  ${out.at(-1)!.path}: ${out.at(-1)!.p50Ms.toFixed(0)} ms`);
  // The synthetic history fails on a tenth of its domains every day: the first evaluation stops at its bound
  // (ALERT_MAX_PER_RULE) and a real evaluator would go on finding the backlog. Measured here instead: an evaluator
  // whose previous run ended now, when a batch of new reports arrives (through the worker's code); it reads the
  // days they touched.
  const [at] = await (
    await client.query({ query: "SELECT toString(now(), 'UTC') AS at", format: 'JSONEachRow' })
  ).json<{ at: string }>();
  mark = at!.at;
  await pipelineSample(client, 2000, sampleDay, opts.domains);
  out.push(
    await measurePath(
      client,
      'alert evaluation, after a batch of new reports',
      1,
      (db) => evaluateAlerts(db, client, config, reserve, now, onError, watermark),
      opts.serverPid,
    ),
  );
  opts.log(`  ${out.at(-1)!.path}: ${out.at(-1)!.p50Ms.toFixed(0)} ms`);
  if (failed.length > 0) throw new Error(`alert rules failed: ${failed.join(', ')}`);
  return out;
}

/**
 * A real history arrived over its days, not in the last minutes: what the evaluators see as "received since the last
 * run" must be the batch measured, not everything written just now (the history, the alert measurements' batch).
 * Each day arrived an hour after it ended, but never later than an hour ago: the alert measurements write reports of
 * days up to tomorrow, and an arrival in the future counted them as new in every evaluation after (at 5 M rows, ten
 * times the batch's domains).
 */
const ARRIVED = (day: string): string =>
  `if(toDateTime(${day}, 'UTC') + 86400 + 3600 > now() - 3600, now() - 3600, toDateTime(${day}, 'UTC') + 86400 + 3600)`;

async function ageIngest(client: ClickHouseClient): Promise<void> {
  await client.command({ query: 'TRUNCATE TABLE ingest_days' });
  await client.command({
    query: `INSERT INTO ingest_days SELECT day, ${ARRIVED('day')} FROM (SELECT DISTINCT day FROM domain_days)`,
  });
  // The same for the domains' last reports, which the incident evaluation reads.
  await client.command({ query: 'TRUNCATE TABLE domain_ingest' });
  await client.command({
    query: `INSERT INTO domain_ingest SELECT policy_domain, ${ARRIVED('last_day')}
            FROM (SELECT policy_domain, max(day) AS last_day FROM domain_days GROUP BY policy_domain)`,
  });
}

/**
 * Incidents: the scheduler's first evaluation (every domain with reports in the window), the API's list of open
 * incidents and one incident, then an evaluation after a batch of new reports (the domains it touched only).
 */
async function measureIncidents(
  client: ClickHouseClient,
  opts: RunContext,
  lastDay: string,
  batchDay: string,
  openIncidents: number[],
): Promise<PathFigures[]> {
  const config = loadConfig({});
  const now = new Date(Date.parse(`${lastDay}T12:00:00Z`) + DAY);
  let mark: string | undefined;
  const watermark: AlertWatermark = { read: async () => mark, write: async (at) => void (mark = at) };
  let seq = 1_000_000_000;
  const reserve = async (count: number): Promise<number> => ((seq += count), seq - count + 1);
  const out: PathFigures[] = [];
  const path = async (name: string, call: (db: Db, i: number) => Promise<unknown>, calls = opts.calls) => {
    out.push(await measurePath(client, name, calls, call, opts.serverPid));
    opts.log(`  ${name}: p50 ${out.at(-1)!.p50Ms.toFixed(1)} ms`);
  };
  let found = 0;
  await ageIngest(client);
  await path(
    'incident evaluation, first (every domain of the window)',
    async (db) => (found = (await evaluateIncidents(db, client, config, reserve, now, watermark)).incidents.length),
    1,
  );
  const range = { from: isoDay(Date.parse(lastDay) - 29 * DAY), to: lastDay };
  const openNow = async (): Promise<number> =>
    (
      await pageIncidents(taggedDb(client, []), {
        ...range,
        states: ['open'],
        limit: 1,
        offset: 0,
        actedStates: new Map(),
      })
    ).total;
  opts.log(`  ${found.toLocaleString()} incidents, ${(await openNow()).toLocaleString()} open`);
  // A day's late reports like the history's (an sts and a tlsa entry, failures on every tenth), one for each of
  // 2,000 domains: report numbers far past the history's, with its last day moved so they fall on batchDay.
  // One day of numbers per size (batchDay differs per size), so no batch re-sends another's reports.
  const k = 1000 + Math.round((Date.parse(lastDay) - Date.parse(batchDay)) / DAY);
  const first = opts.domains * k;
  await insertHistory(
    client,
    { domains: opts.domains, lastDay: isoDay(Date.parse(batchDay) + k * DAY) },
    first,
    2000,
    1,
  );
  await path(
    "incident evaluation, after 2,000 reports like the history's (a domain each, days late)",
    (db) => evaluateIncidents(db, client, config, reserve, now, watermark),
    1,
  );
  // The worker's sample: up to 20 policies and 50 failure details each, so the batch opens ~17,700 incidents.
  await pipelineSample(client, 2000, isoDay(Date.parse(batchDay) - DAY), opts.domains, true);
  await path(
    'incident evaluation, after 2,000 bench-mix reports (a domain each, days late; ~17,700 new incidents)',
    (db) => evaluateIncidents(db, client, config, reserve, now, watermark),
    1,
  );
  // The lists after the batches, so both sizes list a store that holds their batches' incidents (resolved days
  // later; the batches of a size stay in the history of the next). Measured before its own batches, the smaller size
  // listed a store without them and the larger size one with the smaller size's: 39,583 incidents against 57,061.
  const open = await listIncidents(
    taggedDb(client, []),
    everyone,
    range,
    { state: 'open' },
    { limit: 500, offset: 0 },
    now,
  );
  const ids = open.incidents.map((i) => i.id);
  const total = await openNow();
  opts.log(`  ${total.toLocaleString()} open incidents`);
  openIncidents.push(total);
  await path('incidents: open ones, first page of 100 (30 days)', (db) =>
    listIncidents(db, everyone, range, { state: 'open' }, { limit: 100, offset: 0 }, now),
  );
  await path("incidents: one domain's, 30 days", (db, i) =>
    listIncidents(
      db,
      everyone,
      range,
      { domain: domainName((i * 7919 * 10) % opts.domains) },
      { limit: 100, offset: 0 },
      now,
    ),
  );
  await path('incidents: one incident (derived for its domain)', (db, i) =>
    findIncident(db, everyone, ids[i % ids.length]!, incidentOptions(config), now),
  );
  return out;
}

/** The same questions through the views (the design before), once each: they group the whole history. */
async function measureViews(client: ClickHouseClient, lastDay: string, opts: ScaleOptions): Promise<PathFigures[]> {
  const d = `'${domainName(10)}'`;
  const queries: Array<[string, string]> = [
    [
      'domain summary, 7 days (policy_results_dedup)',
      `SELECT sum(s), sum(f) FROM (SELECT report_key, max(successful_sessions) AS s, max(failed_sessions) AS f
        FROM policy_results_dedup WHERE policy_domain = ${d} AND day > toDate('${lastDay}') - 7 GROUP BY report_key)`,
    ],
    [
      'domain daily series, 90 days (domain_daily)',
      `SELECT * FROM domain_daily WHERE policy_domain = ${d} AND day > toDate('${lastDay}') - 90`,
    ],
  ];
  const out: PathFigures[] = [];
  for (const [name, sql] of queries) {
    try {
      out.push(await measurePath(client, name, 1, (db) => db.rows(sql)));
    } catch (err) {
      // The point of the comparison: at this size the views may not answer at all.
      const reason = (err instanceof Error ? err.message : String(err)).replace(/, e\.what.*/, '').slice(0, 120);
      out.push({ path: `${name}: failed (${reason})`, p50Ms: NaN, p95Ms: NaN, rowsRead: NaN, peakMemoryMb: NaN });
    }
    opts.log(`  ${out.at(-1)!.path}: ${out.at(-1)!.p50Ms.toFixed(0)} ms`);
  }
  return out;
}

export async function runScale(options: ScaleOptions): Promise<ScaleResult> {
  const dir = join(root, `.data/bench-scale-${process.pid}`);
  const httpPort = await freePort();
  const server = await startClickHouse({ dir, httpPort, tcpPort: await freePort(), log: () => {} });
  const opts: RunContext = { ...options, serverPid: server.child?.pid };
  const config = loadConfig({ CLICKHOUSE_URL: `http://127.0.0.1:${httpPort}`, CLICKHOUSE_DATABASE: 'scale' });
  const client = createClickHouse({ ...config, CLICKHOUSE_REQUEST_TIMEOUT_MS: 3_600_000 });
  const lastDay = isoDay(Date.now() - 2 * DAY);
  const shape = { domains: opts.domains, lastDay };
  const result: ScaleResult = {
    domains: opts.domains,
    sizes: [],
    figures: [],
    viewsBefore: [],
    historySeconds: [],
    openIncidents: [],
  };
  try {
    await migrate(config);
    let reports = 0;
    for (const [i, size] of opts.sizes.entries()) {
      const t0 = performance.now();
      while (reports < size / 2) {
        const count = Math.min(1_000_000, size / 2 - reports);
        await insertHistory(client, shape, reports, count, 1);
        reports += count;
        opts.log(`  history: ${(reports * 2).toLocaleString()} policy rows`);
      }
      if (i === 0) await pipelineSample(client, 2000, lastDay, opts.domains);
      await ageIngest(client);
      result.historySeconds.push((performance.now() - t0) / 1000);
      await settle(client, opts.log);
      result.sizes.push(size);
      // Reports of the last day: the history's own (report ids r<n>: an sts and a tlsa entry, failure details on
      // every tenth) and the sample through the worker's code (up to 20 policies and 50 details each).
      const keysOf = async (like: string): Promise<string[]> =>
        (
          await (
            await client.query({
              query: `SELECT report_key FROM report_days WHERE day = toDate('${lastDay}') AND report_id LIKE '${like}'
                      ORDER BY report_key LIMIT 200`,
              format: 'JSONEachRow',
            })
          ).json<{ report_key: string }>()
        ).map((k) => k.report_key);
      opts.log(`size ${size.toLocaleString()}:`);
      const figures = await measureAll(client, opts, lastDay, {
        history: await keysOf('r%'),
        sample: await keysOf('scale-sample-%'),
      });
      figures.push(...(await measureAlerts(client, opts, lastDay, isoDay(Date.parse(lastDay) + (i + 1) * DAY))));
      figures.push(
        ...(await measureIncidents(
          client,
          opts,
          lastDay,
          isoDay(Date.parse(lastDay) - (i + 3) * DAY),
          result.openIncidents,
        )),
      );
      result.figures.push(figures);
      if (i === 0) result.viewsBefore = await measureViews(client, lastDay, opts);
    }
    return result;
  } finally {
    await client.close();
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Waits until ClickHouse has merged the parts just written (no merge running and the count of active parts steady
 * for a minute; at most 15 minutes): a provider's history is read long after it was written, not while 40 M rows are
 * being merged beside the measurement. (Ten quiet seconds were not enough: a run once measured 477 parts, merges
 * not yet begun, and paid a granule per part.)
 */
export async function settle(client: ClickHouseClient, log: (line: string) => void): Promise<void> {
  const t0 = performance.now();
  const read = async (query: string): Promise<number> =>
    Number((await (await client.query({ query, format: 'JSONEachRow' })).json<{ n: string }>())[0]?.n ?? 0);
  let parts = -1;
  let quiet = 0;
  while (performance.now() - t0 < 900_000 && quiet < 6) {
    await new Promise((r) => setTimeout(r, 10_000));
    const merging = await read('SELECT count() AS n FROM system.merges');
    const now = await read('SELECT count() AS n FROM system.parts WHERE active AND database = currentDatabase()');
    quiet = merging === 0 && now === parts ? quiet + 1 : 0;
    parts = now;
  }
  log(`  merges settled after ${((performance.now() - t0) / 1000).toFixed(0)} s, ${parts} active parts`);
}

const ms = (x: number): string => (Number.isNaN(x) ? '–' : x < 10 ? x.toFixed(1) : x.toFixed(0));

/** Runs the scale benchmark, prints its table and writes bench/results/scale{,-quick}.{json,md}. */
export async function scaleBench(quick: boolean, log: (line: string) => void): Promise<void> {
  const opts: ScaleOptions = quick
    ? { domains: 10_000, sizes: [1_000_000, 5_000_000], calls: 10, log }
    : { domains: 100_000, sizes: [10_000_000, 50_000_000], calls: 20, log };
  const r = await runScale(opts);
  const [small, large] = r.sizes.map((s) => `${(s / 1e6).toLocaleString()} M`);
  const cores = availableParallelism();
  const lines = [
    `## Reads at scale: ${r.domains.toLocaleString()} domains, one report per domain and day (an sts and a tlsa entry each), failure details on every tenth`,
    '',
    `History written in ${r.historySeconds.map((s) => `${s.toFixed(0)} s`).join(' and ')}. Latency in ms (p50 / p95 of ${opts.calls} calls, one call for the alert evaluations); rows read and peak memory from ClickHouse's query_log (the largest query of the call). The incident lists are measured after the evaluations' batches, with ${r.openIncidents.map((n) => n.toLocaleString()).join(' and ')} open incidents.`,
    '',
    `| read path | ${small} policy rows: p50 / p95 | rows read | peak memory | ${large} policy rows: p50 / p95 | rows read | peak memory | p50 ratio ${large} / ${small} |`,
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...r.figures[0]!.map((a, i) => {
      const b = r.figures[1]![i]!;
      return `| ${a.path} | ${ms(a.p50Ms)} / ${ms(a.p95Ms)} | ${a.rowsRead.toLocaleString()} | ${a.peakMemoryMb.toFixed(0)} MB | ${ms(b.p50Ms)} / ${ms(b.p95Ms)} | ${b.rowsRead.toLocaleString()} | ${b.peakMemoryMb.toFixed(0)} MB | ${(b.p50Ms / a.p50Ms).toFixed(2)} |`;
    }),
    '',
    `CPU of the evaluations (one call each), in seconds: this process (every thread) and ClickHouse's server process (its merges included); on ${cores} cores, no evaluation can take less wall time than their sum divided by ${cores}.`,
    '',
    `| evaluation | ${small}: node | ClickHouse | sum / ${cores} | wall | ${large}: node | ClickHouse | sum / ${cores} | wall |`,
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...r.figures[0]!.flatMap((a, i) => {
      const b = r.figures[1]![i]!;
      if (!a.cpu || !b.cpu || !a.path.includes('evaluation')) return [];
      const cells = (x: PathFigures): string =>
        `${x.cpu!.node.toFixed(2)} | ${x.cpu!.clickhouse.toFixed(2)} | ${((x.cpu!.node + x.cpu!.clickhouse) / cores).toFixed(2)} | ${(x.p50Ms / 1000).toFixed(2)}`;
      return [`| ${a.path} | ${cells(a)} | ${cells(b)} |`];
    }),
    '',
    `The same questions through the \`*_dedup\` views (the design before; they group the whole history), on ${small} policy rows:`,
    '',
    '| query | latency | rows read | peak memory | vs the read path above (p50) |',
    '| --- | ---: | ---: | ---: | ---: |',
    ...r.viewsBefore.map((v) => {
      const now = r.figures[0]!.find((f) => v.path.startsWith(f.path))!;
      if (Number.isNaN(v.p50Ms)) return `| ${v.path} | – | – | – | – |`;
      return `| ${v.path} | ${ms(v.p50Ms)} ms | ${v.rowsRead.toLocaleString()} | ${v.peakMemoryMb.toFixed(0)} MB | ${(v.p50Ms / now.p50Ms).toFixed(0)}× |`;
    }),
  ];
  const markdown = lines.join('\n');
  console.log(markdown);
  const name = quick ? 'scale-quick' : 'scale';
  const { mkdir, writeFile } = await import('node:fs/promises');
  await mkdir(join(root, 'bench/results'), { recursive: true });
  await writeFile(
    join(root, `bench/results/${name}.json`),
    JSON.stringify({ at: new Date().toISOString(), ...r }, null, 2),
  );
  await writeFile(join(root, `bench/results/${name}.md`), markdown + '\n');
}
