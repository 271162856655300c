// Mailbox fetcher entry point: npm run mailbox-fetcher (started by npm start when IMAP_MAILBOXES is set). Reads each
// configured IMAP mailbox (services/mailbox-fetcher/fetcher.ts) and queues its reports for the worker.
import { loadConfig } from '../common/config.ts';
import { redisAnswers } from '../common/health.ts';
import { createLogger } from '../common/logger.ts';
import { createOpsServer, createRegistry } from '../common/metrics.ts';
import { openProducer } from '../common/queue.ts';
import { closeRedis, redisTarget } from '../common/redis.ts';
import { onShutdown } from '../common/shutdown.ts';
import { MailboxFetcher, mailboxesHealth } from './fetcher.ts';
import { loadMailboxes } from '../common/mailboxes.ts';
import { fetcherMetrics } from './metrics.ts';

const config = loadConfig();
const logger = createLogger('mailbox-fetcher', config.LOG_LEVEL);
const mailboxes = await loadMailboxes(config.IMAP_MAILBOXES, config.IMAP_MAILBOXES_FILE);
if (mailboxes.length === 0) logger.warn('no mailbox configured (IMAP_MAILBOXES): nothing to read');
const { connection, queue } = await openProducer(redisTarget(config), config.QUEUE_NAME, logger, {
  replicas: config.REDIS_ACK_REPLICAS,
  timeoutMs: config.REDIS_ACK_TIMEOUT_MS,
});
const registry = createRegistry('mailbox-fetcher');
const metrics = fetcherMetrics(registry);
const fetchers = mailboxes.map(
  (box) =>
    new MailboxFetcher(box, {
      queue,
      redis: connection,
      stateKey: `${config.QUEUE_NAME}:imap`,
      logger,
      metrics,
      limits: {
        maxMimeParts: config.SMTP_MAX_MIME_PARTS,
        maxUnzippedBytes: config.SMTP_MAX_UNZIPPED_BYTES,
        maxZipEntries: config.SMTP_MAX_ZIP_ENTRIES,
      },
      imap: {
        maxMessageBytes: config.SMTP_MAX_MESSAGE_BYTES,
        commandTimeoutMs: config.IMAP_COMMAND_TIMEOUT_SECONDS * 1000,
      },
      dkim: config.IMAP_VERIFY_DKIM,
    }),
);
// Ready when Redis takes jobs. Healthy while every mailbox is: /healthz answers 503 naming the ones that are not (an
// error, a server past a command's deadline), while the others go on.
const ops = createOpsServer(
  registry,
  () => redisAnswers(connection),
  () => mailboxesHealth(fetchers),
);
ops.listen(config.MAILBOX_METRICS_PORT, '0.0.0.0', () =>
  logger.info(
    { port: config.MAILBOX_METRICS_PORT, mailboxes: mailboxes.map((m) => m.name) },
    'mailbox fetcher running',
  ),
);
const running = fetchers.map((f) => f.run());

onShutdown(logger, [
  [
    'mailboxes',
    async () => {
      await Promise.all(fetchers.map((f) => f.stop()));
      await Promise.all(running);
    },
  ],
  ['ops server', () => new Promise<void>((resolve) => ops.close(() => resolve()))],
  ['queue', () => queue.close()],
  ['redis', () => closeRedis(connection)],
]);
