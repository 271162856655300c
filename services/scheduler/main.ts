// The scheduler: every background job, one file per queue. Incident evaluation (incident-evaluation.ts) and the
// notifications it makes (notify/), the per-day alert rules of earlier releases (alert-evaluation.ts), the webhook
// deliveries of the feed (webhooks.ts), live checks on a schedule and on demand (posture-checks.ts), retention
// (retention.ts). Each periodic job runs once at a time across scheduler replicas (common/scheduled-job.ts), so
// running two for availability is safe. npm run scheduler, or started by npm start.
import { createClickHouse } from '../common/clickhouse.ts';
import { loadConfig } from '../common/config.ts';
import { configuredDb } from '../common/db.ts';
import { bothAnswer } from '../common/health.ts';
import { createLogger } from '../common/logger.ts';
import { createOpsServer, createRegistry } from '../common/metrics.ts';
import { closeRedis, createRedis, redisTarget } from '../common/redis.ts';
import { onShutdown } from '../common/shutdown.ts';
import { startAlertEvaluation } from './alert-evaluation.ts';
import { startIncidentEvaluation } from './incident-evaluation.ts';
import { createDeliveryQueue, createDeliveryWorker, deliveryQueueName } from './notify/deliveries.ts';
import { startPostureChecks } from './posture-checks.ts';
import { forwardQueueName, forwardRules } from '../common/forwarding.ts';
import { createForwardWorker } from './forward.ts';
import { startRetention } from './retention.ts';
import { createWebhookQueue, createWebhookWorker, webhookQueueName } from './webhooks.ts';

const config = loadConfig();
const logger = createLogger('scheduler', config.LOG_LEVEL);
const clickhouse = createClickHouse(config);
const db = configuredDb(clickhouse, config);
const redis = createRedis(redisTarget(config), 'worker');
redis.on('error', (err) => logger.warn({ err }, 'redis connection error'));
const registry = createRegistry('scheduler');
const ops = createOpsServer(registry, () => bothAnswer(redis, clickhouse));
ops.listen(config.SCHEDULER_METRICS_PORT, config.SCHEDULER_METRICS_HOST, () =>
  logger.info({ port: config.SCHEDULER_METRICS_PORT }, 'scheduler up'),
);

const hooksName = webhookQueueName(config.QUEUE_NAME);
const hooks = createWebhookQueue(redis, hooksName);
hooks.on('error', (err) => logger.warn({ err }, 'webhook queue error'));
const hookWorker =
  config.ALERT_WEBHOOK_URLS.length > 0
    ? createWebhookWorker(hooksName, redis.duplicate(), config.ALERT_WEBHOOK_SECRET, logger)
    : undefined;
const deliveriesName = deliveryQueueName(config.QUEUE_NAME);
const deliveries = createDeliveryQueue(redis, deliveriesName);
deliveries.on('error', (err) => logger.warn({ err }, 'notification queue error'));
const deliveryWorker = createDeliveryWorker(deliveriesName, redis.duplicate(), config, { clickhouse, logger });
// Forwarding of reports (FORWARD_RULES), queued by the worker: delivered here.
const forwarding = forwardRules(config).length > 0;
const forwardWorker = forwarding
  ? createForwardWorker(forwardQueueName(config.QUEUE_NAME), redis.duplicate(), config, { clickhouse, logger })
  : undefined;
const incidents = startIncidentEvaluation(config, { redis, clickhouse, db, hooks, deliveries, logger });
const alerts = startAlertEvaluation(config, { redis, clickhouse, db, hooks, logger });
const checks = startPostureChecks(config, { redis, clickhouse, db, logger });
const retention = startRetention(redis, clickhouse, config, logger);

onShutdown(logger, [
  ['incident evaluation', () => incidents.close()],
  ['alert evaluation', () => alerts.close()],
  [
    'notifications',
    async () => {
      await deliveryWorker.close();
      await deliveries.close();
    },
  ],
  ['live checks', () => checks.close()],
  ['forwarding', () => forwardWorker?.close() ?? Promise.resolve()],
  ['retention', () => retention.close()],
  [
    'webhooks',
    async () => {
      await hookWorker?.close();
      await hooks.close();
    },
  ],
  ['ops server', () => new Promise<void>((resolve) => ops.close(() => resolve()))],
  ['redis', () => closeRedis(redis)],
  ['clickhouse', () => clickhouse.close()],
]);
