// "Check now" (POST /v1/checks/{domain}): the API asks, the scheduler checks. A BullMQ queue between them, so a
// check runs where every other check runs (the scheduler holds the resolver, the deadlines and the concurrency) and
// the API only answers requests; the API waits for the run's result within the domain's deadline and a margin.
import { Queue, QueueEvents } from 'bullmq';
import type { Redis } from 'ioredis';

export const checkNowQueueName = (queueName: string): string => `${queueName}-check-now`;

export interface CheckNowJob {
  domain: string;
}

/** What a check run answers (the scheduler's runChecks), as JSON. */
export interface CheckNowResult {
  checkedAt: string;
  results: Array<{
    check: string;
    subject: string;
    severity: 'ok' | 'warning' | 'critical';
    summary: string;
    detail: Record<string, unknown>;
  }>;
}

/** The scheduler did not answer in time (not running, or busy past the deadline): the API's 503. */
export class CheckNowUnavailable extends Error {}

export interface CheckNow {
  check(domain: string, timeoutMs: number): Promise<CheckNowResult>;
  close(): Promise<void>;
}

export function checkNowClient(connection: Redis, queueName: string): CheckNow {
  const name = checkNowQueueName(queueName);
  const queue = new Queue<CheckNowJob, CheckNowResult>(name, { connection });
  // Completion events come over a connection of their own (it blocks reading the event stream).
  const events = new QueueEvents(name, { connection: connection.duplicate() });
  queue.on('error', () => {});
  events.on('error', () => {});
  return {
    async check(domain, timeoutMs) {
      const job = await queue.add(
        'check',
        { domain },
        { removeOnComplete: { age: 3600 }, removeOnFail: { age: 3600 }, attempts: 1 },
      );
      try {
        return await job.waitUntilFinished(events, timeoutMs);
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        // Not left to run later for nobody: a check nobody waits for any more is dropped (unless it started).
        await job.remove().catch(() => {});
        if (/timed out/i.test(message))
          throw new CheckNowUnavailable(`no check of ${domain} finished within ${timeoutMs / 1000} s`);
        throw new CheckNowUnavailable(`the check of ${domain} failed: ${message}`);
      }
    },
    async close() {
      await events.close();
      await queue.close();
    },
  };
}
