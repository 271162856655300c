// The alert evaluation (the rules are in rules/, one module each), run by one scheduler at a time (a BullMQ job
// scheduler). Each alert's id is derived from what it is about, so it is
// created once however often the rule finds it; its `seq` orders it for `GET /v1/alerts?since=<cursor>`.
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { ALERT_COLUMNS } from '../../schemas/rows.ts';
import { insertTsv, type ClickHouseClient } from '../common/clickhouse.ts';
import { sqlInteger, toClickHouseDateTime } from '../common/sql.ts';
import { insertMarginSeconds } from './insert-margin.ts';
import type { Queue } from 'bullmq';
import type { Db } from '../common/db.ts';
import type { Logger } from '../common/logger.ts';
import { startScheduledJob, type ScheduledJob } from '../common/scheduled-job.ts';
import { enqueueFeed, type WebhookJob } from './webhooks.ts';
import { RULES } from './rules/index.ts';
import {
  ALERT_MAX_PER_RULE,
  isoDay,
  q,
  type Alert,
  type AlertConfig,
  type Candidate,
  type RuleContext,
  type RuleName,
} from './rules/rule-kit.ts';

export { ALERT_MAX_PER_RULE, type Alert, type AlertConfig } from './rules/rule-kit.ts';

const alertId = (parts: string[]): string =>
  createHash('sha256').update(parts.join('\u0000')).digest('hex').slice(0, 32);

async function candidates(
  db: Db,
  config: AlertConfig,
  now: Date,
  onRuleError: (rule: string, err: unknown) => void,
  previous: string | undefined,
): Promise<{ found: Candidate[]; complete: boolean }> {
  const since = isoDay(now.getTime() - config.ALERT_LOOKBACK_DAYS * 86400_000);
  const sinceSql = `toDate(${q(since)})`;
  const days = await daysToEvaluate(db, sinceSql, previous, insertMarginSeconds(config));
  const ctx: RuleContext = {
    db,
    config,
    now,
    sinceSql,
    daysSql: '0',
    previousRun: previous ? new Date(`${previous.replace(' ', 'T')}Z`) : undefined,
  };
  const found: Candidate[] = [];
  let complete = true;
  // The rules side by side, each alone: one that fails (ClickHouse, or data we did not foresee) leaves the others'
  // alerts. Each reads its own small rows, so together they wait on ClickHouse once, not once per rule.
  const rules = [...new Set(config.ALERT_RULES)];
  const results = await Promise.allSettled(rules.map((rule) => runRule(rule, ctx, days)));
  for (const [i, result] of results.entries()) {
    if (result.status === 'fulfilled') {
      found.push(...result.value);
      // Stopped at its bound: the days after are looked at again next time, new reports or not.
      if (result.value.length >= ALERT_MAX_PER_RULE) complete = false;
    } else {
      complete = false;
      onRuleError(rules[i]!, result.reason);
    }
  }
  return { found, complete };
}

/**
 * Rules that read a table of their own (reporter_days, failure_types, posture_checks) run once over every day to
 * evaluate; the others read what reports said, one day at a time.
 */
const WINDOWED: ReadonlySet<RuleName> = new Set(['reporter-stopped', 'new-result-type', 'posture']);

/**
 * One rule over the days to evaluate, a day per query (however long the look-back, a query holds one day's reports
 * in memory), until it found ALERT_MAX_PER_RULE candidates; the next evaluation finds the rest.
 */
async function runRule(rule: RuleName, ctx: RuleContext, days: string[]): Promise<Candidate[]> {
  if (WINDOWED.has(rule)) {
    const daysSql = days.length > 0 ? `day IN (${days.map((d) => `toDate(${q(d)})`).join(', ')})` : '0';
    return await RULES[rule]({ ...ctx, daysSql });
  }
  const out: Candidate[] = [];
  for (const day of days) {
    out.push(...(await RULES[rule]({ ...ctx, daysSql: `day = toDate(${q(day)})` })));
    if (out.length >= ALERT_MAX_PER_RULE) break;
  }
  return out;
}

/**
 * The days since `sinceSql` with reports; after an evaluation, only those that received reports since (ClickHouse's
 * clock), less the insert margin (insert-margin.ts, shared with the incident evaluation).
 */
export async function daysToEvaluate(
  db: Db,
  sinceSql: string,
  previous: string | undefined,
  marginSeconds: number,
): Promise<string[]> {
  const fresh = previous ? ` AND inserted_at >= toDateTime(${q(previous)}, 'UTC') - ${sqlInteger(marginSeconds)}` : '';
  const rows = await db.rows<{ day: string }>(
    `SELECT DISTINCT day FROM ingest_days WHERE day >= ${sinceSql}${fresh} ORDER BY day`,
  );
  return rows.map((r) => r.day);
}

/**
 * Where the evaluator keeps the start of its last complete evaluation (ClickHouse's clock, `YYYY-MM-DD hh:mm:ss`),
 * so the next one reads only the days that received reports since. The scheduler's is a Redis key (alertWatermark).
 */
export interface AlertWatermark {
  read(): Promise<string | undefined>;
  write(at: string): Promise<void>;
}

export function alertWatermark(redis: Redis, key: string): AlertWatermark {
  return {
    read: async () => (await redis.get(key)) ?? undefined,
    write: async (at) => {
      await redis.set(key, at);
    },
  };
}

/**
 * Reserves `count` sequence numbers and returns the first. The scheduler's is an atomic Redis counter (alertSequence),
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
 * Finds alerts and stores the new ones, numbered from `reserve`. Returns the new alerts. The scheduler runs it as a
 * BullMQ scheduled job, one evaluation at a time across replicas (services/common/scheduled-job.ts).
 */
export async function evaluateAlerts(
  db: Db,
  client: ClickHouseClient,
  config: AlertConfig,
  reserve: ReserveSeq,
  now = new Date(),
  onRuleError: (rule: string, err: unknown) => void = () => {},
  watermark?: AlertWatermark,
): Promise<Alert[]> {
  const [start] = await db.rows<{ at: string }>("SELECT toString(now(), 'UTC') AS at");
  const { found, complete } = await candidates(db, config, now, onRuleError, await watermark?.read());
  const alerts = await storeAlerts(db, client, found, reserve, now);
  // Only once every rule ran and its alerts are stored: after a failure the next evaluation starts from the same point.
  if (complete && start) await watermark?.write(start.at);
  return alerts;
}

/** Alert ids per look-up of those stored already (5,000 stay within max_query_size), and look-ups side by side. */
const ID_BATCH = 5_000;
const PARALLEL_LOOKUPS = 2;

/** Stores the candidates not stored before, numbered from `reserve`; returns them (oldest day first). */
export async function storeAlerts(
  db: Db,
  client: ClickHouseClient,
  found: Candidate[],
  reserve: ReserveSeq,
  now: Date,
): Promise<Alert[]> {
  return (await storeCandidates(db, client, found, reserve, now)).map((s) => s.alert);
}

/** storeAlerts, each new alert with the candidate it was made of. */
export async function storeCandidates<C extends Candidate>(
  db: Db,
  client: ClickHouseClient,
  found: C[],
  reserve: ReserveSeq,
  now: Date,
): Promise<Array<{ alert: Alert; candidate: C }>> {
  if (found.length === 0) return [];
  const ids = found.map((c) => alertId([c.rule, ...c.key]));
  // Which are stored already: a few large look-ups side by side (the ids are hashes, so each look-up reads granules
  // all over the table: fewer, larger ones read each granule fewer times; 5,000 ids stay within max_query_size).
  const existing = new Set<string>();
  const batches: string[][] = [];
  for (let i = 0; i < ids.length; i += ID_BATCH) batches.push(ids.slice(i, i + ID_BATCH).map(q));
  for (let i = 0; i < batches.length; i += PARALLEL_LOOKUPS) {
    const known = await Promise.all(
      batches
        .slice(i, i + PARALLEL_LOOKUPS)
        .map((ids) =>
          db.rows<{ alert_id: string }>(`SELECT DISTINCT alert_id FROM alerts WHERE alert_id IN (${ids.join(', ')})`),
        ),
    );
    for (const r of known.flat()) existing.add(r.alert_id);
  }
  // The first of each id not stored yet (a Set: an evaluation may find tens of thousands), oldest day first, so a
  // poller meets alerts in the order of the days they are about. Sorted by one string per alert (the day, then the
  // id): comparing the two fields in each comparison took 7-10x as long here (100-185 ms for 16,000 alerts).
  const fresh: Array<{ order: string; i: number }> = [];
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    if (existing.has(id)) continue;
    existing.add(id);
    fresh.push({ order: `${found[i]!.day}\0${id}`, i });
  }
  if (fresh.length === 0) return [];
  fresh.sort((a, b) => (a.order < b.order ? -1 : a.order > b.order ? 1 : 0));
  const first = await reserve(fresh.length);
  const createdAt = toClickHouseDateTime(now);
  const stored = fresh.map(({ i }, n) => {
    const c = found[i]!;
    const alert: Alert = {
      alert_id: ids[i]!,
      seq: first + n,
      rule: c.rule,
      severity: c.severity,
      policy_domain: c.policy_domain,
      day: c.day,
      organization: c.organization,
      result_type: c.result_type,
      title: c.title,
      detail: c.detail,
      created_at: createdAt,
    };
    return { alert, candidate: c };
  });
  await insertTsv(
    client,
    'alerts',
    ALERT_COLUMNS,
    stored.map((s) => s.alert),
  );
  return stored;
}

/**
 * Evaluates the rules every ALERT_EVAL_INTERVAL_MS (one evaluation at a time across schedulers, so alerts are found
 * and numbered once) and hands each new alert to the webhook queue.
 */
export function startAlertEvaluation(
  config: AlertConfig & { QUEUE_NAME: string; ALERT_EVAL_INTERVAL_MS: number; ALERT_WEBHOOK_URLS: string[] },
  deps: { redis: Redis; clickhouse: ClickHouseClient; db: Db; hooks: Queue<WebhookJob>; logger: Logger },
): ScheduledJob {
  const { redis, clickhouse, db, hooks, logger } = deps;
  const reserve = alertSequence(redis, `${config.QUEUE_NAME}:alert-seq`, db);
  const watermark = alertWatermark(redis, `${config.QUEUE_NAME}:alert-watermark`);
  const evaluateOnce = async (): Promise<void> => {
    const onError = (rule: string, err: unknown): void =>
      logger.error({ err, rule }, 'alert rule failed; the other rules ran');
    const alerts = await evaluateAlerts(db, clickhouse, config, reserve, new Date(), onError, watermark);
    if (alerts.length === 0) return;
    logger.info({ alerts: alerts.length }, 'new alerts');
    await enqueueFeed(hooks, config.ALERT_WEBHOOK_URLS, alerts);
  };
  return startScheduledJob(
    redis,
    `${config.QUEUE_NAME}-alert-evaluation`,
    'alert-evaluation',
    config.ALERT_EVAL_INTERVAL_MS,
    evaluateOnce,
    logger,
  );
}
