// Alert rule `enforce-failure`: any failed session under an MTA-STS policy in enforce mode: mail was not delivered.
import { type Candidate, type RuleContext, bounded, notAlerted } from './rule-kit.ts';

export async function enforceFailure({ db, sinceSql }: RuleContext): Promise<Candidate[]> {
  const out: Candidate[] = [];
  const rows = await db.rows<{ policy_domain: string; day: string; failed: number; organizations: string[] }>(
    `SELECT policy_domain, day, sum(failed_sessions) AS failed, groupUniqArray(organization) AS organizations
     FROM policy_results_dedup WHERE day >= ${sinceSql} AND sts_mode = 'enforce' AND failed_sessions > 0
       ${notAlerted('enforce-failure', ['policy_domain', 'day'])}
     GROUP BY policy_domain, day${bounded('day, policy_domain')}`,
  );
  for (const r of rows) {
    out.push({
      key: [r.policy_domain, r.day],
      rule: 'enforce-failure',
      severity: 'critical',
      policy_domain: r.policy_domain,
      day: r.day,
      organization: '',
      result_type: '',
      title: `Mail to ${r.policy_domain} was not delivered on ${r.day}: ${r.failed} session(s) failed under MTA-STS enforce`,
      detail: JSON.stringify({ failedSessions: r.failed, organizations: r.organizations }),
    });
  }
  return out;
}
