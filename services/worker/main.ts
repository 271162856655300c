// Worker entry point: npm run worker (or started by npm start).
import { createClickHouse } from '../common/clickhouse.ts';
import { loadConfig } from '../common/config.ts';
import { bothAnswer } from '../common/health.ts';
import { createLogger } from '../common/logger.ts';
import { createOpsServer, createRegistry, queueGauges, workerMetrics } from '../common/metrics.ts';
import { createReportQueue } from '../common/queue.ts';
import { closeRedis, createRedis, redisTarget } from '../common/redis.ts';
import { onShutdown } from '../common/shutdown.ts';
import { BatchWriter, clickHouseInsert } from './batch-writer.ts';
import { createReportWorker } from './report-worker.ts';
import { reprocessingMarks } from './reprocessing.ts';
import { copyDecisions } from './copies.ts';
import { createForwardQueue, forwardRules } from '../common/forwarding.ts';
import { createForwarder } from './forward-jobs.ts';

const config = loadConfig();
const logger = createLogger('worker', config.LOG_LEVEL);
const connection = createRedis(redisTarget(config), 'worker');
const clickhouse = createClickHouse(config);
const registry = createRegistry('worker');
const metrics = workerMetrics(registry);
// Its own connection: the marks' transactions do not wait behind BullMQ's commands.
const marksConnection = connection.duplicate();
const writer = new BatchWriter(
  clickHouseInsert(clickhouse),
  {
    maxRows: config.WORKER_BATCH_MAX_ROWS,
    maxWaitMs: config.WORKER_BATCH_MAX_WAIT_MS,
    maxBufferedBytes: config.WORKER_MAX_BUFFERED_BYTES,
    mark: reprocessingMarks({ redis: marksConnection, clickhouse, config }),
    decide: copyDecisions({ redis: marksConnection, clickhouse, config }),
  },
  (s) => {
    if (s.error) {
      metrics.batchFailures.inc();
      logger.warn({ rows: s.rows, jobs: s.jobs, ms: s.ms, err: s.error }, 'batch insert failed; its jobs will retry');
      return;
    }
    metrics.batchRows.observe(s.rows);
    metrics.batchSeconds.observe(s.ms / 1000);
    logger.debug({ rows: s.rows, jobs: s.jobs, ms: s.ms }, 'batch stored');
  },
);
// Our scripts start the worker with --expose-gc (see WORKER_GC_AFTER_BYTES); without it, V8 collects on its own.
const gc = typeof globalThis.gc === 'function' ? () => globalThis.gc?.() : undefined;
if (!gc && config.WORKER_GC_AFTER_BYTES > 0)
  logger.warn('started without --expose-gc: memory left by large reports is returned later (WORKER_GC_AFTER_BYTES)');
// Forwarding (FORWARD_RULES, checked when the configuration loaded): each stored report queued for its destinations.
const rules = forwardRules(config);
const forwardQueue = rules.length > 0 ? createForwardQueue(connection, config.QUEUE_NAME) : undefined;
forwardQueue?.on('error', (err) => logger.warn({ err }, 'forward queue error'));
const forward = forwardQueue && createForwarder(forwardQueue, rules);
const worker = createReportWorker(config, { connection, writer, logger, metrics, gc, forward });

// Queue depth and age for /metrics, read through a Queue on the worker's connection.
const queue = createReportQueue(connection, config.QUEUE_NAME);
queue.on('error', (err) => logger.warn({ err }, 'queue error'));
queueGauges(registry, async () => {
  const counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'failed');
  const [oldest] = await queue.getJobs(['wait'], 0, 0, true);
  return {
    waiting: counts.waiting ?? 0,
    active: counts.active ?? 0,
    delayed: counts.delayed ?? 0,
    failed: counts.failed ?? 0,
    oldestWaitingMs: oldest ? Date.now() - oldest.timestamp : 0,
  };
});
const ops = createOpsServer(registry, () => bothAnswer(connection, clickhouse));
ops.listen(config.WORKER_METRICS_PORT);
logger.info(
  { queue: config.QUEUE_NAME, concurrency: config.WORKER_CONCURRENCY, metricsPort: config.WORKER_METRICS_PORT },
  'worker started',
);

onShutdown(logger, [
  // Stop taking jobs and let the ones in flight finish (their batches flush as they fill or time out).
  [
    'worker',
    async () => {
      const closing = worker.close();
      writer.flush();
      await closing;
    },
  ],
  ['batch writer', () => writer.close()],
  ['ops server', () => new Promise<void>((resolve) => ops.close(() => resolve()))],
  ['queue', () => queue.close()],
  ['forward queue', () => forwardQueue?.close() ?? Promise.resolve()],
  ['redis', () => Promise.all([closeRedis(connection), closeRedis(marksConnection)]).then(() => {})],
  ['clickhouse', () => clickhouse.close()],
]);
