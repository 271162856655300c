import type { Redis } from 'ioredis';
import type { ClickHouseClient } from './clickhouse.ts';

/** Readiness probes for /readyz: each answers true or false, never throws. */
export const redisAnswers = (redis: Redis): Promise<boolean> =>
  redis.ping().then(
    (r) => r === 'PONG',
    () => false,
  );

export const clickhouseAnswers = (clickhouse: ClickHouseClient): Promise<boolean> =>
  clickhouse.ping().then(
    (r) => r.success,
    () => false,
  );

export async function bothAnswer(redis: Redis, clickhouse: ClickHouseClient): Promise<boolean> {
  const [r, c] = await Promise.all([redisAnswers(redis), clickhouseAnswers(clickhouse)]);
  return r && c;
}
