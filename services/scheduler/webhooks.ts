// Delivery of new alerts to the configured webhook URLs: one BullMQ job per URL and alert, retried with backoff
// until the receiver answers 2xx. The body is signed: `X-Tlsrpt-Signature: sha256=<hex HMAC-SHA256 of the body>`.
import { createHmac } from 'node:crypto';
import { Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from '../common/logger.ts';
import type { AlertRow } from '../../schemas/rows.ts';

export function signBody(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

export interface WebhookJob {
  url: string;
  alert: Record<string, unknown>;
}

export function webhookQueueName(base: string): string {
  return `${base}-alert-webhooks`;
}

export function createWebhookQueue(connection: Redis, name: string): Queue<WebhookJob> {
  return new Queue<WebhookJob>(name, {
    connection,
    defaultJobOptions: {
      attempts: 30,
      backoff: { type: 'exponential', delay: 2_000 },
      removeOnComplete: { count: 1000 },
      removeOnFail: { age: 7 * 24 * 3600 },
    },
  });
}

export async function enqueueAlerts(
  queue: Queue<WebhookJob>,
  urls: string[],
  alerts: Array<Record<string, unknown> & { id: string }>,
): Promise<void> {
  if (urls.length === 0 || alerts.length === 0) return;
  // The job id makes a re-enqueued alert for the same URL one delivery, not two.
  await queue.addBulk(
    urls.flatMap((url) =>
      alerts.map((alert) => ({
        name: 'alert',
        data: { url, alert },
        opts: { jobId: `${alert.id}-${Buffer.from(url).toString('base64url').slice(0, 100)}` },
      })),
    ),
  );
}

/** New rows of the alert feed, as webhook receivers get them, queued for each of `urls`. */
export async function enqueueFeed(queue: Queue<WebhookJob>, urls: string[], alerts: AlertRow[]): Promise<void> {
  await enqueueAlerts(
    queue,
    urls,
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

export function createWebhookWorker(
  name: string,
  connection: Redis,
  secret: string,
  logger: Logger,
  timeoutMs = 10_000,
): Worker<WebhookJob> {
  const worker = new Worker<WebhookJob>(
    name,
    async (job) => {
      const body = JSON.stringify({ alert: job.data.alert });
      const headers: Record<string, string> = {
        'content-type': 'application/json',
        'user-agent': 'tlsrpt-pipeline-alerts/1',
        'x-tlsrpt-alert-id': String(job.data.alert.id),
      };
      if (secret) headers['x-tlsrpt-signature'] = signBody(secret, body);
      const res = await fetch(job.data.url, { method: 'POST', headers, body, signal: AbortSignal.timeout(timeoutMs) });
      if (!res.ok) throw new Error(`webhook answered ${res.status}`);
    },
    { connection, concurrency: 10 },
  );
  worker.on('failed', (job, err) =>
    logger.warn({ url: job?.data.url, attempts: job?.attemptsMade, err }, 'webhook delivery failed; will retry'),
  );
  worker.on('error', (err) => logger.warn({ err }, 'webhook worker error'));
  return worker;
}
