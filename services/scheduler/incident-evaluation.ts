// Incident evaluation, one at a time across schedulers (a BullMQ job scheduler): derives every domain's incidents up
// to today, puts their new events into the alert feed (numbered like every alert, for GET /v1/alerts), and queues
// the notifications they make for their routes, and once a day each mail recipient's digest.
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { ClickHouseClient } from '../common/clickhouse.ts';
import { notifyRoutes, quietHours, type Config } from '../common/config.ts';
import type { Db } from '../common/db.ts';
import type { TrackedIncident } from '../common/incidents/acts.ts';
import { incidentOptions, loadIncidents } from '../common/incidents/load.ts';
import type { Logger } from '../common/logger.ts';
import { startScheduledJob, type ScheduledJob } from '../common/scheduled-job.ts';
import { alertSequence, storeAlerts, type Alert, type ReserveSeq } from './alert-evaluation.ts';
import { digestFor, incidentCandidates, notificationsFor } from './incident-events.ts';
import { enqueueDeliveries, type DeliveryJob } from './notify/deliveries.ts';
import { destinationsFor, domainMatches, type Notification } from './notify/messages.ts';
import { enqueueAlerts, type WebhookJob } from './webhooks.ts';

export type IncidentConfig = Pick<
  Config,
  | 'QUEUE_NAME'
  | 'ALERT_EVAL_INTERVAL_MS'
  | 'ALERT_WEBHOOK_URLS'
  | 'INCIDENT_RESOLVE_DAYS'
  | 'INCIDENT_STOPPED_AFTER_DAYS'
  | 'INCIDENT_WINDOW_DAYS'
  | 'NOTIFY_ROUTES'
  | 'NOTIFY_DIGEST_HOUR'
  | 'NOTIFY_QUIET_HOURS'
  | 'NOTIFY_DASHBOARD_URL'
>;

/** One evaluation: the feed's new incident events and the notifications they make (with their destinations). */
export async function evaluateIncidents(
  db: Db,
  client: ClickHouseClient,
  config: IncidentConfig,
  reserve: ReserveSeq,
  now = new Date(),
): Promise<{ incidents: TrackedIncident[]; alerts: Alert[]; notifications: Notification[] }> {
  const incidents = await loadIncidents(db, undefined, now.toISOString().slice(0, 10), incidentOptions(config), now);
  const alerts = await storeAlerts(db, client, incidents.flatMap(incidentCandidates), reserve, now);
  return { incidents, alerts, notifications: notificationsFor(alerts, incidents, config.NOTIFY_DASHBOARD_URL) };
}

/** Each mail recipient's digest of its routes' domains, if it has one to send. */
export function digests(config: IncidentConfig, incidents: TrackedIncident[], now: Date) {
  const recipients = new Map<string, string[]>();
  for (const route of notifyRoutes(config))
    for (const to of route.to)
      if (to.startsWith('mailto:')) recipients.set(to, [...(recipients.get(to) ?? []), ...route.domains]);
  return [...recipients].flatMap(([to, patterns]) => {
    const mine = incidents.filter((i) => patterns.some((p) => domainMatches(p, i.domain)));
    const digest = digestFor(to, mine, now, config.NOTIFY_DASHBOARD_URL);
    return digest ? [{ notification: digest, destinations: [to] }] : [];
  });
}

export function startIncidentEvaluation(
  config: IncidentConfig,
  deps: {
    redis: Redis;
    clickhouse: ClickHouseClient;
    db: Db;
    hooks: Queue<WebhookJob>;
    deliveries: Queue<DeliveryJob>;
    logger: Logger;
  },
): ScheduledJob {
  const { redis, clickhouse, db, hooks, deliveries, logger } = deps;
  const reserve = alertSequence(redis, `${config.QUEUE_NAME}:alert-seq`, db);
  const evaluateOnce = async (): Promise<void> => {
    const now = new Date();
    const { incidents, alerts, notifications } = await evaluateIncidents(db, clickhouse, config, reserve, now);
    const items = notifications.map((n) => ({
      notification: n,
      destinations: destinationsFor(notifyRoutes(config), n.domains),
    }));
    // Once a day, at the digest hour or the first evaluation after it.
    const day = now.toISOString().slice(0, 10);
    if (
      config.NOTIFY_DIGEST_HOUR !== '' &&
      now.getUTCHours() >= config.NOTIFY_DIGEST_HOUR &&
      (await redis.set(`${config.QUEUE_NAME}:digest:${day}`, '1', 'EX', 3 * 86400, 'NX')) === 'OK'
    )
      items.push(...digests(config, incidents, now));
    const queued = await enqueueDeliveries(deliveries, items, quietHours(config), now);
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
    if (alerts.length > 0 || queued > 0) logger.info({ events: alerts.length, deliveries: queued }, 'incident events');
  };
  return startScheduledJob(
    redis,
    `${config.QUEUE_NAME}-incident-evaluation`,
    'incident-evaluation',
    config.ALERT_EVAL_INTERVAL_MS,
    evaluateOnce,
    logger,
  );
}
