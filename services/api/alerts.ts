// Alert rules over the aggregates, evaluated periodically by one API instance at a time (a BullMQ job scheduler), and the
// poller's view of them. Each alert's id is derived from what it is about, so it is created once however often
// the rule finds it; its `seq` orders it for `GET /v1/alerts?since=<cursor>`.
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { ClickHouseClient } from '../common/clickhouse.ts';
import type { Config } from '../common/config.ts';
import { quoteString, sqlInteger } from '../common/sql.ts';
import type { Principal } from './auth.ts';
import { domainScope, type Db } from './queries.ts';

export type AlertConfig = Pick<
  Config,
  | 'ALERT_RULES'
  | 'ALERT_FAILURE_RATE'
  | 'ALERT_MIN_SESSIONS'
  | 'ALERT_LOOKBACK_DAYS'
  | 'ALERT_REPORTER_DAYS'
  | 'ALERT_REPORTER_GRACE_DAYS'
>;

export interface Alert {
  alert_id: string;
  seq: number;
  rule: string;
  severity: 'critical' | 'warning' | 'info';
  policy_domain: string;
  day: string;
  organization: string;
  result_type: string;
  title: string;
  detail: string;
  created_at: string;
}

/** `key` is what the alert is about within its rule; with the rule it makes the alert's id. */
type Candidate = Omit<Alert, 'alert_id' | 'seq' | 'created_at'> & { key: string[] };

const q = quoteString;
const alertId = (parts: string[]): string =>
  createHash('sha256').update(parts.join('\u0000')).digest('hex').slice(0, 32);
const isoDay = (t: number): string => new Date(t).toISOString().slice(0, 10);

type RuleName = AlertConfig['ALERT_RULES'][number];

/** The most candidates one rule returns per evaluation; what is left is found by the next one. */
export const ALERT_MAX_PER_RULE = 1000;

/**
 * With bounded() below, a rule returns a bounded number of candidates and never those already stored, so however
 * much a hostile report makes it find, every evaluation makes progress and no row limit can stop it.
 */
function notAlerted(rule: RuleName, columns: string[], alertColumns: string[] = columns): string {
  return ` AND (${columns.join(', ')}) NOT IN (SELECT ${alertColumns.join(', ')} FROM alerts WHERE rule = ${q(rule)})`;
}
const bounded = (order: string): string => ` ORDER BY ${order} LIMIT ${ALERT_MAX_PER_RULE}`;

interface RuleContext {
  db: Db;
  config: AlertConfig;
  now: Date;
  /** `toDate('…')` of the first day looked at. */
  sinceSql: string;
}

const RULES: Record<RuleName, (ctx: RuleContext) => Promise<Candidate[]>> = {
  'failure-rate': async ({ db, config, sinceSql }) => {
    const out: Candidate[] = [];
    const rows = await db.rows<{
      policy_domain: string;
      day: string;
      successful_sessions: number;
      failed_sessions: number;
    }>(
      `SELECT policy_domain, day, successful_sessions, failed_sessions FROM domain_daily
       WHERE day >= ${sinceSql} AND successful_sessions + failed_sessions >= ${sqlInteger(config.ALERT_MIN_SESSIONS)}
         AND failed_sessions > ${Number(config.ALERT_FAILURE_RATE)} * (successful_sessions + failed_sessions)
         ${notAlerted('failure-rate', ['policy_domain', 'day'])}${bounded('day, policy_domain')}`,
    );
    for (const r of rows) {
      const pct = ((100 * r.failed_sessions) / (r.successful_sessions + r.failed_sessions)).toFixed(1);
      out.push({
        key: [r.policy_domain, r.day],
        rule: 'failure-rate',
        severity: 'warning',
        policy_domain: r.policy_domain,
        day: r.day,
        organization: '',
        result_type: '',
        title: `${pct}% of TLS sessions to ${r.policy_domain} failed on ${r.day}`,
        detail: JSON.stringify({
          successfulSessions: r.successful_sessions,
          failedSessions: r.failed_sessions,
          threshold: config.ALERT_FAILURE_RATE,
        }),
      });
    }
    return out;
  },
  'new-result-type': async ({ db, sinceSql }) => {
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
  },
  'enforce-failure': async ({ db, sinceSql }) => {
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
  },
  'reporter-stopped': async ({ db, config, now, sinceSql }) => {
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
  },
  'sts-policy-fetch-error': async ({ db, sinceSql }) => {
    const out: Candidate[] = [];
    const rows = await db.rows<{ policy_domain: string; day: string; failed: number; reasons: string[] }>(
      `SELECT policy_domain, day, sum(failed_session_count) AS failed,
              arrayFilter(x -> x != '', groupUniqArray(ifNull(failure_reason_code, ''))) AS reasons
       FROM failure_details_dedup WHERE day >= ${sinceSql} AND result_type = 'sts-policy-fetch-error'
         ${notAlerted('sts-policy-fetch-error', ['policy_domain', 'day'])}
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
  },
};

async function candidates(
  db: Db,
  config: AlertConfig,
  now: Date,
  onRuleError: (rule: string, err: unknown) => void,
): Promise<Candidate[]> {
  const since = isoDay(now.getTime() - config.ALERT_LOOKBACK_DAYS * 86400_000);
  const ctx: RuleContext = { db, config, now, sinceSql: `toDate(${q(since)})` };
  const out: Candidate[] = [];
  // Each rule alone: one that fails (ClickHouse, or data we did not foresee) leaves the others' alerts.
  for (const rule of new Set(config.ALERT_RULES)) {
    try {
      out.push(...(await RULES[rule](ctx)));
    } catch (err) {
      onRuleError(rule, err);
    }
  }
  return out;
}

/**
 * Reserves `count` sequence numbers and returns the first. The API's is an atomic Redis counter (alertSequence),
 * so no two evaluations ever give out one number twice.
 */
export type ReserveSeq = (count: number) => Promise<number>;

/**
 * An atomic counter in Redis, started (once, atomically) past the largest `seq` ClickHouse already holds, so it
 * carries on from alerts numbered before it existed.
 */
export function alertSequence(redis: Redis, key: string, db: Db): ReserveSeq {
  return async (count) => {
    if ((await redis.exists(key)) === 0) {
      const [row] = await db.rows<{ m: number }>('SELECT max(seq) AS m FROM alerts');
      await redis.set(key, String(row?.m ?? 0), 'NX');
    }
    return (await redis.incrby(key, count)) - count + 1;
  };
}

/**
 * Finds alerts and stores the new ones, numbered from `reserve`. Returns the new alerts. The API runs it as a BullMQ
 * scheduled job, one evaluation at a time across replicas (alert-scheduler.ts).
 */
export async function evaluateAlerts(
  db: Db,
  client: ClickHouseClient,
  config: AlertConfig,
  reserve: ReserveSeq,
  now = new Date(),
  onRuleError: (rule: string, err: unknown) => void = () => {},
): Promise<Alert[]> {
  const found = await candidates(db, config, now, onRuleError);
  if (found.length === 0) return [];
  const withIds = found.map((c) => ({ ...c, alert_id: alertId([c.rule, ...c.key]) }));
  const existing = new Set<string>();
  for (let i = 0; i < withIds.length; i += 1000) {
    const ids = withIds.slice(i, i + 1000).map((c) => q(c.alert_id));
    for (const r of await db.rows<{ alert_id: string }>(
      `SELECT DISTINCT alert_id FROM alerts WHERE alert_id IN (${ids.join(', ')})`,
    )) {
      existing.add(r.alert_id);
    }
  }
  const fresh = withIds.filter(
    (c, i) => !existing.has(c.alert_id) && withIds.findIndex((x) => x.alert_id === c.alert_id) === i,
  );
  if (fresh.length === 0) return [];
  let seq = (await reserve(fresh.length)) - 1;
  const createdAt = now.toISOString().slice(0, 19).replace('T', ' ');
  // Oldest first, so a poller meets alerts in the order of the days they are about.
  fresh.sort((a, b) => (a.day === b.day ? a.alert_id.localeCompare(b.alert_id) : a.day.localeCompare(b.day)));
  const alerts: Alert[] = fresh.map(({ key: _key, ...c }) => ({ ...c, seq: ++seq, created_at: createdAt }));
  await client.insert({ table: 'alerts', values: alerts, format: 'JSONEachRow' });
  return alerts;
}

export async function listAlerts(db: Db, principal: Principal, since: number, limit: number) {
  const rows = await db.rows<Alert>(
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
