import { Redis, type RedisOptions } from 'ioredis';

/**
 * Producer connections fail fast when Redis is unreachable (no offline queue): a receiver must answer 503/451
 * at once rather than buffer reports in memory. Worker connections retry forever, as BullMQ requires.
 */
export function createRedis(url: string, role: 'producer' | 'worker'): Redis {
  const common: RedisOptions = {
    connectTimeout: 5_000,
    // Reconnect quickly but not in a tight loop.
    retryStrategy: (times) => Math.min(times * 200, 2_000),
  };
  const options: RedisOptions =
    role === 'producer'
      ? { ...common, enableOfflineQueue: false, maxRetriesPerRequest: 1 }
      : { ...common, maxRetriesPerRequest: null, enableReadyCheck: true };
  return new Redis(url, options);
}

/** Closes a connection unless something (BullMQ closing its queue) already did. */
export async function closeRedis(connection: Redis): Promise<void> {
  if (connection.status === 'end' || connection.status === 'close') return;
  await connection.quit().catch(() => connection.disconnect());
}
