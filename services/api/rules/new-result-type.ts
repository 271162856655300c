// Alert rule `new-result-type`: a failure result type never seen before for a domain, over the whole history.
import { type Candidate, type RuleContext, bounded, notAlerted } from './rule-kit.ts';

export async function newResultType({ db, sinceSql }: RuleContext): Promise<Candidate[]> {
  const out: Candidate[] = [];
  // Over the whole history: "new" means never seen before for that domain.
  const rows = await db.rows<{ policy_domain: string; result_type: string; first_day: string; failed: number }>(
    `SELECT policy_domain, result_type, min(day) AS first_day, sum(failed_session_count) AS failed
     FROM failure_details_dedup GROUP BY policy_domain, result_type
     HAVING first_day >= ${sinceSql}${notAlerted('new-result-type', ['policy_domain', 'result_type'])}
     ${bounded('first_day, policy_domain, result_type')}`,
  );
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
