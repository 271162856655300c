// Retention for what nobody asked us to keep for ever: reject rows (with their raw bodies) after
// REJECTS_RETENTION_DAYS, and optionally the raw text of stored reports after RAW_REPORTS_RETENTION_DAYS. ClickHouse
// 18.16 has no TTL, so a job scheduled by BullMQ (one run at a time across schedulers) deletes them by mutation.
import type { Redis } from 'ioredis';
import type { ClickHouseClient } from '../common/clickhouse.ts';
import type { Config } from '../common/config.ts';
import type { Logger } from '../common/logger.ts';
import { startScheduledJob, type ScheduledJob } from '../common/scheduled-job.ts';
import { toClickHouseDateTime } from '../common/sql.ts';
import { quoteString } from '../common/clickhouse-compat.ts';

export type RetentionConfig = Pick<
  Config,
  | 'QUEUE_NAME'
  | 'REJECTS_RETENTION_DAYS'
  | 'RAW_REPORTS_RETENTION_DAYS'
  | 'RETENTION_INTERVAL_MS'
  | 'CLICKHOUSE_CLUSTER'
>;

const cutoff = (now: Date, days: number): string =>
  quoteString(toClickHouseDateTime(new Date(now.getTime() - days * 86400_000)));

/** The tables and their retention in days (0: keep for ever). */
const retained = (config: RetentionConfig): Array<[table: string, days: number]> => [
  ['rejects', config.REJECTS_RETENTION_DAYS],
  ['raw_reports', config.RAW_REPORTS_RETENTION_DAYS],
];

/**
 * One retention run: returns the statements it issued (ClickHouse applies them in the background). A mutation
 * rewrites parts, so one is issued only when a row is due.
 */
export async function applyRetention(client: ClickHouseClient, config: RetentionConfig, now = new Date()) {
  const issued: string[] = [];
  for (const [table, days] of retained(config)) {
    if (days === 0) continue;
    const due = `received_at < toDateTime(${cutoff(now, days)}, 'UTC')`;
    const result = await client.query({
      query: `SELECT count() AS n FROM ${table} WHERE ${due}`,
      format: 'JSONEachRow',
    });
    const [row] = await result.json<{ n: string | number }>();
    if (Number(row?.n ?? 0) === 0) continue;
    // On a cluster, the mutation goes to every shard's local table (a replica passes it to the others).
    const query = config.CLICKHOUSE_CLUSTER
      ? `ALTER TABLE ${table}_local ON CLUSTER ${config.CLICKHOUSE_CLUSTER} DELETE WHERE ${due}`
      : `ALTER TABLE ${table} DELETE WHERE ${due}`;
    await client.command({ query });
    issued.push(query);
  }
  return issued;
}

export const maintenanceQueueName = (queueName: string): string => `${queueName}-maintenance`;

/**
 * Applies retention every RETENTION_INTERVAL_MS as a BullMQ scheduled job (one run at a time across schedulers).
 */
export function startRetention(
  connection: Redis,
  client: ClickHouseClient,
  config: RetentionConfig,
  logger: Logger,
): ScheduledJob {
  return startScheduledJob(
    connection,
    maintenanceQueueName(config.QUEUE_NAME),
    'retention',
    config.RETENTION_INTERVAL_MS,
    async () => {
      const statements = await applyRetention(client, config);
      if (statements.length > 0) logger.info({ statements }, 'retention applied');
    },
    logger,
  );
}
