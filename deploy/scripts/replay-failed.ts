// npm run replay-failed: moves every job that exhausted its retries (or took workers down 5 times) back to the
// queue, e.g. after a ClickHouse outage longer than the retries or after fixing a bug. Receipts are idempotent,
// so replaying a job that was partly stored counts nothing twice.
import { loadConfig } from '../../services/common/config.ts';
import { createLogger } from '../../services/common/logger.ts';
import { createReportQueue } from '../../services/common/queue.ts';
import { closeRedis, createRedis } from '../../services/common/redis.ts';

const config = loadConfig();
const log = createLogger('replay-failed', config.LOG_LEVEL);
const connection = createRedis(config.REDIS_URL, 'worker');
const queue = createReportQueue(connection, config.QUEUE_NAME);
const before = await queue.getFailedCount();
await queue.retryJobs({ state: 'failed', count: 1000 });
log.info({ queue: config.QUEUE_NAME, replayed: before }, 'failed jobs moved back to the queue');
await queue.close();
await closeRedis(connection);
