// SMTP receiver entry point: npm run smtp-receiver (or started by npm start).
import { loadConfig } from '../common/config.ts';
import { createLogger } from '../common/logger.ts';
import { createReportQueue } from '../common/queue.ts';
import { createRedis } from '../common/redis.ts';
import { onShutdown } from '../common/shutdown.ts';
import { loadTlsCredentials } from '../common/tls.ts';
import { createSmtpReceiver } from './server.ts';

const config = loadConfig();
const logger = createLogger('smtp-receiver', config.LOG_LEVEL);
const connection = createRedis(config.REDIS_URL, 'producer');
connection.on('error', (err) => logger.warn({ err: err.message }, 'redis connection error'));
const queue = createReportQueue(connection, config.QUEUE_NAME);
queue.on('error', (err) => logger.warn({ err: err.message }, 'queue error'));
const tls = await loadTlsCredentials(config, logger);
const receiver = createSmtpReceiver(config, { queue, logger, tls });
receiver.server.listen(config.SMTP_PORT, config.SMTP_HOST, () => {
  logger.info(
    { port: config.SMTP_PORT, recipients: config.SMTP_RECIPIENTS, dkimPolicy: config.SMTP_DKIM_POLICY },
    'smtp receiver listening',
  );
});

onShutdown(logger, [
  // New connections and transactions get 421; messages in flight finish and get their answer.
  ['smtp server', () => receiver.close()],
  ['queue', () => queue.close()],
  ['redis', async () => void (await connection.quit())],
]);
