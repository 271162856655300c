// Alert rule `new-result-type`: a failure result type never seen before for a domain, over the whole history.
import { DETAIL_IDENTITY, currentRows } from '../current-rows.ts';
import { type Candidate, type RuleContext, bounded, notAlerted, q } from './rule-kit.ts';

export async function newResultType({ db, sinceSql, daysSql }: RuleContext): Promise<Candidate[]> {
  const out: Candidate[] = [];
  // The types on the day looked at, then their first day by key in failure_types (each domain's first day of each
  // result type): "new" means never seen before for that domain, without reading the history.
  const seen = currentRows({
    table: 'failure_days',
    identity: DETAIL_IDENTITY,
    columns: ['policy_domain', 'result_type'],
    where: daysSql,
  });
  const found = await db.rows<{ policy_domain: string; result_type: string; first_day: string }>(
    `SELECT policy_domain, result_type, min(first_day) AS first_day FROM failure_types
     WHERE (policy_domain, result_type) IN (SELECT DISTINCT policy_domain, result_type FROM (${seen}))
     GROUP BY policy_domain, result_type
     HAVING first_day >= ${sinceSql}${notAlerted('new-result-type', ['policy_domain', 'result_type'])}
     ${bounded('first_day, policy_domain, result_type')}`,
  );
  if (found.length === 0) return out;
  // Failed sessions of each since its first day, read by domain.
  const failed = await db.rows<{ policy_domain: string; result_type: string; failed: number }>(
    `SELECT policy_domain, result_type, sum(failed_session_count) AS failed FROM (${currentRows({
      table: 'failure_details',
      identity: DETAIL_IDENTITY,
      columns: ['policy_domain', 'result_type', 'failed_session_count'],
      where: `policy_domain IN (${[...new Set(found.map((r) => q(r.policy_domain)))].join(', ')}) AND day >= ${sinceSql}
        AND (policy_domain, result_type) IN (${found.map((r) => `(${q(r.policy_domain)}, ${q(r.result_type)})`).join(', ')})`,
    })}) GROUP BY policy_domain, result_type`,
  );
  const failedOf = new Map(failed.map((r) => [`${r.policy_domain}\u0000${r.result_type}`, r.failed]));
  const rows = found.map((r) => ({ ...r, failed: failedOf.get(`${r.policy_domain}\u0000${r.result_type}`) ?? 0 }));
  for (const r of rows) {
    out.push({
      key: [r.policy_domain, r.result_type],
      rule: 'new-result-type',
      severity: 'warning',
      policy_domain: r.policy_domain,
      day: r.first_day,
      organization: '',
      result_type: r.result_type,
      title: `New failure type ${r.result_type || '(none given)'} for ${r.policy_domain} since ${r.first_day}`,
      detail: JSON.stringify({ failedSessions: r.failed }),
    });
  }
  return out;
}
