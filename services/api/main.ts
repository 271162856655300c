// Query API entry point: npm run api (or started by npm start). It only answers requests: the background jobs
// (alerts, webhooks, live checks, retention) are the scheduler's, and "check now" is asked of it over a queue.
import { createClickHouse } from '../common/clickhouse.ts';
import { loadConfig } from '../common/config.ts';
import { refuseDevelopmentDefaults } from '../common/development-defaults.ts';
import { createLogger } from '../common/logger.ts';
import { bothAnswer } from '../common/health.ts';
import { createRegistry } from '../common/metrics.ts';
import { closeRedis, createRedis, redisTarget } from '../common/redis.ts';
import { onShutdown } from '../common/shutdown.ts';
import { createApi } from './server.ts';
import { redisSessions } from './ui/sessions.ts';
import { createReportQueue, enqueueReport } from '../common/queue.ts';
import type { ReportJobInput } from '../../schemas/job.ts';
import { configuredDb } from '../common/db.ts';
import { checkNowClient } from '../common/check-now.ts';
import { forwardRetry } from '../common/forwarding.ts';

const config = loadConfig();
// The records hosted domains are told to publish name these two.
refuseDevelopmentDefaults(config, ['MTA_STS_RUA', 'MTA_STS_HOST_TARGET']);
const logger = createLogger('api', config.LOG_LEVEL);
const clickhouse = createClickHouse(config);
const db = configuredDb(clickhouse, config);
const redis = createRedis(redisTarget(config), 'worker');
redis.on('error', (err) => logger.warn({ err }, 'redis connection error'));
const registry = createRegistry('api');
const ready = (): Promise<boolean> => bothAnswer(redis, clickhouse);
const sessions = redisSessions(redis, config.QUEUE_NAME, config.UI_SESSION_TTL_SECONDS);
// Operators' choices of a report's copy are queued for the worker like any report.
const reportQueue = createReportQueue(redis, config.QUEUE_NAME);
reportQueue.on('error', (err) => logger.warn({ err }, 'report queue error'));
const enqueue = (job: ReportJobInput): Promise<void> => enqueueReport(reportQueue, job, 10_000);
const checkNow = checkNowClient(redis, config.QUEUE_NAME);
// Forwards that gave up, sent again by hand (POST /v1/forwards/{id}/retry).
const forwards = forwardRetry(redis, config.QUEUE_NAME);
const server = await createApi(config, {
  db,
  logger,
  registry,
  ready,
  sessions,
  clickhouse,
  enqueue,
  checkNow,
  forwards,
});
server.listen(config.API_PORT, config.API_HOST, () =>
  logger.info({ port: config.API_PORT, dashboard: `http://localhost:${config.API_PORT}/ui/` }, 'api listening'),
);

onShutdown(logger, [
  ['http server', () => new Promise<void>((resolve) => server.close(() => resolve()))],
  ['check-now queue', () => checkNow.close()],
  ['forward queue', () => forwards.close()],
  ['report queue', () => reportQueue.close()],
  ['redis', () => closeRedis(redis)],
  ['clickhouse', () => clickhouse.close()],
]);
