// Alert rule `reporter-stopped`: an organization that reported a domain daily for ALERT_REPORTER_DAYS, then nothing past the grace days.
import { sqlInteger } from '../../common/sql.ts';
import { type Candidate, type RuleContext, bounded, isoDay, notAlerted, q } from './rule-kit.ts';

export async function reporterStopped({ db, config, now, sinceSql, previousRun }: RuleContext): Promise<Candidate[]> {
  const out: Candidate[] = [];
  const n = config.ALERT_REPORTER_DAYS;
  const grace = (config.ALERT_REPORTER_GRACE_DAYS + 1) * 86400_000;
  // Last days that became "past the grace days" since the previous evaluation (and the day before, for the clock),
  // or since the look-back on the first.
  const from = previousRun
    ? `greatest(${sinceSql}, toDate(${q(isoDay(previousRun.getTime() - grace - 86400_000))}))`
    : sinceSql;
  const hi = `toDate(${q(isoDay(now.getTime() - grace))})`;
  // reporter_days holds every (day, organization, domain) reported. Candidates first: pairs seen since `from` but
  // not after `hi`; then, for those alone, their last day and whether the n days up to it all had a report.
  const rows = await db.rows<{ organization: string; policy_domain: string; last_day: string }>(
    `SELECT organization, policy_domain, max(day) AS last_day, groupUniqArray(day) AS days FROM reporter_days
     WHERE day >= ${from} - ${sqlInteger(n + 1)} AND (organization, policy_domain) IN
       (SELECT organization, policy_domain FROM reporter_days WHERE day >= ${from}
        GROUP BY organization, policy_domain HAVING max(day) <= ${hi})
     GROUP BY organization, policy_domain
     HAVING last_day <= ${hi} AND last_day >= ${from}
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
