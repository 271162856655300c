// SMTP receiver entry point: npm run smtp-receiver (or started by npm start).
import { loadConfig } from '../common/config.ts';
import { refuseDevelopmentDefaults } from '../common/development-defaults.ts';
import { redisAnswers } from '../common/health.ts';
import { createLogger } from '../common/logger.ts';
import { openProducer } from '../common/queue.ts';
import { closeRedis, redisTarget } from '../common/redis.ts';
import { onShutdown } from '../common/shutdown.ts';
import { loadTlsCredentials } from '../common/tls.ts';
import { createOpsServer, createRegistry, receiverMetrics } from '../common/metrics.ts';
import { createSmtpReceiver } from './server.ts';

const config = loadConfig();
refuseDevelopmentDefaults(config, ['TLS_CERT_FILE', 'SMTP_RECIPIENTS']);
const logger = createLogger('smtp-receiver', config.LOG_LEVEL);
// Listen only once Redis can take jobs: until then senders get connection refused and retry later.
const { connection, queue } = await openProducer(redisTarget(config), config.QUEUE_NAME, logger, {
  replicas: config.REDIS_ACK_REPLICAS,
  timeoutMs: config.REDIS_ACK_TIMEOUT_MS,
});
const tls = await loadTlsCredentials(config, logger);
const registry = createRegistry('smtp-receiver');
const receiver = createSmtpReceiver(config, { queue, logger, tls, metrics: receiverMetrics(registry) });
const ops = createOpsServer(registry, () => redisAnswers(connection));
ops.listen(config.SMTP_METRICS_PORT, config.SMTP_HOST);
receiver.server.listen(config.SMTP_PORT, config.SMTP_HOST, () => {
  logger.info(
    { port: config.SMTP_PORT, recipients: config.SMTP_RECIPIENTS, dkimPolicy: config.SMTP_DKIM_POLICY },
    'smtp receiver listening',
  );
});

onShutdown(logger, [
  // New connections and transactions get 421; messages in flight finish and get their answer.
  ['smtp server', () => receiver.close()],
  ['ops server', () => new Promise<void>((resolve) => ops.close(() => resolve()))],
  ['queue', () => queue.close()],
  ['redis', () => closeRedis(connection)],
]);
