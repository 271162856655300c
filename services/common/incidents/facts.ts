// The facts incidents are derived from (derive.ts), read from the current rows of the domain-sorted tables: failed
// sessions per day, result type, subject and sending IP, and each reporter's sessions per day. The same sessions
// listed under an sts and a tlsa policy of one report count once (the larger), as in the domain summary.
import { DETAIL_IDENTITY, currentRows, perReport, twinsOnce } from '../current-rows.ts';
import { inList, quoteString } from '../clickhouse-compat.ts';
import type { Db } from '../db.ts';
import { resumeKey, type FailureFact, type ReporterDay } from './derive.ts';
import { CHECK_SEVERITIES, type CheckSeverity, type PostureDay, type PostureRun } from './posture.ts';

/** Result types about the policy host, not an MX: their subject is mta-sts.<domain>. */
export const POLICY_SIDE = ['sts-policy-fetch-error', 'sts-policy-invalid', 'sts-webpki-invalid'];

/** Host names compare lower-case and without a trailing dot. */
const host = (column: string): string => `replaceRegexpOne(lower(ifNull(${column}, '')), '\\\\.$', '')`;

/** The receiving MX host, else its IP; the policy host for policy-side results; '' where the report names nothing. */
export const SUBJECT_SQL = `multiIf(result_type IN (${POLICY_SIDE.map(quoteString).join(', ')}),
  concat('mta-sts.', policy_domain), ${host('receiving_mx_hostname')} != '', ${host('receiving_mx_hostname')},
  ifNull(receiving_ip, ''))`;

export interface FactScope {
  /** First and last report day (inclusive). */
  from: string;
  to: string;
  /** Only these domains; every domain when undefined. */
  domains?: string[] | undefined;
}

function scopeSql(scope: FactScope): { days: string; domains: string | undefined } {
  return {
    days: `day >= toDate(${quoteString(scope.from)}) AND day <= toDate(${quoteString(scope.to)})`,
    domains: scope.domains ? `policy_domain IN ${inList(scope.domains)}` : undefined,
  };
}

/** The failure_details columns an incident's failures are read with: what SUBJECT_SQL and the twins need. */
export const FAILURE_COLUMNS = [
  'policy_domain',
  'day',
  'organization',
  'policy_type',
  'result_type',
  'failed_session_count',
  'sending_mta_ip',
  'receiving_mx_hostname',
  'receiving_ip',
];

/** Failed sessions per domain, day, result type, subject and sending IP. */
export async function failureFacts(db: Db, scope: FactScope): Promise<FailureFact[]> {
  const { days, domains } = scopeSql(scope);
  const details = currentRows({
    table: 'failure_details',
    identity: DETAIL_IDENTITY,
    columns: FAILURE_COLUMNS,
    days,
    domains,
  });
  const named = `SELECT policy_domain, day, organization, result_type, ${SUBJECT_SQL} AS subj,
      ifNull(sending_mta_ip, '') AS ip1, report_key, policy_type, failed_session_count FROM (${details})`;
  const rows = await db.rows<{
    domain: string;
    d: string;
    rt: string;
    subject: string;
    ip: string;
    failed: number;
    orgs: string[];
  }>(
    `SELECT policy_domain AS domain, toString(day) AS d, result_type AS rt, subj AS subject, ip1 AS ip,
            sum(failed_once) AS failed, groupUniqArray(organization) AS orgs
     FROM (${twinsOnce(named, ['policy_domain', 'day', 'result_type', 'subj', 'ip1', 'organization'])})
     GROUP BY policy_domain, day, result_type, subj, ip1`,
  );
  // Keyed by the day (of fixed length), then the problem's key (resumeKey: the domain and the result type after their
  // lengths, the subject last), as any of them but the day may hold any character a report sent. Reporters are
  // gathered in a set and sorted once: merged and sorted again per row, and keyed by a JSON array, an evaluation's
  // 100,000 rows took about 250 ms here, 160-180 ms so.
  const facts = new Map<string, { fact: FailureFact; orgs: Set<string> }>();
  for (const r of rows) {
    const key = `${r.d}${resumeKey(r.domain, r.rt, r.subject)}`;
    let found = facts.get(key);
    if (!found) {
      const fact = {
        domain: r.domain,
        day: r.d,
        resultType: r.rt,
        subject: r.subject,
        failed: 0,
        reporters: [],
        ips: [],
      };
      facts.set(key, (found = { fact, orgs: new Set() }));
    }
    const failed = Number(r.failed);
    found.fact.failed += failed;
    for (const org of r.orgs) found.orgs.add(org);
    found.fact.ips.push([r.ip, failed]);
  }
  return Array.from(facts.values(), ({ fact, orgs }) => ((fact.reporters = [...orgs].sort()), fact));
}

/** STS modes from the least strict: a day's mode is the strictest its reports showed (indexOf: 0 when unknown). */
const MODES = "['', 'none', 'testing', 'enforce']";

/** Each reporter's sessions per domain and day, and the STS mode its reports showed. */
export async function reporterDays(db: Db, scope: FactScope): Promise<ReporterDay[]> {
  const { days, domains } = scopeSql(scope);
  const rows = await db.rows<{ domain: string; d: string; org: string; ok: number; bad: number; m: string }>(
    `SELECT policy_domain AS domain, toString(report_day) AS d, report_org AS org, sum(s) AS ok, sum(f) AS bad,
            ${MODES}[max(indexOf(${MODES}, report_mode))] AS m
     FROM (${perReport({
       table: 'domain_policies',
       days,
       domains,
       by: ['policy_domain'],
       aggregates: [
         'any(day) AS report_day',
         'any(organization) AS report_org',
         'max(successful_sessions) AS s',
         'max(failed_sessions) AS f',
         "argMax(sts_mode, policy_type = 'sts') AS report_mode",
       ],
     })})
     GROUP BY policy_domain, report_day, report_org`,
  );
  return rows.map((r) => ({
    domain: r.domain,
    day: r.d,
    organization: r.org,
    successful: Number(r.ok),
    failed: Number(r.bad),
    mode: r.m,
  }));
}

const SEVERITIES = `[${CHECK_SEVERITIES.map(quoteString).join(', ')}]`;

/** The live checks' results per domain, check, subject and day, and each domain's last run of a day. */
export async function postureFacts(db: Db, scope: FactScope): Promise<{ days: PostureDay[]; runs: PostureRun[] }> {
  const where = [
    `checked_at >= toDateTime(toDate(${quoteString(scope.from)}), 'UTC')`,
    `checked_at < toDateTime(toDate(${quoteString(scope.to)}), 'UTC') + 86400`,
    ...(scope.domains ? [`domain IN ${inList(scope.domains)}`] : []),
  ].join(' AND ');
  // The summary of the last run that found a problem (ordered by a number: no argMax over tuples, clickhouse-compat),
  // and whether the day's last run has a `run` result (cut short).
  const [days, runs] = await Promise.all([
    db.rows<{ domain: string; d: string; c: string; s: string; worst: number; last_severity: string; text: string }>(
      `SELECT domain, toString(toDate(checked_at)) AS d, check_name AS c, subject AS s,
              max(indexOf(${SEVERITIES}, severity)) AS worst, argMax(severity, checked_at) AS last_severity,
              argMax(summary, (severity != 'ok') * 4294967296 + toUInt32(checked_at)) AS text
       FROM posture_checks WHERE ${where} GROUP BY domain, d, c, s`,
    ),
    db.rows<{ domain: string; d: string; cut: number }>(
      `SELECT domain, toString(toDate(checked_at)) AS d,
              argMax(check_name = 'run', toUInt32(checked_at) * 2 + (check_name = 'run')) AS cut
       FROM posture_checks WHERE ${where} GROUP BY domain, d`,
    ),
  ]);
  // indexOf in ClickHouse counts from 1.
  const severity = (rank: number): CheckSeverity => CHECK_SEVERITIES[Math.max(0, rank - 1)]!;
  return {
    days: days.map((r) => ({
      domain: r.domain,
      day: r.d,
      check: r.c,
      subject: r.s,
      worst: severity(Number(r.worst)),
      last: r.last_severity as CheckSeverity,
      summary: r.text,
    })),
    runs: runs.map((r) => ({ domain: r.domain, day: r.d, cut: Number(r.cut) === 1 })),
  };
}
