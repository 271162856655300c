// Marks the reports a batch stores again (re-sent under the same identity, delivered twice, re-processed after a
// crash or a replay) in reprocessed_reports (schemas/clickhouse/0009), before their rows are written: the reads look
// a report's newest version up only for marked reports (services/api/current-rows.ts). A report is marked under every
// policy domain of its versions, so a domain that a newer version no longer names still finds the look-up.
//
// Stored before means: rows of it in ClickHouse (report_versions), or another processing of it in the last hour, found
// in Redis, which covers the processings in flight together, whose rows ClickHouse does not have yet (two workers, or
// one report by mail and by HTTPS in the same batch). Redis records each processing before any of its rows are
// written, atomically, so of two processings of a report the second to reach Redis is marked whatever their timing.
import type { Redis } from 'ioredis';
import type { ClickHouseClient } from '../common/clickhouse.ts';
import { quoteString } from '../common/sql.ts';
import type { ReprocessedReportRow, TableRows } from '../../schemas/rows.ts';

/** One report of a batch: its identity and the policy domains of this version. */
export interface StoredReport {
  day: string;
  reportKey: string;
  domains: string[];
}

/** The marks for the reports of a batch that were stored before; rejects the batch when it cannot tell. */
export type MarkFn = (reports: StoredReport[]) => Promise<ReprocessedReportRow[]>;

/**
 * Longer than a batch takes from its marks to its rows being stored (a failed batch is retried and marked anew);
 * after it, ClickHouse has the rows and answers.
 */
export const IN_FLIGHT_SECONDS = 3600;

/** Where a deployment's processings are recorded in Redis: beside its queue, apart from other deployments'. */
export const processedKeyPrefix = (queueName: string): string => `${queueName}:processed:`;

/** The report a job's rows store, if any (a reject stores none; a report without policies has no domain rows). */
export function storedReportOf(rows: TableRows): StoredReport | undefined {
  const report = rows.reports[0];
  if (!report || rows.policy_results.length === 0) return undefined;
  return {
    day: report.day,
    reportKey: report.report_key,
    domains: [...new Set(rows.policy_results.map((p) => p.policy_domain))],
  };
}

const pairs = (reports: StoredReport[]): string =>
  reports.map((r) => `(toDate(${quoteString(r.day)}), ${quoteString(r.reportKey)})`).join(', ');

const id = (day: string, reportKey: string): string => `${day}\u0000${reportKey}`;

async function rowsOf<T>(clickhouse: ClickHouseClient, query: string): Promise<T[]> {
  return await (await clickhouse.query({ query, format: 'JSONEachRow' })).json<T>();
}

/** Of `reports`, those ClickHouse has rows of (as `${day}\0${key}`): one query for a batch. */
export async function storedBefore(clickhouse: ClickHouseClient, reports: StoredReport[]): Promise<Set<string>> {
  if (reports.length === 0) return new Set();
  const stored = await rowsOf<{ day: string; report_key: string }>(
    clickhouse,
    `SELECT DISTINCT day, report_key FROM report_versions WHERE (day, report_key) IN (${pairs(reports)})`,
  );
  return new Set(stored.map((s) => id(s.day, s.report_key)));
}

/** The worker's MarkFn; `keyPrefix`: processedKeyPrefix(). */
export function reprocessingMarks(deps: { redis: Redis; clickhouse: ClickHouseClient; keyPrefix: string }): MarkFn {
  const { redis, clickhouse, keyPrefix } = deps;
  return async (reports) => {
    if (reports.length === 0) return [];
    // One transaction in batch order: a report twice in one batch is found by its second processing.
    const multi = redis.multi();
    for (const r of reports) {
      const key = `${keyPrefix}${r.day}:${r.reportKey}`;
      multi
        .exists(key)
        .sadd(key, ...r.domains)
        .smembers(key)
        .expire(key, IN_FLIGHT_SECONDS);
    }
    const replies = await multi.exec();
    if (!replies) throw new Error('the transaction recording processings in Redis was aborted');
    const failed = replies.find(([err]) => err)?.[0];
    if (failed) throw failed;
    const inFlight = new Map<string, string[]>();
    const unseen: StoredReport[] = [];
    reports.forEach((r, i) => {
      const [, existed] = replies[i * 4]!;
      const [, members] = replies[i * 4 + 2]!;
      if (existed) inFlight.set(id(r.day, r.reportKey), members as string[]);
      else unseen.push(r);
    });
    const storedIds = await storedBefore(clickhouse, unseen);
    const again = reports.filter((r) => inFlight.has(id(r.day, r.reportKey)) || storedIds.has(id(r.day, r.reportKey)));
    if (again.length === 0) return [];
    // The domains of the versions stored so far: their rows under a domain this version lacks must be looked up too.
    const earlier = await rowsOf<{ day: string; report_key: string; policy_domain: string }>(
      clickhouse,
      `SELECT DISTINCT day, report_key, policy_domain FROM policy_days WHERE (day, report_key) IN (${pairs(again)})`,
    );
    const marks = new Map<string, { report: StoredReport; domains: Set<string> }>();
    for (const r of again) {
      const mark = marks.get(id(r.day, r.reportKey)) ?? {
        report: r,
        domains: new Set(inFlight.get(id(r.day, r.reportKey))),
      };
      for (const d of r.domains) mark.domains.add(d);
      marks.set(id(r.day, r.reportKey), mark);
    }
    for (const e of earlier) marks.get(id(e.day, e.report_key))?.domains.add(e.policy_domain);
    return [...marks.values()].flatMap(({ report, domains }) =>
      [...domains].map((d) => ({ policy_domain: d, day: report.day, report_key: report.reportKey })),
    );
  };
}
