// Alert rule `failure-rate`: a day on which more than ALERT_FAILURE_RATE of a domain's sessions failed (at least ALERT_MIN_SESSIONS).
import { sqlInteger } from '../../common/sql.ts';
import { perReport } from '../../common/current-rows.ts';
import { type Candidate, type RuleContext, bounded, notAlerted } from './rule-kit.ts';

export async function failureRate({ db, config, daysSql }: RuleContext): Promise<Candidate[]> {
  const out: Candidate[] = [];
  const rows = await db.rows<{
    policy_domain: string;
    report_day: string;
    successful_sessions: number;
    failed_sessions: number;
  }>(
    // Sessions counted as in domain_daily: the largest of a report's entries for a domain, summed over reports.
    `SELECT policy_domain, report_day, sum(s) AS successful_sessions, sum(f) AS failed_sessions
     FROM (${perReport({
       table: 'policy_days',
       // Only the domain-days with a failed session: the others cannot be over the threshold.
       where: `(day, policy_domain) IN (SELECT day, policy_domain FROM failing_domain_days WHERE ${daysSql})`,
       days: daysSql,
       by: ['policy_domain'],
       aggregates: ['any(day) AS report_day', 'max(successful_sessions) AS s', 'max(failed_sessions) AS f'],
     })})
     GROUP BY policy_domain, report_day
     HAVING successful_sessions + failed_sessions >= ${sqlInteger(config.ALERT_MIN_SESSIONS)}
       AND failed_sessions > ${Number(config.ALERT_FAILURE_RATE)} * (successful_sessions + failed_sessions)
       ${notAlerted('failure-rate', ['policy_domain', 'report_day'], ['policy_domain', 'day'])}
       ${bounded('report_day, policy_domain')}`,
  );
  for (const r of rows) {
    const pct = ((100 * r.failed_sessions) / (r.successful_sessions + r.failed_sessions)).toFixed(1);
    out.push({
      key: [r.policy_domain, r.report_day],
      rule: 'failure-rate',
      severity: 'warning',
      policy_domain: r.policy_domain,
      day: r.report_day,
      organization: '',
      result_type: '',
      title: `${pct}% of TLS sessions to ${r.policy_domain} failed on ${r.report_day}`,
      detail: JSON.stringify({
        successfulSessions: r.successful_sessions,
        failedSessions: r.failed_sessions,
        threshold: config.ALERT_FAILURE_RATE,
      }),
    });
  }
  return out;
}
