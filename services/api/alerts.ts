// The alert evaluation (the rules are in rules/, one module each), run by one API instance at a time (a BullMQ
// job scheduler), and the poller's view of the alerts. Each alert's id is derived from what it is about, so it is
// created once however often the rule finds it; its `seq` orders it for `GET /v1/alerts?since=<cursor>`.
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { ClickHouseClient } from '../common/clickhouse.ts';
import { sqlInteger } from '../common/sql.ts';
import type { Principal } from './auth.ts';
import { domainScope, type Db } from './queries.ts';
import { RULES } from './rules/index.ts';
import { isoDay, q, type Alert, type AlertConfig, type Candidate, type RuleContext } from './rules/rule-kit.ts';

export { ALERT_MAX_PER_RULE, type Alert, type AlertConfig } from './rules/rule-kit.ts';

const alertId = (parts: string[]): string =>
  createHash('sha256').update(parts.join('\u0000')).digest('hex').slice(0, 32);

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
 * scheduled job, one evaluation at a time across replicas (services/common/scheduled-job.ts).
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
