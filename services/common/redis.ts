import { readFileSync } from 'node:fs';
import { Redis, type RedisOptions } from 'ioredis';
import type { Config } from './config.ts';

/** Where Redis is: one server (its URL), or the master a set of Sentinels names (and the URL's credentials). */
export interface RedisTarget {
  url: string;
  sentinels: Array<{ host: string; port: number }>;
  masterName: string;
  sentinelPassword: string;
  sentinelTls: boolean;
  /** CAs to trust for TLS (a PEM file's path); the system's when empty. */
  tlsCaFile: string;
}

export const redisTarget = (
  c: Pick<
    Config,
    | 'REDIS_URL'
    | 'REDIS_SENTINELS'
    | 'REDIS_SENTINEL_MASTER'
    | 'REDIS_SENTINEL_PASSWORD'
    | 'REDIS_SENTINEL_TLS'
    | 'REDIS_TLS_CA_FILE'
  >,
): RedisTarget => ({
  url: c.REDIS_URL,
  sentinels: c.REDIS_SENTINELS,
  masterName: c.REDIS_SENTINEL_MASTER,
  sentinelPassword: c.REDIS_SENTINEL_PASSWORD,
  sentinelTls: c.REDIS_SENTINEL_TLS,
  tlsCaFile: c.REDIS_TLS_CA_FILE,
});

/**
 * Producer connections fail fast when Redis is unreachable (no offline queue): a receiver must answer 503/451
 * at once rather than buffer reports in memory. Worker connections retry forever, as BullMQ requires. Through
 * Sentinels, a connection asks them for the master on every reconnect, and reconnects when the server it holds
 * turns out to be a replica now (READONLY: a failover demoted it).
 */
export function createRedis(target: string | RedisTarget, role: 'producer' | 'worker'): Redis {
  const common: RedisOptions = {
    connectTimeout: 5_000,
    // Reconnect quickly but not in a tight loop.
    retryStrategy: (times) => Math.min(times * 200, 2_000),
  };
  const options: RedisOptions =
    role === 'producer'
      ? { ...common, enableOfflineQueue: false, maxRetriesPerRequest: 1 }
      : { ...common, maxRetriesPerRequest: null, enableReadyCheck: true };
  if (typeof target === 'string') return new Redis(target, options);
  const url = new URL(target.url);
  // TLS verified against REDIS_TLS_CA_FILE's CAs where it is set (a private CA), else the system's.
  const tls = target.tlsCaFile ? { ca: readFileSync(target.tlsCaFile, 'utf8') } : {};
  if (target.sentinels.length === 0)
    return new Redis(target.url, { ...options, ...(url.protocol === 'rediss:' ? { tls } : {}) });
  return new Redis({
    ...options,
    sentinels: target.sentinels,
    name: target.masterName,
    role: 'master',
    ...(url.username ? { username: decodeURIComponent(url.username) } : {}),
    ...(url.password ? { password: decodeURIComponent(url.password) } : {}),
    db: Number(url.pathname.slice(1) || 0),
    // rediss://: the master (found through the sentinels) is spoken to over TLS.
    ...(url.protocol === 'rediss:' ? { tls, enableTLSForSentinelMode: true } : {}),
    ...(target.sentinelPassword ? { sentinelPassword: target.sentinelPassword } : {}),
    ...(target.sentinelTls ? { sentinelTLS: tls } : {}),
    sentinelRetryStrategy: (times) => Math.min(times * 200, 2_000),
    reconnectOnError: (err) => (err.message.startsWith('READONLY') ? 2 : false),
  });
}

/** Closes a connection unless something (BullMQ closing its queue) already did. */
export async function closeRedis(connection: Redis): Promise<void> {
  if (connection.status === 'end' || connection.status === 'close') return;
  await connection.quit().catch(() => connection.disconnect());
}
