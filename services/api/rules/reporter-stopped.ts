// Alert rule `reporter-stopped`: an organization that reported a domain daily for ALERT_REPORTER_DAYS, then nothing past the grace days.
import { sqlInteger } from '../../common/sql.ts';
import { type Candidate, type RuleContext, bounded, isoDay, notAlerted, q } from './rule-kit.ts';

export async function reporterStopped({ db, config, now, sinceSql }: RuleContext): Promise<Candidate[]> {
  const out: Candidate[] = [];
  const last = isoDay(now.getTime() - (config.ALERT_REPORTER_GRACE_DAYS + 1) * 86400_000);
  const n = config.ALERT_REPORTER_DAYS;
  const rows = await db.rows<{ organization: string; policy_domain: string; last_day: string }>(
    `SELECT organization, policy_domain, last_day FROM
       (SELECT organization, policy_domain, max(day) AS last_day, groupArray(day) AS days
        FROM (SELECT DISTINCT organization, policy_domain, day FROM policy_results_dedup
              WHERE day >= ${sinceSql} - ${sqlInteger(n + 1)})
        GROUP BY organization, policy_domain)
     WHERE last_day <= toDate(${q(last)}) AND last_day >= ${sinceSql}
       AND arrayCount(d -> d > last_day - ${sqlInteger(n)}, days) = ${sqlInteger(n)}
       ${notAlerted('reporter-stopped', ['organization', 'policy_domain', 'last_day'], ['organization', 'policy_domain', 'day'])}
     ${bounded('last_day, organization, policy_domain')}`,
  );
  for (const r of rows) {
    out.push({
      key: [r.organization, r.policy_domain, r.last_day],
      rule: 'reporter-stopped',
      severity: 'info',
      policy_domain: r.policy_domain,
      day: r.last_day,
      organization: r.organization,
      result_type: '',
      title: `${r.organization} reported ${r.policy_domain} daily, then stopped after ${r.last_day}`,
      detail: JSON.stringify({ days: n, graceDays: config.ALERT_REPORTER_GRACE_DAYS }),
    });
  }
  return out;
}
