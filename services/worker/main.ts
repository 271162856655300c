// Worker entry point: npm run worker (or started by npm start).
import { createClickHouse } from '../common/clickhouse.ts';
import { loadConfig } from '../common/config.ts';
import { createLogger } from '../common/logger.ts';
import { createRedis } from '../common/redis.ts';
import { onShutdown } from '../common/shutdown.ts';
import { BatchWriter } from './batch-writer.ts';
import { createReportWorker } from './report-worker.ts';

const config = loadConfig();
const logger = createLogger('worker', config.LOG_LEVEL);
const connection = createRedis(config.REDIS_URL, 'worker');
const clickhouse = createClickHouse(config);
const writer = new BatchWriter(
  async (table, values) => {
    await clickhouse.insert({ table, values, format: 'JSONEachRow' });
  },
  { maxRows: config.WORKER_BATCH_MAX_ROWS, maxWaitMs: config.WORKER_BATCH_MAX_WAIT_MS },
  (s) =>
    s.error
      ? logger.warn(
          { rows: s.rows, jobs: s.jobs, ms: s.ms, err: s.error instanceof Error ? s.error.message : 'unknown error' },
          'batch insert failed; its jobs will retry',
        )
      : logger.debug({ rows: s.rows, jobs: s.jobs, ms: s.ms }, 'batch stored'),
);
const worker = createReportWorker(config, { connection, writer, logger });
logger.info({ queue: config.QUEUE_NAME, concurrency: config.WORKER_CONCURRENCY }, 'worker started');

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
  ['redis', async () => void (await connection.quit())],
  ['clickhouse', () => clickhouse.close()],
]);
