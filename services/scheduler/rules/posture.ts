// Alert rule `posture`: what the live checks found wrong with a managed domain's setup (services/common/posture):
// its policy unreachable or invalid, an MX not covered, a certificate expired or expiring within 21 days, a policy
// changed without a new id, records missing or doubled. One alert per problem and day, however often it is checked.
import { toClickHouseDateTime } from '../../common/sql.ts';
import { type Candidate, type RuleContext, bounded, notAlerted, q } from './rule-kit.ts';

export async function posture({ db, sinceSql, previousRun }: RuleContext): Promise<Candidate[]> {
  // The checks since the previous evaluation (an hour's margin), or over the look-back on the first.
  const from = previousRun
    ? `toDateTime(${q(toClickHouseDateTime(new Date(previousRun.getTime() - 3600_000)))}, 'UTC')`
    : `toDateTime(${sinceSql})`;
  const rows = await db.rows<{
    domain: string;
    check_name: string;
    subject: string;
    day: string;
    worst: string;
    text: string;
  }>(
    `SELECT domain, check_name, subject, day, worst, text FROM
       (SELECT domain, check_name, subject, toDate(checked_at) AS day, argMax(severity, checked_at) AS worst,
               argMax(summary, checked_at) AS text
        FROM posture_checks WHERE checked_at >= ${from} AND severity != 'ok'
        GROUP BY domain, check_name, subject, day)
     WHERE 1 ${notAlerted('posture', ['domain', 'text', 'day'], ['policy_domain', 'title', 'day'])}
     ${bounded('day, domain, check_name, subject')}`,
  );
  return rows.map((r) => ({
    key: [r.domain, r.check_name, r.subject, r.day, r.text],
    rule: 'posture',
    severity: r.worst === 'critical' ? 'critical' : 'warning',
    policy_domain: r.domain,
    day: r.day,
    organization: '',
    result_type: `posture:${r.check_name}`,
    title: r.text,
    detail: JSON.stringify({ check: r.check_name, subject: r.subject }),
  }));
}
