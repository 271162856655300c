// Alert rule `enforce-failure`: any failed session under an MTA-STS policy in enforce mode. Under enforce a sender
// does not deliver over a failed session: it tries another MX or retries later (RFC 8461 §5), so the mail was delayed
// or went elsewhere; it bounced only if every MX failed, which the reports do not say.
import { POLICY_IDENTITY, currentRows } from '../../common/current-rows.ts';
import { type Candidate, type RuleContext, bounded, notAlerted } from './rule-kit.ts';

export async function enforceFailure({ db, daysSql }: RuleContext): Promise<Candidate[]> {
  const out: Candidate[] = [];
  const rows = await db.rows<{ policy_domain: string; day: string; failed: number; organizations: string[] }>(
    `SELECT policy_domain, day, sum(failed_sessions) AS failed, groupUniqArray(organization) AS organizations
     FROM (${currentRows({
       table: 'policy_days',
       identity: POLICY_IDENTITY,
       columns: ['policy_domain', 'day', 'failed_sessions', 'organization'],
       where: `sts_mode = 'enforce' AND failed_sessions > 0`,
       days: daysSql,
     })})
     WHERE 1 ${notAlerted('enforce-failure', ['policy_domain', 'day'])}
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
      title: `${Number(r.failed).toLocaleString('en-US')} session(s) to ${r.policy_domain} failed under MTA-STS enforce on ${r.day}: not delivered over those sessions (the senders retry or use another MX)`,
      detail: JSON.stringify({ failedSessions: r.failed, organizations: r.organizations }),
    });
  }
  return out;
}
