// REDIS_ACK_REPLICAS: a job counts as queued only once that many replicas hold it (Redis WAIT). Against the suite's
// Redis, which has no replica: every add is refused in time, its job removed (the sender keeps the report), and the
// adds made at once share their WAITs instead of sending one each. The failover test (test/e2e/redis-failover) runs
// the same queue with a replica, through a kill -9 of the master.
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { QueueUnavailableError, createReportQueue, enqueueReport } from '../../services/common/queue.ts';
import { createRedis } from '../../services/common/redis.ts';

const name = `replicas-${randomUUID().slice(0, 8)}`;
let producer: Redis;
let admin: Redis;

beforeAll(() => {
  producer = createRedis(inject('redisUrl'), 'producer');
  admin = new Redis(inject('redisUrl'));
});
afterAll(async () => {
  producer.disconnect();
  admin.disconnect();
});

const job = (id: string) => ({
  v: 1 as const,
  receiptId: id,
  receivedAt: new Date().toISOString(),
  channel: 'https' as const,
  bodyBase64: Buffer.from('{}').toString('base64'),
});

/** WAIT commands the server has run so far. */
const waits = async (): Promise<number> =>
  Number(/cmdstat_wait:calls=(\d+)/.exec(await admin.info('commandstats'))?.[1] ?? 0);

describe('acknowledging only what a replica holds', () => {
  it('refuses, and keeps nothing, when no replica confirms in time', async () => {
    const queue = createReportQueue(producer, name, { replicas: 1, timeoutMs: 200 });
    const refused = await enqueueReport(queue, job(`${name}-1`), 5_000).catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(QueueUnavailableError);
    expect((refused as Error).message).toMatch(/0 of 1 replica\(s\) confirmed the job within 200 ms/);
    expect(await queue.getJob(`${name}-1`)).toBeUndefined();
    await queue.close();
  });

  it('shares one WAIT among the adds made while another is in flight', async () => {
    const queue = createReportQueue(producer, name, { replicas: 1, timeoutMs: 300 });
    const before = await waits();
    const results = await Promise.allSettled(
      Array.from({ length: 40 }, (_, i) => enqueueReport(queue, job(`${name}-many-${i}`), 5_000)),
    );
    expect(results.every((r) => r.status === 'rejected')).toBe(true);
    // The first add's WAIT, then one for all who came while it ran (a few more if adds trickle in).
    expect((await waits()) - before).toBeLessThanOrEqual(4);
    expect(await queue.getJobCountByTypes('waiting', 'prioritized', 'delayed')).toBe(0);
    await queue.close();
  });

  it('without REDIS_ACK_REPLICAS, queues as before: no WAIT', async () => {
    const queue = createReportQueue(producer, name);
    const before = await waits();
    await enqueueReport(queue, job(`${name}-plain`), 5_000);
    expect(await queue.getJob(`${name}-plain`)).toBeDefined();
    expect(await waits()).toBe(before);
    await queue.obliterate({ force: true });
    await queue.close();
  });
});
