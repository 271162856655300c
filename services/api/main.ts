// Query API entry point: npm run api (or started by npm start). Also runs the alert evaluator (a BullMQ scheduled
// job, one evaluation at a time across replicas) and the webhook deliveries.
import { createClickHouse } from '../common/clickhouse.ts';
import { loadConfig } from '../common/config.ts';
import { createLogger } from '../common/logger.ts';
import { bothAnswer } from '../common/health.ts';
import { createRegistry } from '../common/metrics.ts';
import { closeRedis, createRedis } from '../common/redis.ts';
import { startScheduledJob } from '../common/scheduled-job.ts';
import { onShutdown } from '../common/shutdown.ts';
import { alertSequence, alertWatermark, evaluateAlerts } from './alerts.ts';
import { createApi } from './app.ts';
import { redisSessions } from './ui/sessions.ts';
import { checkAllDomains } from '../common/posture/run.ts';
import { createReportQueue, enqueueReport } from '../common/queue.ts';
import type { ReportJobInput } from '../../schemas/job.ts';
import { createDb } from './queries.ts';
import { createWebhookQueue, createWebhookWorker, enqueueAlerts, webhookQueueName } from './webhooks.ts';

const config = loadConfig();
const logger = createLogger('api', config.LOG_LEVEL);
const clickhouse = createClickHouse(config);
const db = createDb(
  clickhouse,
  { timeoutSeconds: config.API_QUERY_TIMEOUT_SECONDS, maxRows: config.API_MAX_ROWS },
  config.CLICKHOUSE_CLUSTER ? config.CLICKHOUSE_DATABASE : undefined,
);
const redis = createRedis(config.REDIS_URL, 'worker');
redis.on('error', (err) => logger.warn({ err }, 'redis connection error'));
const registry = createRegistry('api');
const ready = (): Promise<boolean> => bothAnswer(redis, clickhouse);
const sessions = redisSessions(redis, config.QUEUE_NAME, config.UI_SESSION_TTL_SECONDS);
// Operators' choices of a report's copy are queued for the worker like any report.
const reportQueue = createReportQueue(redis, config.QUEUE_NAME);
reportQueue.on('error', (err) => logger.warn({ err }, 'report queue error'));
const enqueue = (job: ReportJobInput): Promise<void> => enqueueReport(reportQueue, job, 10_000);
const server = createApi(config, { db, logger, registry, ready, sessions, clickhouse, enqueue });
server.listen(config.API_PORT, config.API_HOST, () =>
  logger.info({ port: config.API_PORT, dashboard: `http://localhost:${config.API_PORT}/ui/` }, 'api listening'),
);

const hooksName = webhookQueueName(config.QUEUE_NAME);
const hooks = createWebhookQueue(redis, hooksName);
hooks.on('error', (err) => logger.warn({ err }, 'webhook queue error'));
const hookWorker =
  config.ALERT_WEBHOOK_URLS.length > 0
    ? createWebhookWorker(hooksName, redis.duplicate(), config.ALERT_WEBHOOK_SECRET, logger)
    : undefined;

const reserve = alertSequence(redis, `${config.QUEUE_NAME}:alert-seq`, db);
const watermark = alertWatermark(redis, `${config.QUEUE_NAME}:alert-watermark`);
async function evaluateOnce(): Promise<void> {
  const alerts = await evaluateAlerts(
    db,
    clickhouse,
    config,
    reserve,
    new Date(),
    (rule, err) => logger.error({ err, rule }, 'alert rule failed; the other rules ran'),
    watermark,
  );
  if (alerts.length === 0) return;
  logger.info({ alerts: alerts.length }, 'new alerts');
  await enqueueAlerts(
    hooks,
    config.ALERT_WEBHOOK_URLS,
    alerts.map((a) => ({
      id: a.alert_id,
      seq: a.seq,
      rule: a.rule,
      severity: a.severity,
      domain: a.policy_domain,
      day: a.day,
      title: a.title,
      detail: JSON.parse(a.detail || '{}') as unknown,
    })),
  );
}
// Live checks of every managed domain, one run at a time across API replicas, a few domains side by side.
const checkAll = (): Promise<void> => checkAllDomains(clickhouse, config, db, logger);
const checks =
  config.POSTURE_INTERVAL_MS > 0
    ? startScheduledJob(
        redis,
        `${config.QUEUE_NAME}-posture-checks`,
        'posture-checks',
        config.POSTURE_INTERVAL_MS,
        checkAll,
        logger,
      )
    : undefined;

// One evaluation at a time across API replicas, so alerts are found and numbered once.
const scheduler = startScheduledJob(
  redis,
  `${config.QUEUE_NAME}-alert-evaluation`,
  'alert-evaluation',
  config.ALERT_EVAL_INTERVAL_MS,
  evaluateOnce,
  logger,
);

onShutdown(logger, [
  ['http server', () => new Promise<void>((resolve) => server.close(() => resolve()))],
  ['alert evaluator', () => scheduler.close()],
  ['posture checks', async () => await checks?.close()],
  [
    'webhooks',
    async () => {
      await hookWorker?.close();
      await hooks.close();
    },
  ],
  ['report queue', () => reportQueue.close()],
  ['redis', () => closeRedis(redis)],
  ['clickhouse', () => clickhouse.close()],
]);
