// Report forwarding (FORWARD_RULES): each accepted report's original bytes go to other rua destinations too, e.g. a
// second tool, since Microsoft delivers only to the first rua URI of a record. The worker queues one job per report
// and destination once the report is stored (the job id makes a report and destination one job, however often it is
// queued); the scheduler delivers them (services/scheduler/forward.ts). A report that arrived forwarded (it carries
// FORWARDED_HEADER) is never forwarded again, so two deployments that forward to each other do not loop.
import { createHash } from 'node:crypto';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';

export { destinationsFor, forwardRules, type ForwardRule } from './forward-rules.ts';

/** The header a forwarded report carries (mail header and HTTP header alike), naming the deployment that sent it. */
export const FORWARDED_HEADER = 'tlsrpt-forwarded-by';

export interface ForwardJob {
  reportKey: string;
  receiptId: string;
  destination: string;
  /** For the mail's headers and subject (RFC 8460 §5.3). */
  policyDomain: string;
  organization: string;
  reportId: string;
  /** The report exactly as received: its bytes, type and file name. */
  bodyBase64: string;
  contentType: string;
  filename: string;
}

export const forwardQueueName = (base: string): string => `${base}-forward`;

/** One delivery per report and destination: the same id however often (or by however many workers) it is queued. */
export const forwardId = (reportKey: string, destination: string): string =>
  createHash('sha256').update(`${reportKey}\u0000${destination}`).digest('hex').slice(0, 32);

export const FORWARD_ATTEMPTS = 12;

export function createForwardQueue(connection: Redis, base: string): Queue<ForwardJob> {
  return new Queue<ForwardJob>(forwardQueueName(base), {
    connection,
    defaultJobOptions: {
      attempts: FORWARD_ATTEMPTS,
      backoff: { type: 'exponential', delay: 10_000 },
      // Kept 30 days once done, its bytes dropped (services/scheduler/forward.ts): a copy of the report arriving
      // meanwhile (a reporter's retry) is not sent again. A job that gave up keeps them, to be retried by hand.
      removeOnComplete: { age: 30 * 86400 },
      removeOnFail: { age: 30 * 86400 },
    },
  });
}

/** A delivery that gave up, queued again by hand: its attempts start again from the first, with its backoff. */
export interface ForwardRetry {
  /** 'queued', or why not: no such job (done or given up more than 30 days ago, or never queued), or not failed. */
  retry(
    id: string,
  ): Promise<{ outcome: 'queued' } | { outcome: 'not-found' } | { outcome: 'not-failed'; state: string }>;
  close(): Promise<void>;
}

export function forwardRetry(connection: Redis, base: string): ForwardRetry {
  const queue = createForwardQueue(connection, base);
  return {
    async retry(id) {
      const job = await queue.getJob(id);
      if (!job) return { outcome: 'not-found' };
      const state = await job.getState();
      if (state !== 'failed') return { outcome: 'not-failed', state };
      try {
        await job.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true });
      } catch (err) {
        // Another retry moved it out of the failed jobs since: it is queued, or already running again.
        const now = await job.getState();
        if (now === 'failed') throw err;
        return { outcome: 'not-failed', state: now };
      }
      return { outcome: 'queued' };
    },
    close: () => queue.close(),
  };
}
