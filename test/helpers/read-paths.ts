// What the read-path tests share (test/integration/read-paths.test.ts on one server, test/e2e/cluster.test.ts on a
// cluster): reports with what makes counting hard, the figures their texts give, and every API read path and alert
// rule compared with the *_dedup views on the same data.
import { expect } from 'vitest';
import type { ClickHouseClient } from '../../services/common/clickhouse.ts';
import {
  domainDaily,
  domainSummary,
  failureBreakdown,
  getReport,
  listDomains,
  listReports,
  type Db,
} from '../../services/api/queries.ts';
import { FAILURE_DIMENSIONS } from '../../services/api/params.ts';
import { RULES } from '../../services/scheduler/rules/index.ts';
import type { AlertConfig, RuleContext } from '../../services/scheduler/rules/rule-kit.ts';
import { makeReport, rng } from '../../dev/report-mix.ts';
import { inLanes, queryRows } from './env.ts';

/** Comparisons in flight at once (each waits on its round trips; the order of the checks does not matter). */
const LANES = 6;

const all = { name: 'all', domains: undefined };
/** The days of readPathReports. */
export const range = { from: '2025-01-01', to: '2025-03-31' };

export interface Policy {
  policy: Record<string, unknown>;
  summary: { 'total-successful-session-count': number; 'total-failure-session-count': number };
  'failure-details'?: Array<Record<string, unknown>>;
}
export type Report = Record<string, unknown> & { 'report-id': string; 'organization-name': string; policies: Policy[] };

export function readPathReports(count: number, seed = 20261130): Report[] {
  const random = rng(seed);
  return Array.from({ length: count }, (_, i) => {
    const r = makeReport(random, i, { maxPolicies: 5, maxDetails: 4 }) as Report;
    // Fewer domains than the mix, so domains share reports and days.
    for (const p of r.policies) {
      const d = `dom${Math.floor(random() * 40)}.example`;
      p.policy['policy-domain'] = d;
      p.policy['mx-host'] = [`*.${d}`];
    }
    // Microsoft's shape on every fifth: the same sessions again under a tlsa entry for the same domain.
    if (i % 5 === 0)
      r.policies.push({
        ...structuredClone(r.policies[0]!),
        policy: { ...r.policies[0]!.policy, 'policy-type': 'tlsa' },
      });
    return r;
  });
}

/** The same identity re-sent with other content: one policy fewer, the first moved to moved<n>.example, more sessions. */
export function resent(report: Report, n: number): Report {
  const changed = structuredClone(report);
  if (changed.policies.length > 1) changed.policies.pop();
  changed.policies[0]!.policy['policy-domain'] = `moved${n % 3}.example`;
  changed.policies[0]!.summary['total-successful-session-count'] += 11;
  return changed;
}

/** Sessions per domain from the texts: per report the largest entry of the domain, summed over reports. */
export type Totals = Map<string, { successful: number; failed: number; reports: number }>;

export function expectedTotals(latest: Iterable<Report>): Totals {
  const out: Totals = new Map();
  for (const report of latest) {
    const perDomain = new Map<string, { s: number; f: number }>();
    for (const p of report.policies) {
      const d = String(p.policy['policy-domain']);
      const cur = perDomain.get(d) ?? { s: 0, f: 0 };
      perDomain.set(d, {
        s: Math.max(cur.s, p.summary['total-successful-session-count']),
        f: Math.max(cur.f, p.summary['total-failure-session-count']),
      });
    }
    for (const [d, v] of perDomain) {
      const t = out.get(d) ?? { successful: 0, failed: 0, reports: 0 };
      out.set(d, { successful: t.successful + v.s, failed: t.failed + v.f, reports: t.reports + 1 });
    }
  }
  return out;
}

const domains = async (ch: ClickHouseClient): Promise<string[]> =>
  (await queryRows<{ d: string }>(ch, 'SELECT DISTINCT policy_domain AS d FROM policy_results ORDER BY d')).map(
    (r) => r.d,
  );

/** The API's answers, then the views' answers to the same questions, for every domain and every report. */
export async function compareWithViews(ch: ClickHouseClient, db: Db, totals: Totals): Promise<void> {
  await inLanes(await domains(ch), LANES, async (domain) => {
    const summary = await domainSummary(db, domain, range);
    const expected = totals.get(domain) ?? { successful: 0, failed: 0, reports: 0 };
    expect({ domain, s: summary.successfulSessions, f: summary.failedSessions, r: summary.reports }).toEqual({
      domain,
      s: expected.successful,
      f: expected.failed,
      r: expected.reports,
    });
    const daily = (await domainDaily(db, domain, range)).days.filter((d) => d.reports > 0);
    const viewDaily = await queryRows<{
      day: string;
      successful_sessions: number;
      failed_sessions: number;
      reports: number;
    }>(
      ch,
      `SELECT day, successful_sessions, failed_sessions, reports FROM domain_daily
       WHERE policy_domain = '${domain}' AND day BETWEEN '${range.from}' AND '${range.to}' ORDER BY day`,
    );
    expect(daily.map((d) => [d.day, d.successfulSessions, d.failedSessions, d.reports])).toEqual(
      viewDaily.map((d) => [d.day, d.successful_sessions, d.failed_sessions, d.reports]),
    );
    for (const by of Object.keys(FAILURE_DIMENSIONS) as Array<keyof typeof FAILURE_DIMENSIONS>) {
      const got = await failureBreakdown(db, domain, range, by, 1000);
      const view = await queryRows<{ key: string | null; failed: number; details: number; reports: number }>(
        ch,
        // A report's sts and tlsa twins once: per report and key, the larger of its policy types' sums.
        `SELECT key, sum(f) AS failed, sum(n) AS details, uniqExact(report_key) AS reports
         FROM (SELECT report_key, key, max(tf) AS f, max(tn) AS n
               FROM (SELECT report_key, ${FAILURE_DIMENSIONS[by]} AS key, policy_type, sum(failed_session_count) AS tf,
                            count() AS tn
                     FROM failure_details_dedup
                     WHERE policy_domain = '${domain}' AND day BETWEEN '${range.from}' AND '${range.to}'
                     GROUP BY report_key, key, policy_type)
               GROUP BY report_key, key)
         GROUP BY key ORDER BY failed DESC, key`,
      );
      expect(got.buckets).toEqual(
        view.map((v) => ({ key: v.key, failedSessions: v.failed, details: v.details, reports: v.reports })),
      );
    }
    const listed = await listReports(db, all, range, { limit: 1000, domain });
    const viewKeys = await queryRows<{ report_key: string }>(
      ch,
      `SELECT report_key FROM reports_dedup WHERE report_key IN
         (SELECT report_key FROM policy_results_dedup WHERE policy_domain = '${domain}')
       ORDER BY day DESC, report_key DESC`,
    );
    expect(listed.reports.map((r) => r.reportKey)).toEqual(viewKeys.map((r) => r.report_key));
  });
  // The domain list, one page at a time, against domain_daily's latest day per domain.
  const pages: Array<{ domain: string; latestDay: string; successfulSessions: number; reports: number }> = [];
  let cursor: { domain: string } | undefined;
  for (;;) {
    const page = await listDomains(db, all, range, 0.05, { limit: 7, ...(cursor ? { cursor } : {}) });
    pages.push(...page.domains);
    if (!page.next) break;
    // The cursor, not the last domain shown: a page may leave out a domain all of whose reports moved away.
    cursor = JSON.parse(Buffer.from(page.next, 'base64url').toString()) as { domain: string };
  }
  const viewDomains = await queryRows<{
    policy_domain: string;
    latest_day: string;
    successful: number;
    reports: number;
  }>(
    ch,
    `SELECT policy_domain, max(day) AS latest_day, argMax(successful_sessions, day) AS successful,
            argMax(reports, day) AS reports
     FROM domain_daily WHERE day BETWEEN '${range.from}' AND '${range.to}' GROUP BY policy_domain ORDER BY policy_domain`,
  );
  expect(pages.map((d) => [d.domain, d.latestDay, d.successfulSessions, d.reports])).toEqual(
    viewDomains.map((d) => [d.policy_domain, d.latest_day, d.successful, d.reports]),
  );
  // Every report in full, against the views' rows of it.
  const viewReports = await queryRows<Record<string, unknown> & { report_key: string }>(
    ch,
    'SELECT * FROM reports_dedup',
  );
  await inLanes(viewReports, LANES, async (row) => {
    const got = await getReport(db, all, row.report_key, { detailLimit: 1000 });
    expect(got?.report).toEqual(row);
    const policies = await queryRows<{ policy_index: number; policy_domain: string; successful_sessions: number }>(
      ch,
      `SELECT policy_index, policy_domain, successful_sessions FROM policy_results_dedup
       WHERE report_key = '${row.report_key}' ORDER BY policy_index`,
    );
    expect(
      got!.policies.map((p) => [p.policy_index, p.policy_domain, (p as Record<string, unknown>).successful_sessions]),
    ).toEqual(policies.map((p) => [p.policy_index, p.policy_domain, p.successful_sessions]));
    const [details] = await queryRows<{ n: number }>(
      ch,
      `SELECT count() AS n FROM failure_details_dedup WHERE report_key = '${row.report_key}'`,
    );
    expect(got!.policies.reduce((a, p) => a + p.failureDetails.length, 0)).toBe(details!.n);
  });
  // The report list without a domain, page by page.
  const keys: string[] = [];
  let after: { day: string; key: string } | undefined;
  for (;;) {
    const page = await listReports(db, all, range, { limit: 25, ...(after ? { cursor: after } : {}) });
    keys.push(...page.reports.map((r) => r.reportKey));
    const last = page.reports.at(-1);
    if (!page.next || !last) break;
    after = { day: last.day, key: last.reportKey };
  }
  expect(keys).toEqual(
    (
      await queryRows<{ report_key: string }>(
        ch,
        'SELECT report_key FROM reports_dedup ORDER BY day DESC, report_key DESC',
      )
    ).map((r) => r.report_key),
  );
}

/** Each alert rule over every day, against the same question asked of the views. */
export async function compareRulesWithViews(ch: ClickHouseClient, db: Db, config: AlertConfig): Promise<void> {
  const ctx: RuleContext = {
    db,
    config: {
      ...config,
      ALERT_MIN_SESSIONS: 1,
      ALERT_FAILURE_RATE: 0.01,
      ALERT_REPORTER_DAYS: 2,
      ALERT_REPORTER_GRACE_DAYS: 1,
    },
    now: new Date('2025-03-05T12:00:00Z'),
    sinceSql: "toDate('2024-12-01')",
    daysSql: "day >= toDate('2024-12-01')",
    previousRun: undefined,
  };
  const found = async (rule: keyof typeof RULES): Promise<string[]> =>
    (await RULES[rule](ctx)).map((c) => c.key.join('|')).sort();
  const view = async (sql: string): Promise<string[]> =>
    (await queryRows<{ k: string }>(ch, sql)).map((r) => r.k).sort();
  expect(await found('failure-rate')).toEqual(
    await view(`SELECT concat(policy_domain, '|', toString(day)) AS k FROM domain_daily
                WHERE successful_sessions + failed_sessions >= 1 AND failed_sessions > 0.01 * (successful_sessions + failed_sessions)`),
  );
  expect(await found('enforce-failure')).toEqual(
    await view(`SELECT DISTINCT concat(policy_domain, '|', toString(day)) AS k FROM policy_results_dedup
                WHERE sts_mode = 'enforce' AND failed_sessions > 0`),
  );
  expect(await found('new-result-type')).toEqual(
    await view(`SELECT DISTINCT concat(policy_domain, '|', result_type) AS k FROM failure_details_dedup`),
  );
  const failing = await found('failure-rate');
  expect(failing.length).toBeGreaterThan(10);
}
