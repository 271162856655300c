// Marks the reports a batch stores again with other content (re-sent under the same identity with other figures, or
// re-processed by another normalizer) in reprocessed_reports (schemas/clickhouse/0009), before their rows are written:
// the reads look a report's newest version up only for marked reports (services/api/current-rows.ts). A report is
// marked under every policy domain of its versions, so a domain that a newer version no longer names still finds the
// look-up. A report stored again with the same rows (delivered by mail and by HTTPS, a batch retried) is not marked:
// the reads count one row per identity and the largest count per report, which versions with the same rows agree on.
//
// A version's content is its fingerprint: the hash of the report's text and the version of the normalizer that made
// its rows (services/worker/rows.ts; the same text and version make the same rows). The fingerprints stored so far come from ClickHouse (report_fingerprints, joined to every version in report_versions: a version
// stored before 0009 has none and counts as other content) and from Redis, where each processing records its
// fingerprint and domains for a while (inFlightSeconds), atomically, before any of its rows are written: that covers
// the processings in flight together, whose rows ClickHouse does not have yet (two workers, or one report by mail and
// by HTTPS in the same batch). Of two processings with other content, the later one finds the earlier in Redis or in
// ClickHouse, and is marked.
import type { Redis } from 'ioredis';
import type { ClickHouseClient } from '../common/clickhouse.ts';
import type { Config } from '../common/config.ts';
import { quoteString } from '../common/clickhouse-compat.ts';
import type { ReprocessedReportRow, TableRows } from '../../schemas/rows.ts';

/** One report of a batch: its identity, this version's policy domains and its fingerprint (its content). */
export interface StoredReport {
  day: string;
  reportKey: string;
  domains: string[];
  fingerprint: string;
}

/** The marks for the reports of a batch stored before with other content; rejects the batch when it cannot tell. */
export type MarkFn = (reports: StoredReport[]) => Promise<ReprocessedReportRow[]>;

/**
 * How long Redis keeps a processing's record: longer than a batch takes from its marks to its rows being stored (a
 * Redis transaction, two queries and three insert phases, each bounded by the request timeout), after which ClickHouse
 * has the rows and answers. A batch that fails is retried and checked anew. Ten minutes at least: at 1,000 reports/s,
 * a few hundred MB of Redis.
 */
const inFlightSeconds = (requestTimeoutMs: number): number => Math.max(600, Math.ceil((6 * requestTimeoutMs) / 1000));

/** Where a deployment's processings are recorded in Redis: beside its queue, apart from other deployments'. */
export const processedKeyPrefix = (queueName: string): string => `${queueName}:processed:`;

/** The report a job's rows store, if any (a reject stores none; a report without policies has no domain rows). */
export function storedReportOf(rows: TableRows): StoredReport | undefined {
  const report = rows.reports[0];
  const fingerprint = rows.report_fingerprints[0]?.fingerprint;
  if (!report || fingerprint === undefined || rows.policy_results.length === 0) return undefined;
  return {
    day: report.day,
    reportKey: report.report_key,
    domains: [...new Set(rows.policy_results.map((p) => p.policy_domain))],
    fingerprint,
  };
}

export const pairs = (reports: Array<{ day: string; reportKey: string }>): string =>
  reports.map((r) => `(toDate(${quoteString(r.day)}), ${quoteString(r.reportKey)})`).join(', ');

const id = (r: { day: string; reportKey: string }): string => `${r.day}\u0000${r.reportKey}`;

export async function rowsOf<T>(clickhouse: ClickHouseClient, query: string): Promise<T[]> {
  return await (await clickhouse.query({ query, format: 'JSONEachRow' })).json<T>();
}

/**
 * The fingerprints of the versions ClickHouse has of `reports` ('' for a version stored before fingerprints were):
 * one query for a batch.
 */
export async function storedFingerprints(
  clickhouse: ClickHouseClient,
  reports: StoredReport[],
): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  if (reports.length === 0) return out;
  const keys = `(day, report_key) IN (${pairs(reports)})`;
  const rows = await rowsOf<{ day: string; report_key: string; fingerprint: string }>(
    clickhouse,
    `SELECT day, report_key, fingerprint FROM report_versions
     ANY LEFT JOIN (SELECT day, report_key, version, fingerprint FROM report_fingerprints WHERE ${keys}) AS known
     USING (day, report_key, version)
     WHERE ${keys}`,
  );
  for (const r of rows) {
    const key = id({ day: r.day, reportKey: r.report_key });
    out.set(key, [...(out.get(key) ?? []), r.fingerprint]);
  }
  return out;
}

/** One entry of a batch: a report and the members its processing adds to the report's record in Redis. */
export interface RecordEntry {
  day: string;
  reportKey: string;
  members: string[];
}

/**
 * The Redis records of processings, named and kept as `config` says: adds each entry's members to its report's record
 * and returns what each record holds then, in one transaction in batch order, so of two processings of a report in
 * one batch the second sees the first.
 */
export function processingRecords(
  redis: Redis,
  config: Pick<Config, 'QUEUE_NAME' | 'CLICKHOUSE_REQUEST_TIMEOUT_MS'>,
): (entries: RecordEntry[]) => Promise<string[][]> {
  const keyPrefix = processedKeyPrefix(config.QUEUE_NAME);
  const recordSeconds = inFlightSeconds(config.CLICKHOUSE_REQUEST_TIMEOUT_MS);
  return async (entries) => {
    const multi = redis.multi();
    for (const e of entries) {
      const key = `${keyPrefix}${e.day}:${e.reportKey}`;
      multi
        .sadd(key, ...e.members)
        .smembers(key)
        .expire(key, recordSeconds);
    }
    const replies = await multi.exec();
    if (!replies) throw new Error('the transaction recording processings in Redis was aborted');
    const failed = replies.find(([err]) => err)?.[0];
    if (failed) throw failed;
    return entries.map((_, i) => replies[i * 3 + 1]![1] as string[]);
  };
}

/** The worker's MarkFn, its Redis records named and kept as `config` says. */
export function reprocessingMarks(deps: {
  redis: Redis;
  clickhouse: ClickHouseClient;
  config: Pick<Config, 'QUEUE_NAME' | 'CLICKHOUSE_REQUEST_TIMEOUT_MS'>;
}): MarkFn {
  const { clickhouse } = deps;
  const record = processingRecords(deps.redis, deps.config);
  return async (reports) => {
    if (reports.length === 0) return [];
    const recorded = await record(
      reports.map((r) => ({ ...r, members: [`f:${r.fingerprint}`, ...r.domains.map((d) => `d:${d}`)] })),
    );
    const stored = await storedFingerprints(clickhouse, reports);
    const again = reports.flatMap((r, i) =>
      recorded[i]!.some((m) => m.startsWith('f:') && m !== `f:${r.fingerprint}`) ||
      (stored.get(id(r)) ?? []).some((f) => f !== r.fingerprint)
        ? [{ report: r, recorded: recorded[i]! }]
        : [],
    );
    if (again.length === 0) return [];
    // The domains of the versions stored so far: their rows under a domain this version lacks must be looked up too.
    const earlier = await rowsOf<{ day: string; report_key: string; policy_domain: string }>(
      clickhouse,
      `SELECT DISTINCT day, report_key, policy_domain FROM policy_days WHERE (day, report_key) IN (${pairs(again.map((a) => a.report))})`,
    );
    const marks = new Map<string, { report: StoredReport; domains: Set<string> }>();
    for (const { report, recorded } of again) {
      const mark = marks.get(id(report)) ?? { report, domains: new Set<string>() };
      for (const d of report.domains) mark.domains.add(d);
      for (const m of recorded) if (m.startsWith('d:')) mark.domains.add(m.slice(2));
      marks.set(id(report), mark);
    }
    for (const e of earlier) marks.get(id({ day: e.day, reportKey: e.report_key }))?.domains.add(e.policy_domain);
    return [...marks.values()].flatMap(({ report, domains }) =>
      [...domains].map((d) => ({ policy_domain: d, day: report.day, report_key: report.reportKey })),
    );
  };
}
