// Deliveries: one BullMQ job per notification and destination, so a bad destination never holds up the others;
// retried with backoff (a refusal that retrying cannot change, such as a 4xx or a private address, gives up at once);
// every outcome recorded in notification_deliveries for GET /v1/notifications.
import { createHash } from 'node:crypto';
import { Queue, UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { createTransport, type Transporter } from 'nodemailer';
import type SMTPTransport from 'nodemailer/lib/smtp-transport/index.js';
import type { ClickHouseClient } from '../../common/clickhouse.ts';
import type { Config } from '../../common/config.ts';
import type { Logger } from '../../common/logger.ts';
import { toClickHouseDateTime } from '../../common/sql.ts';
import type { NotificationDeliveryRow } from '../../../schemas/rows.ts';
import { signBody } from '../webhooks.ts';
import { postJson, RefusedTarget } from './guarded-post.ts';
import {
  mailText,
  parseDestination,
  shownAs,
  slackBody,
  teamsBody,
  webhookBody,
  type Notification,
} from './messages.ts';

export interface DeliveryJob {
  notification: Notification;
  destination: string;
}

export type NotifyConfig = Pick<
  Config,
  | 'NOTIFY_SMTP_URL'
  | 'NOTIFY_SMTP_REQUIRE_TLS'
  | 'NOTIFY_SMTP_TLS_VERIFY'
  | 'NOTIFY_FROM'
  | 'NOTIFY_QUIET_HOURS'
  | 'NOTIFY_ALLOW_PRIVATE'
  | 'ALERT_WEBHOOK_SECRET'
>;

export const ATTEMPTS = 12;

export const deliveryQueueName = (base: string): string => `${base}-notifications`;

export function createDeliveryQueue(connection: Redis, name: string): Queue<DeliveryJob> {
  return new Queue<DeliveryJob>(name, {
    connection,
    defaultJobOptions: {
      attempts: ATTEMPTS,
      backoff: { type: 'exponential', delay: 5_000 },
      removeOnComplete: { count: 1000 },
      removeOnFail: { age: 7 * 24 * 3600 },
    },
  });
}

const deliveryId = (notificationId: string, destination: string): string =>
  createHash('sha256').update(`${notificationId}\u0000${destination}`).digest('hex').slice(0, 32);

/** Milliseconds until the quiet hours (UTC, [start, end)) end, 0 outside them. */
export function quietDelay(quiet: [number, number] | undefined, now: Date): number {
  if (!quiet) return 0;
  const [start, end] = quiet;
  const hour = now.getUTCHours();
  const inside = start <= end ? hour >= start && hour < end : hour >= start || hour < end;
  if (!inside) return 0;
  const until = new Date(now);
  until.setUTCHours(end, 0, 0, 0);
  if (until <= now) until.setUTCDate(until.getUTCDate() + 1);
  return until.getTime() - now.getTime();
}

/** Queues each notification for each of its destinations; quiet hours delay all but critical ones. */
export async function enqueueDeliveries(
  queue: Queue<DeliveryJob>,
  items: Array<{ notification: Notification; destinations: string[] }>,
  quiet: [number, number] | undefined,
  now = new Date(),
): Promise<number> {
  const jobs = items.flatMap(({ notification, destinations }) =>
    destinations.map((destination) => ({
      name: notification.kind,
      data: { notification, destination },
      opts: {
        // The same notification to the same destination is one delivery, however often it is queued.
        jobId: deliveryId(notification.id, destination),
        delay: notification.severity === 'critical' ? 0 : quietDelay(quiet, now),
      },
    })),
  );
  if (jobs.length > 0) await queue.addBulk(jobs);
  return jobs.length;
}

/** A refusal that trying again cannot change: the receiver said no (4xx but 408/429), or we will not connect. */
const permanent = (status: number): boolean => status >= 400 && status < 500 && status !== 408 && status !== 429;

async function deliver(job: DeliveryJob, config: NotifyConfig, mailer: Transporter | undefined): Promise<void> {
  const { notification: n, destination } = job;
  const d = parseDestination(destination);
  if (d.channel === 'mail') {
    if (!mailer) throw new UnrecoverableError('NOTIFY_SMTP_URL is not set: no mail can be sent');
    await mailer.sendMail({ from: config.NOTIFY_FROM, to: d.address, subject: n.title, text: mailText(n) });
    return;
  }
  const body = JSON.stringify(
    d.channel === 'slack' ? slackBody(n) : d.channel === 'teams' ? teamsBody(n) : webhookBody(n),
  );
  const headers: Record<string, string> = { 'user-agent': 'tlsrpt-pipeline-notify/1' };
  if (d.channel === 'webhook') {
    headers['x-tlsrpt-notification-id'] = n.id;
    if (config.ALERT_WEBHOOK_SECRET) headers['x-tlsrpt-signature'] = signBody(config.ALERT_WEBHOOK_SECRET, body);
  }
  let answer: { status: number; text: string };
  try {
    answer = await postJson(d.address, body, { timeoutMs: 10_000, allowPrivate: config.NOTIFY_ALLOW_PRIVATE, headers });
  } catch (err) {
    if (err instanceof RefusedTarget) throw new UnrecoverableError(err.message);
    throw err;
  }
  if (answer.status >= 200 && answer.status < 300) return;
  const reason = `${d.channel} answered ${answer.status}: ${answer.text.slice(0, 200)}`;
  throw permanent(answer.status) ? new UnrecoverableError(reason) : new Error(reason);
}

/** The SMTP relay's transport (NOTIFY_SMTP_URL), with `extra` options (forwarding's DKIM signing). */
export function createMailer(config: NotifyConfig, extra: SMTPTransport.Options = {}): Transporter | undefined {
  if (!config.NOTIFY_SMTP_URL) return undefined;
  const options: SMTPTransport.Options & { url: string } = {
    ...extra,
    url: config.NOTIFY_SMTP_URL,
    requireTLS: config.NOTIFY_SMTP_REQUIRE_TLS,
    tls: { rejectUnauthorized: config.NOTIFY_SMTP_TLS_VERIFY },
    // Absolute bounds on a relay that stalls.
    connectionTimeout: 10_000,
    greetingTimeout: 10_000,
    socketTimeout: 30_000,
  };
  return createTransport(options);
}

function record(
  job: Job<DeliveryJob>,
  state: NotificationDeliveryRow['state'],
  error: string,
): NotificationDeliveryRow {
  const { notification: n, destination } = job.data;
  const now = new Date();
  return {
    delivery_id: deliveryId(n.id, destination),
    notification_id: n.id,
    kind: n.kind,
    domains: n.domains,
    title: n.title,
    channel: parseDestination(destination).channel,
    destination: shownAs(destination),
    state,
    attempts: job.attemptsMade + (state === 'delivered' ? 1 : 0),
    error,
    at: toClickHouseDateTime(now),
    version: now.getTime(),
  };
}

export function createDeliveryWorker(
  name: string,
  connection: Redis,
  config: NotifyConfig,
  deps: { clickhouse: ClickHouseClient; logger: Logger },
): Worker<DeliveryJob> {
  const mailer = createMailer(config);
  const write = (row: NotificationDeliveryRow): Promise<unknown> =>
    deps.clickhouse
      .insert({ table: 'notification_deliveries', values: [row], format: 'JSONEachRow' })
      .catch((err: unknown) => deps.logger.warn({ err }, 'a delivery record was not written'));
  const worker = new Worker<DeliveryJob>(
    name,
    async (job) => {
      await deliver(job.data, config, mailer);
      await write(record(job, 'delivered', ''));
    },
    { connection, concurrency: 10 },
  );
  worker.on('failed', (job, err) => {
    if (!job) return;
    const last = err instanceof UnrecoverableError || job.attemptsMade >= (job.opts.attempts ?? ATTEMPTS);
    void write(record(job, last ? 'failed' : 'retrying', err.message.slice(0, 500)));
    deps.logger.warn(
      { destination: shownAs(job.data.destination), attempts: job.attemptsMade, err },
      last ? 'notification not delivered; gave up' : 'notification not delivered; will retry',
    );
  });
  worker.on('error', (err) => deps.logger.warn({ err }, 'notification worker error'));
  return worker;
}
