// Alert rule `sts-policy-fetch-error`: Senders could not fetch the domain's MTA-STS policy on a day.
import { DETAIL_IDENTITY, currentRows } from '../../common/current-rows.ts';
import { type Candidate, type RuleContext, bounded, notAlerted } from './rule-kit.ts';

export async function stsPolicyFetchError({ db, daysSql }: RuleContext): Promise<Candidate[]> {
  const out: Candidate[] = [];
  const rows = await db.rows<{ policy_domain: string; day: string; failed: number; reasons: string[] }>(
    `SELECT policy_domain, day, sum(failed_session_count) AS failed,
            arrayFilter(x -> x != '', groupUniqArray(ifNull(failure_reason_code, ''))) AS reasons
     FROM (${currentRows({
       table: 'failure_days',
       identity: DETAIL_IDENTITY,
       columns: ['policy_domain', 'day', 'failed_session_count', 'failure_reason_code'],
       where: `result_type = 'sts-policy-fetch-error'`,
       days: daysSql,
     })})
     WHERE 1 ${notAlerted('sts-policy-fetch-error', ['policy_domain', 'day'])}
     GROUP BY policy_domain, day${bounded('day, policy_domain')}`,
  );
  for (const r of rows) {
    out.push({
      key: [r.policy_domain, r.day],
      rule: 'sts-policy-fetch-error',
      severity: 'warning',
      policy_domain: r.policy_domain,
      day: r.day,
      organization: '',
      result_type: 'sts-policy-fetch-error',
      title: `Senders could not fetch the MTA-STS policy of ${r.policy_domain} on ${r.day}`,
      detail: JSON.stringify({ failedSessions: r.failed, reasons: r.reasons.slice(0, 10) }),
    });
  }
  return out;
}
