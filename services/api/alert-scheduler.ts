// Runs the alert evaluation every ALERT_EVAL_INTERVAL_MS as a BullMQ scheduled job: one schedule however many API
// replicas upsert it, and a global concurrency of one, so one evaluation runs at a time across them.
import { Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from '../common/logger.ts';

export const alertQueueName = (base: string): string => `${base}-alert-evaluation`;

export function startAlertScheduler(
  connection: Redis,
  queueName: string,
  intervalMs: number,
  evaluate: () => Promise<void>,
  logger: Logger,
): { close: () => Promise<void> } {
  const queue = new Queue(queueName, { connection });
  queue.on('error', (err) => logger.warn({ err }, 'alert queue error'));
  // Not awaited: the API serves meanwhile; both wait for Redis if it is away.
  Promise.all([
    queue.setGlobalConcurrency(1),
    queue.upsertJobScheduler(
      'evaluate',
      { every: intervalMs },
      { name: 'evaluate', opts: { removeOnComplete: 10, removeOnFail: 10 } },
    ),
  ]).catch((err: unknown) => logger.error({ err }, 'could not schedule the alert evaluation'));
  const worker = new Worker(queueName, evaluate, { connection: connection.duplicate(), concurrency: 1 });
  worker.on('error', (err) => logger.warn({ err }, 'alert worker error'));
  worker.on('failed', (_job, err) => logger.warn({ err }, 'alert evaluation failed; the next one tries again'));
  return {
    close: async () => {
      await worker.close();
      await queue.close();
    },
  };
}
