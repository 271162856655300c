// Alert rule `new-result-type`: a failure result type never seen before for a domain, over the whole history.
import { DETAIL_IDENTITY, currentRows } from '../../common/current-rows.ts';
import { type Candidate, type RuleContext, bounded, notAlerted, q } from './rule-kit.ts';

export async function newResultType({ db, sinceSql, daysSql }: RuleContext): Promise<Candidate[]> {
  const out: Candidate[] = [];
  // failure_types holds each domain's first day of each result type (one row per pair once merged): the pairs whose
  // first day is one of the days looked at are new, found without reading the history or the days one by one.
  const found = await db.rows<{ policy_domain: string; result_type: string; first_day: string }>(
    `SELECT policy_domain, result_type, day AS first_day FROM
       (SELECT policy_domain, result_type, min(first_day) AS day FROM failure_types GROUP BY policy_domain, result_type)
     WHERE day >= ${sinceSql} AND ${daysSql}${notAlerted('new-result-type', ['policy_domain', 'result_type'])}
     ${bounded('day, policy_domain, result_type')}`,
  );
  if (found.length === 0) return out;
  // Failed sessions of each since its first day, read by domain, from the reports' newest processing: a pair only an
  // older processing of a re-sent report had is not reported.
  const domains = `policy_domain IN (${[...new Set(found.map((r) => q(r.policy_domain)))].join(', ')})`;
  const failed = await db.rows<{ policy_domain: string; result_type: string; failed: number }>(
    `SELECT policy_domain, result_type, sum(failed_session_count) AS failed FROM (${currentRows({
      table: 'failure_details',
      identity: DETAIL_IDENTITY,
      columns: ['policy_domain', 'result_type', 'failed_session_count'],
      where: `(policy_domain, result_type) IN (${found.map((r) => `(${q(r.policy_domain)}, ${q(r.result_type)})`).join(', ')})`,
      days: `day >= ${sinceSql}`,
      domains,
    })}) GROUP BY policy_domain, result_type`,
  );
  const failedOf = new Map(failed.map((r) => [`${r.policy_domain}\u0000${r.result_type}`, r.failed]));
  for (const r of found) {
    const failedSessions = failedOf.get(`${r.policy_domain}\u0000${r.result_type}`);
    if (failedSessions === undefined) continue;
    out.push({
      key: [r.policy_domain, r.result_type],
      rule: 'new-result-type',
      severity: 'warning',
      policy_domain: r.policy_domain,
      day: r.first_day,
      organization: '',
      result_type: r.result_type,
      title: `New failure type ${r.result_type || '(none given)'} for ${r.policy_domain} since ${r.first_day}`,
      detail: JSON.stringify({ failedSessions }),
    });
  }
  return out;
}
