// The dashboard's reads beyond the JSON API's (queries.ts): each about one domain or one page of domains, from the
// current rows of the domain-sorted tables (current-rows.ts), so they cost what the page shows, not the history.
import { sqlInteger } from '../common/sql.ts';
import { addDays } from '../common/days.ts';
import { inList, quoteString } from '../common/clickhouse-compat.ts';
import type { Principal } from './auth.ts';
import { DETAIL_IDENTITY, POLICY_IDENTITY, currentRows, perReport, twinsOnce } from '../common/current-rows.ts';
import { days, domainScope, type Db, type Range } from './queries.ts';
import type {
  AlertRow,
  DaySpan,
  DetailSums,
  FailureDetailRow,
  PolicyResultRow,
  RowCount,
  SessionSums,
  Stored,
} from '../../schemas/rows.ts';

const q = quoteString;

export interface DomainTrend extends Stored<PolicyResultRow, 'policy_domain' | 'sts_mode' | 'sts_mx'> {
  /** Per day of the range with reports: [day, successful, failed]. */
  daily: Array<[string, number, number]>;
  organizations: string[];
}

/**
 * For a page of domains: daily sessions (counted once per report), reporters, the STS mode and MX last reported.
 * Each level names its aggregates anew: ClickHouse resolves an alias equal to a column below it recursively.
 */
export async function domainTrends(db: Db, domains: string[], range: Range): Promise<Map<string, DomainTrend>> {
  if (domains.length === 0) return new Map();
  const rows = await db.rows<DomainTrend & { days: string[]; ok: number[]; failed: number[] }>(
    `SELECT policy_domain, groupArray(report_day) AS days, groupArray(s) AS ok, groupArray(f) AS failed,
            groupUniqArrayArray(orgs) AS organizations,
            argMax(day_mode, if(day_mode = '', toDate(0), report_day)) AS sts_mode,
            argMax(day_mx, if(day_mode = '', toDate(0), report_day)) AS sts_mx
     FROM (SELECT policy_domain, report_day, sum(s) AS s, sum(f) AS f, groupUniqArray(org) AS orgs,
                  argMax(report_mode, report_mode != '') AS day_mode, argMax(report_mx, report_mode != '') AS day_mx
           FROM (${perReport({
             table: 'policy_results',
             days: days(range),
             domains: `policy_domain IN (${domains.map(q).join(', ')})`,
             by: ['policy_domain'],
             aggregates: [
               'any(day) AS report_day',
               'any(organization) AS org',
               'max(successful_sessions) AS s',
               'max(failed_sessions) AS f',
               "argMax(sts_mode, policy_type = 'sts') AS report_mode",
               "argMax(sts_mx, policy_type = 'sts') AS report_mx",
             ],
           })})
           GROUP BY policy_domain, report_day ORDER BY report_day)
     GROUP BY policy_domain`,
  );
  return new Map(
    rows.map((r) => [
      r.policy_domain,
      {
        ...r,
        daily: r.days.map((d, i): [string, number, number] => [d, Number(r.ok[i]), Number(r.failed[i])]),
      },
    ]),
  );
}

/** Failed sessions of a domain per day and result type (failure-detail counts, sts and tlsa twins once). */
export async function dailyFailuresByType(db: Db, domain: string, range: Range) {
  const details = currentRows({
    table: 'failure_details',
    identity: DETAIL_IDENTITY,
    columns: ['day', 'policy_type', 'result_type', 'failed_session_count'],
    days: days(range),
    domains: `policy_domain = ${q(domain)}`,
  });
  return await db.rows<Stored<FailureDetailRow, 'day' | 'result_type'> & Pick<DetailSums, 'failed'>>(
    `SELECT day, result_type, sum(failed_once) AS failed FROM (${twinsOnce(details, ['day', 'result_type'])})
     GROUP BY day, result_type ORDER BY day, result_type`,
  );
}

/** The failures reported at one receiving MX host over a period (the period's failed sessions, counted once). */
export interface MxFailures extends Pick<DetailSums, 'failed'> {
  receiving_mx_hostname: string | null;
  /** The last report day listing a failure there, and the result type with the most failed sessions. */
  last_day: string;
  top_result_type: string;
}

/** Each receiving MX host the domain's failure details name, most failed first (at most `limit`). */
export async function mxFailures(db: Db, domain: string, range: Range, limit: number): Promise<MxFailures[]> {
  const details = currentRows({
    table: 'failure_details',
    identity: DETAIL_IDENTITY,
    columns: ['day', 'policy_type', 'receiving_mx_hostname', 'result_type', 'failed_session_count'],
    days: days(range),
    domains: `policy_domain = ${q(domain)}`,
  });
  return await db.rows<MxFailures>(
    `SELECT receiving_mx_hostname, sum(typed) AS failed, toString(max(last)) AS last_day,
            argMax(result_type, typed) AS top_result_type
     FROM (SELECT receiving_mx_hostname, result_type, sum(failed_once) AS typed, max(day) AS last
           FROM (${twinsOnce(details, ['day', 'receiving_mx_hostname', 'result_type'])})
           GROUP BY receiving_mx_hostname, result_type)
     GROUP BY receiving_mx_hostname ORDER BY failed DESC, receiving_mx_hostname LIMIT ${sqlInteger(limit)}`,
  );
}

export interface PolicySeen
  extends Stored<PolicyResultRow, 'policy_type' | 'sts_mode' | 'sts_max_age' | 'sts_mx' | 'tlsa_records'>, DaySpan {
  organizations: string[];
  reports: number;
}

/** Each distinct policy reporters saw for the domain, with the first and last day it was reported. */
export async function policyHistory(db: Db, domain: string, range: Range): Promise<PolicySeen[]> {
  return await db.rows<PolicySeen>(
    `SELECT policy_type, sts_mode, sts_max_age, sts_mx, tlsa_records, min(day) AS first_day, max(day) AS last_day,
            groupUniqArray(organization) AS organizations, uniqExact(report_key) AS reports
     FROM (${currentRows({
       table: 'policy_results',
       identity: POLICY_IDENTITY,
       columns: ['day', 'organization', 'policy_type', 'sts_mode', 'sts_max_age', 'sts_mx', 'tlsa_records'],
       days: days(range),
       domains: `policy_domain = ${q(domain)}`,
     })})
     GROUP BY policy_type, sts_mode, sts_max_age, sts_mx, tlsa_records
     ORDER BY first_day, policy_type LIMIT 200`,
  );
}

export interface Readiness {
  /** Reports of the domain's sts policy in testing mode over the window. */
  testingReports: number;
  successful: number;
  failed: number;
  /** Who and where sessions failed under the testing policy: under enforce those senders would not deliver to that MX. */
  wouldFail: Array<
    Stored<FailureDetailRow, 'organization' | 'receiving_mx_hostname' | 'result_type'> & Pick<DetailSums, 'failed'>
  >;
}

/** What switching the domain's MTA-STS policy from testing to enforce would have cost over the window. */
export async function enforceReadiness(db: Db, domain: string, range: Range): Promise<Readiness> {
  const testing = currentRows({
    table: 'domain_policies',
    identity: POLICY_IDENTITY,
    columns: ['policy_index', 'successful_sessions', 'failed_sessions'],
    where: `policy_type = 'sts' AND sts_mode = 'testing'`,
    days: days(range),
    domains: `policy_domain = ${q(domain)}`,
  });
  const [[totals], wouldFail] = await Promise.all([
    db.rows<SessionSums>(
      `SELECT uniqExact(report_key) AS reports, sum(successful_sessions) AS successful, sum(failed_sessions) AS failed
       FROM (${testing})`,
    ),
    db.rows<Readiness['wouldFail'][number]>(
      `SELECT organization, receiving_mx_hostname, result_type, sum(failed_session_count) AS failed
       FROM (${currentRows({
         table: 'failure_details',
         identity: DETAIL_IDENTITY,
         columns: ['organization', 'receiving_mx_hostname', 'result_type', 'failed_session_count'],
         where: `policy_type = 'sts'`,
         days: days(range),
         domains: `policy_domain = ${q(domain)}`,
       })})
       WHERE (report_key, policy_index) IN (SELECT report_key, policy_index FROM (${testing}))
       GROUP BY organization, receiving_mx_hostname, result_type ORDER BY failed DESC LIMIT 100`,
    ),
  ]);
  return {
    testingReports: totals?.reports ?? 0,
    successful: totals?.successful ?? 0,
    failed: totals?.failed ?? 0,
    wouldFail,
  };
}

/** Who reports each domain: days with a report in the range, first and last day (reporter_days, by day). */
export async function reporters(db: Db, principal: Principal, range: Range, domain?: string) {
  return await db.rows<Stored<PolicyResultRow, 'organization' | 'policy_domain'> & DaySpan & { days: number }>(
    `SELECT organization, policy_domain, uniqExact(day) AS days, min(day) AS first_day, max(day) AS last_day
     FROM reporter_days WHERE ${days(range)}${domain ? ` AND policy_domain = ${q(domain)}` : ''}
       ${domainScope(principal, 'policy_domain')}
     GROUP BY organization, policy_domain ORDER BY policy_domain, organization LIMIT 1000`,
  );
}

/** The normalizer's flags (the quirks it met) per reporting organization, over reports of the range. */
/**
 * The flags of each (domain, reporter)'s reports in the range, from that domain's reports only (of the token's
 * domains, or of `domain`): a quirk one domain's reports carried is not another's.
 */
export async function reporterQuirks(
  db: Db,
  principal: Principal,
  organizations: string[],
  range: Range,
  domain?: string,
) {
  if (organizations.length === 0) return [];
  const only = domain ? ` AND policy_domain = ${q(domain)}` : '';
  return await db.rows<Stored<PolicyResultRow, 'policy_domain' | 'organization'> & { flag: string; reports: number }>(
    `SELECT policy_domain, organization, flag, uniqExact(report_key) AS reports
     FROM (SELECT day, report_key, organization, flag FROM report_days ARRAY JOIN flags AS flag
           WHERE ${days(range)} AND organization IN ${inList(organizations)}) AS flagged
     ALL INNER JOIN (SELECT day, report_key, policy_domain FROM policy_days
                     WHERE ${days(range)}${domainScope(principal, 'policy_domain')}${only}
                     GROUP BY day, report_key, policy_domain) AS covered USING (day, report_key)
     GROUP BY policy_domain, organization, flag ORDER BY policy_domain, organization, reports DESC, flag LIMIT 1000`,
  );
}

/** The newest alerts (a page's worth), for people; pollers use GET /v1/alerts with its cursor. */
export async function recentAlerts(db: Db, principal: Principal, limit: number) {
  return await db.rows<Omit<AlertRow, 'detail'>>(
    `SELECT alert_id, seq, rule, severity, policy_domain, day, organization, result_type, title, created_at
     FROM alerts WHERE 1 ${domainScope(principal, 'policy_domain')}
     ORDER BY seq DESC LIMIT 1 BY alert_id LIMIT ${sqlInteger(limit)}`,
  );
}

export interface DayBounds {
  first: string;
  last: string;
}

/**
 * The first and latest report day (not after `today`) of one domain, or of every domain the principal reads; none
 * without reports. The latest is looked for in the last weeks first: domain_days is sorted by day, so that reads a
 * few granules, and only an install whose reports stopped long ago scans the rest. `first` is read only for "all
 * time" (`withFirst`); otherwise it is the latest day.
 */
export async function reportDayBounds(
  db: Db,
  principal: Principal,
  domain: string | undefined,
  today: string,
  withFirst: boolean,
): Promise<DayBounds | undefined> {
  const [table, scope] = domain
    ? ['domain_policies', ` AND policy_domain = ${q(domain)}`]
    : ['domain_days', domainScope(principal, 'policy_domain')];
  const read = async (since: string | undefined): Promise<DayBounds | undefined> => {
    const [row] = await db.rows<RowCount & DaySpan>(
      `SELECT count() AS n, toString(min(day)) AS first_day, toString(max(day)) AS last_day FROM ${table}
       WHERE day <= toDate(${q(today)})${since ? ` AND day >= toDate(${q(since)})` : ''}${scope}`,
    );
    return row && Number(row.n) > 0 ? { first: row.first_day, last: row.last_day } : undefined;
  };
  const recent = withFirst ? undefined : await read(addDays(today, -21));
  const bounds = recent ?? (await read(undefined));
  return bounds && !withFirst ? { first: bounds.last, last: bounds.last } : bounds;
}
