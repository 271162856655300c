// The report queue: one BullMQ queue between the receivers and the worker.
import { Queue, type JobsOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from './logger.ts';
import { createRedis, type RedisTarget } from './redis.ts';
import type { ReportJobInput } from '../../schemas/job.ts';

export const REPORT_JOB_NAME = 'report';

/** Retry delays for transient failures (ClickHouse or Redis away): 1 s doubling to at most 1 min, with jitter. */
export function retryDelayMs(attemptsMade: number, random: () => number = Math.random): number {
  const base = Math.min(1_000 * 2 ** Math.max(0, attemptsMade - 1), 60_000);
  return Math.round(base * (0.8 + 0.4 * random()));
}

export const BACKOFF_TYPE = 'capped-exponential';

export const reportJobOptions: JobsOptions = {
  // A report that can never succeed is rejected without retry (a row in `rejects`); everything else is
  // transient, so it retries for about two days at one minute apart before it rests in the failed set.
  attempts: 3_000,
  backoff: { type: BACKOFF_TYPE },
  // The body is in the job: drop completed jobs at once (the receipt row in ClickHouse is the record).
  removeOnComplete: true,
  // Jobs that exhausted their retries are kept for replay for 30 days.
  removeOnFail: { age: 30 * 24 * 3600 },
};

/** Replicas that must hold a job before `add` resolves (REDIS_ACK_REPLICAS), and how long to wait for them. */
export interface ReplicaAck {
  replicas: number;
  timeoutMs: number;
}

export class ReplicaTimeoutError extends Error {
  override readonly name = 'ReplicaTimeoutError';
}

/**
 * A queue whose `add` resolves only once `replicas` replicas hold the job: Redis WAIT on the connection that wrote
 * it, which confirms every write made on it before. WAITs are shared: those who add while one is in flight share
 * the next, so a busy receiver sends one WAIT per replication round trip, not one per report.
 */
class ReplicatedQueue extends Queue {
  private sent: Promise<number> | undefined;
  private next: Promise<number> | undefined;

  constructor(
    name: string,
    // BullMQ writes the jobs of a queue given a connection on that connection itself.
    private readonly writer: Redis,
    private readonly ack: ReplicaAck,
  ) {
    super(name, { connection: writer, defaultJobOptions: reportJobOptions });
  }

  override async add(...args: Parameters<Queue['add']>): ReturnType<Queue['add']> {
    const job = await super.add(...args);
    const held = await this.confirmed().catch((err: unknown) => err);
    if (typeof held === 'number' && held >= this.ack.replicas) return job;
    // Not acknowledged, so not kept (as far as a master still answers): the sender delivers it again.
    if (job.id) await this.remove(job.id).catch(() => 0);
    if (typeof held !== 'number') throw held;
    throw new ReplicaTimeoutError(
      `${held} of ${this.ack.replicas} replica(s) confirmed the job within ${this.ack.timeoutMs} ms`,
    );
  }

  /** Replicas that hold every write made on the connection so far. */
  private confirmed(): Promise<number> {
    this.next ??= (async () => {
      await this.sent?.catch(() => 0);
      const sent = this.writer.wait(this.ack.replicas, this.ack.timeoutMs);
      this.sent = sent;
      this.next = undefined;
      return await sent;
    })();
    return this.next;
  }
}

export function createReportQueue(connection: Redis, name: string, ack?: ReplicaAck): Queue {
  if (ack && ack.replicas > 0) return new ReplicatedQueue(name, connection, ack);
  return new Queue(name, { connection, defaultJobOptions: reportJobOptions });
}

/**
 * A queue that has finished its start-up handshake with Redis. BullMQ keeps the outcome of that handshake for
 * good: a Queue whose handshake failed (Redis down at that moment) never recovers, while one that finished it
 * rides out later Redis restarts. So receivers open their queue here, retrying, before they listen.
 */
export async function openReportQueue(
  connection: Redis,
  name: string,
  onRetry: (err: Error) => void = () => {},
  retryDelay = 1_000,
  ack?: ReplicaAck,
): Promise<Queue> {
  for (;;) {
    const queue = createReportQueue(connection, name, ack);
    queue.on('error', () => {}); // the handshake's failure is handled below
    try {
      await queue.waitUntilReady();
      return queue;
    } catch (err) {
      onRetry(err instanceof Error ? err : new Error(String(err)));
      await queue.close().catch(() => {});
      await new Promise((r) => setTimeout(r, retryDelay));
    }
  }
}

export class QueueUnavailableError extends Error {
  override readonly name = 'QueueUnavailableError';
}

/**
 * Stores one receipt in Redis. Resolves only once Redis has the job; rejects with QueueUnavailableError when it
 * cannot within `timeoutMs`, so a receiver answers 503/451 and the sender keeps the report. A job that reaches
 * Redis after that answer is removed again (`onLate` says whether that worked), so what we refused is not kept.
 */
export async function enqueueReport(
  queue: Pick<Queue, 'add' | 'remove'>,
  job: ReportJobInput,
  timeoutMs: number,
  onLate: (removed: boolean) => void = () => {},
): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  let timedOut = false;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      timedOut = true;
      reject(new QueueUnavailableError(`redis did not take the job within ${timeoutMs} ms`));
    }, timeoutMs);
  });
  // The receipt id is the job id: adding the same receipt twice stores one job.
  const added = queue.add(REPORT_JOB_NAME, job, { jobId: job.receiptId });
  added.then(
    () => {
      if (!timedOut) return;
      // A worker that took the job first stores it: the sender's retry is then a duplicate receipt of the same
      // report, which counts once.
      queue.remove(job.receiptId).then(
        (n) => onLate(n === 1),
        () => onLate(false),
      );
    },
    () => {},
  );
  try {
    await Promise.race([added, timeout]);
  } catch (err) {
    if (err instanceof QueueUnavailableError) throw err;
    throw new QueueUnavailableError(err instanceof Error ? err.message : String(err));
  } finally {
    clearTimeout(timer);
  }
}

/**
 * For the scripts that queue receipts again or for the first time (replay-rejects, import): a job already in the
 * queue is left as it is; otherwise it is queued, unless this is a dry run.
 */
export async function queueOnce(
  queue: Queue,
  job: ReportJobInput,
  dryRun: boolean,
): Promise<'queued' | 'already-queued'> {
  if (await queue.getJob(job.receiptId)) return 'already-queued';
  if (!dryRun) await enqueueReport(queue, job, 10_000);
  return 'queued';
}

/**
 * A receiver's side of the queue: a fail-fast producer connection and a queue that has finished its handshake
 * (waiting, with a log line a second, while Redis is away), both logging their errors instead of throwing.
 */
export async function openProducer(
  redis: string | RedisTarget,
  queueName: string,
  logger: Logger,
  ack?: ReplicaAck,
): Promise<{ connection: Redis; queue: Queue }> {
  const connection = createRedis(redis, 'producer');
  connection.on('error', (err) => logger.warn({ err }, 'redis connection error'));
  const queue = await openReportQueue(
    connection,
    queueName,
    (err) => logger.warn({ err }, 'waiting for redis'),
    1_000,
    ack,
  );
  queue.on('error', (err) => logger.warn({ err }, 'queue error'));
  return { connection, queue };
}
