// The pollers' view of the alerts the scheduler finds (services/scheduler/alert-evaluation.ts): after a cursor,
// oldest first, within a token's domains.
import { sqlInteger } from '../common/sql.ts';
import type { AlertRow } from '../../schemas/rows.ts';
import type { Principal } from './auth.ts';
import { domainScope, type Db } from './queries.ts';

export async function listAlerts(db: Db, principal: Principal, since: number, limit: number) {
  const rows = await db.rows<AlertRow>(
    `SELECT * FROM alerts_dedup WHERE seq > ${sqlInteger(since)}${domainScope(principal, 'policy_domain')}
     ORDER BY seq LIMIT ${sqlInteger(limit)}`,
  );
  // The cursor moves past what was returned; where nothing was, it stays, so no alert is ever skipped.
  const next = rows.length > 0 ? rows[rows.length - 1]!.seq : since;
  return {
    alerts: rows.map((r) => ({
      id: r.alert_id,
      seq: r.seq,
      rule: r.rule,
      severity: r.severity,
      domain: r.policy_domain,
      day: r.day,
      organization: r.organization || undefined,
      resultType: r.result_type || undefined,
      title: r.title,
      detail: JSON.parse(r.detail || '{}') as unknown,
      createdAt: r.created_at,
    })),
    next: String(next),
  };
}
