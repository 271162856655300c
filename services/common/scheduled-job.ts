// Periodic work as a BullMQ job scheduler (never setInterval behind a hand-written lock): one schedule however many
// processes upsert it, each run taken by one of them, and with a global concurrency of one, never two runs at once.
import { Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from './logger.ts';

export interface ScheduledJob {
  close(): Promise<void>;
}

/** Runs `run` every `everyMs` on queue `queueName` (`what` names it in the logs). */
export function startScheduledJob(
  connection: Redis,
  queueName: string,
  what: string,
  everyMs: number,
  run: () => Promise<void>,
  logger: Logger,
): ScheduledJob {
  const queue = new Queue(queueName, { connection });
  queue.on('error', (err) => logger.warn({ err, what }, 'scheduled job queue error'));
  // Not awaited: the service works meanwhile; both wait for Redis if it is away.
  const schedule = (): void =>
    void Promise.all([
      queue.setGlobalConcurrency(1),
      queue.upsertJobScheduler(
        what,
        { every: everyMs },
        { name: what, opts: { removeOnComplete: 10, removeOnFail: 10 } },
      ),
    ]).catch((err: unknown) => logger.error({ err, what }, 'could not schedule a periodic job'));
  schedule();
  // Again on every reconnect: after a Sentinel failover the new master may lack the schedule's next run (a write the
  // old master never passed on), and a schedule without its next run never runs again. Upserting is idempotent.
  let connected = connection.status === 'ready';
  const onReady = (): void => {
    if (connected) schedule();
    connected = true;
  };
  connection.on('ready', onReady);
  const worker = new Worker(queueName, run, { connection: connection.duplicate(), concurrency: 1 });
  worker.on('error', (err) => logger.warn({ err, what }, 'scheduled job worker error'));
  worker.on('failed', (_job, err) => logger.warn({ err, what }, 'a periodic run failed; the next one tries again'));
  return {
    close: async () => {
      connection.off('ready', onReady);
      await worker.close();
      await queue.close();
    },
  };
}
