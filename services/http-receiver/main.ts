// HTTPS receiver entry point: npm run http-receiver (or started by npm start).
import { loadConfig } from '../common/config.ts';
import { refuseDevelopmentDefaults } from '../common/development-defaults.ts';
import { createLogger } from '../common/logger.ts';
import { openProducer } from '../common/queue.ts';
import { closeRedis, redisTarget } from '../common/redis.ts';
import { onShutdown } from '../common/shutdown.ts';
import { loadTlsCredentials } from '../common/tls.ts';
import { redisAnswers } from '../common/health.ts';
import { createOpsServer, createRegistry, receiverMetrics } from '../common/metrics.ts';
import { createHttpReceiver } from './app.ts';

const config = loadConfig();
// Behind a TLS-terminating proxy (HTTP_PLAINTEXT) the proxy holds the certificate.
if (!config.HTTP_PLAINTEXT) refuseDevelopmentDefaults(config, ['TLS_CERT_FILE']);
const logger = createLogger('http-receiver', config.LOG_LEVEL);
// Listen only once Redis can take jobs: until then senders get connection refused and retry later.
const { connection, queue } = await openProducer(redisTarget(config), config.QUEUE_NAME, logger, {
  replicas: config.REDIS_ACK_REPLICAS,
  timeoutMs: config.REDIS_ACK_TIMEOUT_MS,
});
const tls = config.HTTP_PLAINTEXT ? undefined : await loadTlsCredentials(config, logger);
const registry = createRegistry('http-receiver');
const server = createHttpReceiver(config, { queue, logger, tls, metrics: receiverMetrics(registry) });
// Metrics and health on their own port: the report port faces the internet. Ready when Redis answers (ClickHouse
// being away is what the queue is for).
const ops = createOpsServer(registry, () => redisAnswers(connection));
ops.listen(config.HTTP_METRICS_PORT, config.HTTP_METRICS_HOST);
server.listen(config.HTTP_PORT, config.HTTP_HOST, () => {
  logger.info({ port: config.HTTP_PORT, tls: Boolean(tls), path: config.HTTP_PATH }, 'http receiver listening');
});

onShutdown(logger, [
  // Stop accepting connections; requests in flight finish and get their answer.
  ['http server', () => new Promise<void>((resolve) => server.close(() => resolve()))],
  ['ops server', () => new Promise<void>((resolve) => ops.close(() => resolve()))],
  ['queue', () => queue.close()],
  ['redis', () => closeRedis(connection)],
]);
