// Incident evaluation, one at a time across schedulers (a BullMQ job scheduler): derives every domain's incidents up
// to today, puts their new events into the alert feed (numbered like every alert, for GET /v1/alerts), and queues
// the notifications they make for their routes, and once a day each mail recipient's digest.
import { insertMarginSeconds } from './insert-margin.ts';
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { ClickHouseClient } from '../common/clickhouse.ts';
import { notifyRoutes, quietHours, type Config } from '../common/config.ts';
import type { Db } from '../common/db.ts';
import type { TrackedIncident } from '../common/incidents/acts.ts';
import { readActs, track as trackActs } from '../common/incidents/acts.ts';
import type { Incident } from '../common/incidents/derive.ts';
import { checkpointDayOf, deriveSince } from '../common/incidents/incremental.ts';
import { deriveDomains, incidentOptions, windowStart } from '../common/incidents/load.ts';
import {
  NO_DAY,
  domainsActedOn,
  domainsToEvaluate,
  domainsChecked,
  earliestNewDay,
  otherWindowStored,
  readIncidents,
  writeIncidents,
} from '../common/incidents/store.ts';
import type { Logger } from '../common/logger.ts';
import { startScheduledJob, type ScheduledJob } from '../common/scheduled-job.ts';
import {
  alertSequence,
  alertWatermark,
  storeCandidates,
  type Alert,
  type AlertWatermark,
  type ReserveSeq,
} from './alert-evaluation.ts';
import {
  digestFor,
  incidentCandidates,
  notificationsFor,
  storedEvents,
  type IncidentCandidate,
} from './incident-events.ts';
import { enqueueDeliveries, type DeliveryJob } from './notify/deliveries.ts';
import { destinationsFor, domainMatches, type Notification } from './notify/messages.ts';
import { enqueueFeed, type WebhookJob } from './webhooks.ts';

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
  | 'CLICKHOUSE_REQUEST_TIMEOUT_MS'
>;

/**
 * Domains derived per query: over the whole window (the first evaluation) their facts are months of rows each; after
 * new reports only a few weeks', so larger chunks, fewer queries (each query pays for the granules its domains touch,
 * and neighbouring domains share them).
 */
const CHUNKS = { full: 500, since: 2_000 };

export { insertMarginSeconds };

/**
 * One evaluation: derives again the domains that received reports since the last one, from the first day those
 * reports can change (incremental.ts), stores their incidents, puts their new events (and those of people's acts)
 * into the feed, and returns the notifications those make. The first evaluation, and the first after the window
 * moved on (windowStart), derives every domain with reports in the window or incidents stored, over the window.
 * `chunks`: the domains derived per query.
 */
export async function evaluateIncidents(
  db: Db,
  client: ClickHouseClient,
  config: IncidentConfig,
  reserve: ReserveSeq,
  now = new Date(),
  watermark?: AlertWatermark,
  margin = insertMarginSeconds(config),
  chunks = CHUNKS,
): Promise<{ incidents: TrackedIncident[]; alerts: Alert[]; notifications: Notification[] }> {
  const options = incidentOptions(config);
  const today = now.toISOString().slice(0, 10);
  const windowFrom = windowStart(today, options.windowDays);
  const [start] = await db.rows<{ at: string }>("SELECT toString(now(), 'UTC') AS at");
  // After the window moved on, the stored incidents were derived from another window's days: all derived again.
  const read = await watermark?.read();
  const since = read && !(await otherWindowStored(db, windowFrom)) ? read : undefined;
  const changed = await domainsToEvaluate(db, since, windowFrom, margin);
  // Without a first day of new reports (inserts of another table seen first), the whole window.
  const newFrom = since ? ((await earliestNewDay(db, since, margin)) ?? windowFrom) : undefined;
  const [checked, acted] =
    since && start
      ? await Promise.all([domainsChecked(db, since, margin), domainsActedOn(db, since, start.at, margin)])
      : [[], []];
  const incidents: TrackedIncident[] = [];
  const fresh: Array<{ alert: Alert; candidate: IncidentCandidate }> = [];
  // Derives the domains again (from the new reports' first day, or only their live checks), or reads them as stored.
  const evaluate = async (domains: string[], how: 'reports' | 'checks' | 'acts'): Promise<void> => {
    const parts: string[][] = [];
    const size = since && how !== 'acts' ? chunks.since : chunks.full;
    for (let i = 0; i < domains.length; i += size) parts.push(domains.slice(i, i + size));
    type Found = { incidents: Incident[]; stored: Incident[] };
    type Read = Promise<[Found, Awaited<ReturnType<typeof readActs>>]>;
    const read = (chunk: string[], onRead: () => void): Read => {
      const found = async (): Promise<Found> => {
        if (how === 'acts') {
          const stored = await readIncidents(db, { domains: chunk, from: NO_DAY, to: today, detail: true });
          onRead();
          return { incidents: stored, stored };
        }
        if (!since)
          return {
            incidents: await deriveDomains(db, chunk, today, options, checkpointDayOf(today), onRead),
            stored: [],
          };
        return deriveSince(db, chunk, how === 'reports' ? newFrom : undefined, today, options, onRead);
      };
      const both = Promise.all([found(), readActs(db, chunk)]);
      both.catch(() => {}); // awaited below; a failure of the store before it must not leave it unhandled
      return both;
    };
    // The next chunk's facts are read once this one's are, while it is derived and stored (ClickHouse works while
    // we do); never more than one chunk ahead of the one being stored.
    const reads = new Map<number, Read>();
    const factsRead = new Set<number>();
    let storing = 0;
    const start = (k: number): void => {
      if (k >= parts.length || reads.has(k)) return;
      reads.set(
        k,
        read(parts[k]!, () => {
          factsRead.add(k);
          if (storing >= k) start(k + 1);
        }),
      );
    };
    start(0);
    for (const [k, chunk] of parts.entries()) {
      storing = k;
      if (factsRead.has(k)) start(k + 1);
      const [{ incidents: incidentsFound, stored }, acts] = await reads.get(k)!;
      reads.delete(k);
      const tracked = incidentsFound.map((x) => trackActs(x, acts, now));
      // The alerts first, then the incidents: a stored incident's events have their alerts, so they are not looked
      // up again (storedEvents); after a failure between the two, the next evaluation finds the alerts stored.
      const known = storedEvents(stored);
      const candidates = tracked.flatMap((i) => incidentCandidates(i, known));
      fresh.push(...(await storeCandidates(db, client, candidates, reserve, now)));
      // The version orders the writes of all evaluations: the clock, not the (possibly given) `now`.
      if (how !== 'acts') await writeIncidents(client, chunk, incidentsFound, Date.now(), windowFrom);
      incidents.push(...tracked);
    }
  };
  const done = new Set(changed);
  const only = (domains: string[]): string[] => {
    const left = [...new Set(domains)].filter((d) => !done.has(d)).sort();
    for (const d of left) done.add(d);
    return left;
  };
  await evaluate(changed, 'reports');
  await evaluate(only(checked), 'checks');
  // Domains people acted on and nothing else: their stored incidents with the new acts' events.
  await evaluate(only(acted), 'acts');
  // Only once every domain is stored: after a failure the next evaluation starts from the same point.
  if (start) await watermark?.write(start.at);
  return {
    incidents,
    alerts: fresh.map((f) => f.alert),
    notifications: notificationsFor(fresh, config.NOTIFY_DASHBOARD_URL),
  };
}

/** Every stored incident open or resolved in the day before `now`, with its days, events and state. */
export async function currentIncidents(db: Db, now: Date): Promise<TrackedIncident[]> {
  const today = now.toISOString().slice(0, 10);
  const yesterday = new Date(now.getTime() - 86_400_000).toISOString().slice(0, 10);
  const [stored, acts] = await Promise.all([
    readIncidents(db, { from: yesterday, to: today, detail: true }),
    readActs(db, undefined),
  ]);
  return stored.map((x) => trackActs(x, acts, now));
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
  const watermark = alertWatermark(redis, `${config.QUEUE_NAME}:incident-watermark`);
  const evaluateOnce = async (): Promise<void> => {
    const now = new Date();
    const { alerts, notifications } = await evaluateIncidents(db, clickhouse, config, reserve, now, watermark);
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
      items.push(...digests(config, await currentIncidents(db, now), now));
    const queued = await enqueueDeliveries(deliveries, items, quietHours(config), now);
    await enqueueFeed(hooks, config.ALERT_WEBHOOK_URLS, alerts);
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
