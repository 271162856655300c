// HTTPS receiver entry point: npm run http-receiver (or started by npm start).
import { loadConfig } from '../common/config.ts';
import { createLogger } from '../common/logger.ts';
import { openProducer } from '../common/queue.ts';
import { closeRedis } from '../common/redis.ts';
import { onShutdown } from '../common/shutdown.ts';
import { loadTlsCredentials } from '../common/tls.ts';
import { createRegistry, receiverMetrics } from '../common/metrics.ts';
import { createHttpReceiver } from './app.ts';

const config = loadConfig();
const logger = createLogger('http-receiver', config.LOG_LEVEL);
// Listen only once Redis can take jobs: until then senders get connection refused and retry later.
const { connection, queue } = await openProducer(config.REDIS_URL, config.QUEUE_NAME, logger);
const tls = config.HTTP_PLAINTEXT ? undefined : await loadTlsCredentials(config, logger);
const registry = createRegistry('http-receiver');
const server = createHttpReceiver(config, {
  queue,
  redis: connection,
  logger,
  tls,
  registry,
  metrics: receiverMetrics(registry),
});
server.listen(config.HTTP_PORT, config.HTTP_HOST, () => {
  logger.info({ port: config.HTTP_PORT, tls: Boolean(tls), path: config.HTTP_PATH }, 'http receiver listening');
});

onShutdown(logger, [
  // Stop accepting connections; requests in flight finish and get their answer.
  ['http server', () => new Promise<void>((resolve) => server.close(() => resolve()))],
  ['queue', () => queue.close()],
  ['redis', () => closeRedis(connection)],
]);
