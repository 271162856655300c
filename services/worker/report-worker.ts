// The BullMQ worker: decode, validate and normalize each receipt, then hand its rows to the batch writer.
import { Job, Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../common/config.ts';
import type { Logger } from '../common/logger.ts';
import type { WorkerMetrics } from '../common/metrics.ts';
import { BACKOFF_TYPE, retryDelayMs } from '../common/queue.ts';
import type { BatchWriter, WriteOutcome } from './batch-writer.ts';
import { ClickHouseAway } from './clickhouse-away.ts';
import { processReportJob, type ProcessOptions, type ProcessResult } from './process-job.ts';
import type { Forwarder, ReportAbout } from './forward-jobs.ts';

export type WorkerConfig = Pick<
  Config,
  | 'QUEUE_NAME'
  | 'WORKER_CONCURRENCY'
  | 'WORKER_LOCK_MS'
  | 'WORKER_MAX_DECOMPRESSED_BYTES'
  | 'WORKER_GC_AFTER_BYTES'
  | 'WORKER_MAX_POLICIES'
  | 'WORKER_MAX_FAILURE_DETAILS'
  | 'REJECT_MAX_RAW_BYTES'
>;

export interface JobResult {
  /** `duplicate`: the counted copy has this text; `conflict`: a copy with other text, kept, not counted. */
  outcome: 'stored' | 'rejected' | 'duplicate' | 'conflict';
  reportKey?: string;
  reason?: string;
}

/**
 * A job holds no body larger than this (base64 characters) while it waits: for the writer's budget (the body is read
 * again from Redis on its turn) or for its batch to be stored (its rows are made). Under a backlog of large reports
 * BullMQ fetches up to WORKER_CONCURRENCY jobs at once, and their bodies (~0.9 MB each for a 10 MB report) were the
 * worker's memory while they waited. Small bodies are kept: at most concurrency × 64 KB, and a read per waiting job
 * would cost more than it saves.
 */
export const RELOAD_BODY_OVER = 64 * 1024;

/** The job's body (base64) when it is over RELOAD_BODY_OVER, else undefined. */
function largeBodyOf(data: unknown): string | undefined {
  const body = (data as { bodyBase64?: unknown } | undefined)?.bodyBase64;
  return typeof body === 'string' && body.length > RELOAD_BODY_OVER ? body : undefined;
}

/** Takes a body over RELOAD_BODY_OVER out of the job's data (its other fields stay); true when it did. */
function dropLargeBody(job: Job): boolean {
  if (largeBodyOf(job.data) === undefined) return false;
  job.data = { ...(job.data as object), bodyBase64: '' };
  return true;
}

/**
 * About how many bytes of encoded rows a job will add, from its body alone: twice its JSON (a 10 MB report makes
 * ~21 MB: the raw text, then its failure details), the JSON's size read from the gzip trailer (ISIZE) without
 * decompressing. 0 for bodies under RELOAD_BODY_OVER: small reports fit wherever the budget has room.
 */
export function expectedRowBytes(data: unknown): number {
  const body = largeBodyOf(data);
  if (body === undefined) return 0;
  const head = Buffer.from(body.slice(0, 4), 'base64');
  if (head[0] !== 0x1f || head[1] !== 0x8b) return 2 * Math.floor((body.length * 3) / 4);
  // The last 8 characters are whole base64 quanta (a body's base64 is a multiple of 4 long): its last 4-6 bytes.
  const tail = Buffer.from(body.slice(-8), 'base64');
  return tail.length >= 4 ? 2 * tail.readUInt32LE(tail.length - 4) : 0;
}

/** A ProcessResult without its rows (each outcome keeps its own fields). */
type Outcome = ProcessResult extends infer R ? (R extends unknown ? Omit<R, 'rows'> : never) : never;

/**
 * Makes the job's rows and hands them to the writer. Synchronous and apart, so the rows (row objects and the raw
 * report text: tens of MB for a 10 MB report) are garbage once encoded, not held in the job's frame until its batch
 * is stored (a heap snapshot of the worker with 10 MB reports showed two such reports alive for that reason).
 * `bytes`: the size of the report's JSON (or of a rejected body).
 */
function processAndWrite(
  job: Job,
  writer: BatchWriter,
  options: ProcessOptions,
): { result: Outcome; stored: Promise<WriteOutcome>; bytes: number; about: ReportAbout | undefined } {
  const { rows, ...result } = processReportJob(job.data, job.id ?? '', options);
  const bytes = rows.raw_reports[0]?.raw_json.length ?? rows.rejects[0]?.raw_base64.length ?? 0;
  const report = rows.reports[0];
  const about = report && {
    organization: report.organization,
    reportId: report.report_id,
    domains: [...new Set(rows.policy_results.map((p) => p.policy_domain))],
  };
  const stored = writer.write(rows);
  // A retry reads the job again from Redis; until then only the metrics read its data (receivedAt).
  dropLargeBody(job);
  return { result, stored, bytes, about };
}

export function createReportWorker(
  config: WorkerConfig,
  deps: {
    connection: Redis;
    writer: BatchWriter;
    logger: Logger;
    metrics?: WorkerMetrics;
    /** A full garbage collection: `globalThis.gc` under --expose-gc. */
    gc?: () => void;
    /** Queues each stored report's forwarding (FORWARD_RULES); none without rules. */
    forward?: Forwarder | undefined;
  },
): Worker {
  const { connection, writer, logger, metrics, gc } = deps;
  const options = {
    maxDecompressedBytes: config.WORKER_MAX_DECOMPRESSED_BYTES,
    limits: { maxPolicies: config.WORKER_MAX_POLICIES, maxFailureDetails: config.WORKER_MAX_FAILURE_DETAILS },
    maxRejectRawBytes: config.REJECT_MAX_RAW_BYTES,
  };

  async function waitForRoom(job: Job, expectedBytes: number): Promise<void> {
    // Not the body itself in a local: a heap snapshot showed it kept alive in this async frame across the await.
    const dropped = dropLargeBody(job);
    await writer.room(expectedBytes);
    if (!dropped) return;
    try {
      const stored = await Job.fromId<unknown>(worker, job.id ?? '');
      if (!stored) throw new Error(`job ${job.id} is no longer in Redis`);
      job.data = stored.data;
    } catch (err) {
      // The job fails and is retried (its body is still in Redis); the jobs waiting behind it go on.
      writer.passTurn();
      throw err;
    }
  }
  // Sets the queue's rate limit: the pause this worker (and any other that fetches meanwhile) takes.
  const limiter = new Queue(config.QUEUE_NAME, { connection });
  const away = new ClickHouseAway();
  /** Waits for the job's rows to be stored; ClickHouse out of reach puts the job back and pauses the worker. */
  async function storedOrPaused(job: Job, stored: Promise<WriteOutcome>): Promise<WriteOutcome> {
    let written: WriteOutcome;
    try {
      written = await stored;
    } catch (err) {
      const first = !away.isAway;
      const pause = away.failed(err, job.attemptsStarted - job.attemptsMade - 1);
      if (pause === undefined) throw err;
      if (first) logger.warn({ err }, 'ClickHouse out of reach: jobs go back to the queue, the worker pauses');
      else logger.debug({ jobId: job.id, pauseMs: pause }, 'ClickHouse still out of reach');
      try {
        await limiter.rateLimit(pause);
      } catch {
        throw err; // Redis away too: the job fails and is retried as usual.
      }
      throw Worker.RateLimitError();
    }
    const awayMs = away.reached();
    if (awayMs !== undefined) logger.info({ awayMs }, 'ClickHouse reached again');
    return written;
  }
  const worker = new Worker(
    config.QUEUE_NAME,
    async (job: Job): Promise<JobResult> => {
      // Wait while the rows already made fill the writer's byte budget (large reports, ClickHouse slow or down).
      const expectedBytes = expectedRowBytes(job.data);
      if (!writer.hasRoom(expectedBytes)) await waitForRoom(job, expectedBytes);
      const started = Date.now();
      const { result, stored, bytes, about } = processAndWrite(job, writer, options);
      // The report's garbage (parsed JSON, rows, strings: tens of MB for a large report) is dead now.
      if (gc && config.WORKER_GC_AFTER_BYTES > 0 && bytes >= config.WORKER_GC_AFTER_BYTES) gc();
      // Resolves only once ClickHouse confirmed every row of this job (the batch writer's contract).
      const written = await storedOrPaused(job, stored);
      if (metrics) {
        const done = Date.now();
        metrics.jobDuration.observe((done - started) / 1000);
        metrics.jobs.inc({ outcome: written === 'conflict' ? 'conflict' : result.outcome });
        if (result.outcome === 'rejected') metrics.rejects.inc({ reason: result.reason });
        const receivedAt = Date.parse((job.data as { receivedAt?: string }).receivedAt ?? '');
        if (Number.isFinite(receivedAt)) metrics.receiptToStored.observe(Math.max(0, done - receivedAt) / 1000);
      }
      if (result.outcome === 'stored') {
        if (written === 'conflict')
          logger.warn(
            { jobId: job.id, reportKey: result.reportKey },
            'a copy of a stored report with other figures, not better authenticated: kept as a conflict, not counted',
          );
        else logger.debug({ jobId: job.id, reportKey: result.reportKey, flags: result.flags }, 'report stored');
        // Queued before the job completes: a crash in between stores the report again (the copies collapse) and
        // queues the same forwarding jobs (their ids make them one).
        if (written !== 'conflict' && about && deps.forward)
          await deps.forward.queueFor(worker, job, result.reportKey, about);
        return { outcome: written, reportKey: result.reportKey };
      }
      logger.info({ jobId: job.id, reason: result.reason, detail: result.detail }, 'report rejected');
      return { outcome: 'rejected', reason: result.reason };
    },
    {
      connection,
      concurrency: config.WORKER_CONCURRENCY,
      // Batches wait for each other under load; keep locks long enough that a slow insert does not hand the
      // job to another worker while this one still holds it (BullMQ also renews the lock while it runs).
      lockDuration: config.WORKER_LOCK_MS,
      stalledInterval: Math.min(30_000, Math.round(config.WORKER_LOCK_MS / 2)),
      // A job whose worker died holding it goes back to the queue; one that takes the worker down 5 times
      // (a report that exhausts memory, say) rests in the failed set with its body, for replay, instead of
      // crashing workers forever.
      maxStalledCount: 5,
      settings: {
        backoffStrategy: (attemptsMade: number, type?: string) =>
          type === BACKOFF_TYPE ? retryDelayMs(attemptsMade) : 1_000,
      },
    },
  );
  worker.on('failed', (job, err) =>
    logger.warn({ jobId: job?.id, attemptsMade: job?.attemptsMade, err }, 'job failed; it will be retried'),
  );
  worker.on('error', (err) => logger.error({ err }, 'worker error'));
  worker.on('closed', () => void limiter.close().catch(() => {}));
  return worker;
}
