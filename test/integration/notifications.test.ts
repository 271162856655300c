/* eslint-disable @typescript-eslint/no-explicit-any, @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-member-access -- received bodies are untyped JSON, checked by the assertions */
// Incident events and the notifications they make, delivered to real receivers: an SMTP sink that requires STARTTLS
// and AUTH (smtp-server), and HTTP receivers taking Slack, Teams and signed webhook bodies, one of which fails once
// and one for good. The scenario's history arrives at once (a backfill), then a day later.
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { generate } from 'selfsigned';
import { SMTPServer } from 'smtp-server';
import { simpleParser } from 'mailparser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../services/common/logger.ts';
import { configEnv, loadConfig, type Config } from '../../services/common/config.ts';
import { recordAct } from '../../services/common/incidents/acts.ts';
import { createDb, type Db } from '../../services/api/queries.ts';
import { listDeliveries } from '../../services/api/deliveries.ts';
import { listAlerts } from '../../services/api/alerts.ts';
import { evaluateIncidents, digests } from '../../services/scheduler/incident-evaluation.ts';
import {
  createDeliveryQueue,
  createDeliveryWorker,
  deliveryQueueName,
  enqueueDeliveries,
  quietDelay,
  type DeliveryJob,
} from '../../services/scheduler/notify/deliveries.ts';
import { destinationsFor } from '../../services/scheduler/notify/messages.ts';
import { postJson, RefusedTarget } from '../../services/scheduler/notify/guarded-post.ts';
import { signBody } from '../../services/scheduler/webhooks.ts';
import type { ReserveSeq } from '../../services/scheduler/alert-evaluation.ts';
import { notifyRoutes } from '../../services/common/config.ts';
import type { Worker } from 'bullmq';
import { until } from '../helpers/env.ts';
import { history, openStore, report, type Store } from '../helpers/incident-scenario.ts';

interface Mail {
  to: string;
  secure: boolean;
  user: string | undefined;
  raw: string;
}
interface Hit {
  path: string;
  headers: IncomingMessage['headers'];
  body: any;
}

const mails: Mail[] = [];
const hits: Hit[] = [];
const failedOnce = new Set<string>();
let smtp: SMTPServer;
let http: Server;
let store: Store;
let db: Db;
let config: Config;
let queue: Queue<DeliveryJob>;
let worker: Worker<DeliveryJob>;
let redis: Redis;
let n = 0;
const reserve: ReserveSeq = async (count) => ((n += count), n - count + 1);
const SECRET = 'notify-secret';

async function startSmtp(): Promise<number> {
  const pems = await generate([{ name: 'commonName', value: 'localhost' }], { keySize: 2048, algorithm: 'sha256' });
  smtp = new SMTPServer({
    key: pems.private,
    cert: pems.cert,
    authMethods: ['PLAIN', 'LOGIN'],
    onAuth: (auth, _session, cb) =>
      auth.username === 'notifier' && auth.password === 'relay-pass'
        ? cb(null, { user: auth.username })
        : cb(new Error('bad credentials')),
    onData: (stream, session, cb) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        for (const r of session.envelope.rcptTo)
          mails.push({
            to: r.address,
            secure: session.secure,
            user: session.user as string | undefined,
            raw: Buffer.concat(chunks).toString('utf8'),
          });
        cb();
      });
    },
  });
  await new Promise<void>((resolve) => smtp.listen(0, '127.0.0.1', resolve));
  return (smtp.server.address() as AddressInfo).port;
}

async function startHttp(): Promise<number> {
  http = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const id = String(req.headers['x-tlsrpt-notification-id'] ?? '');
      if (req.url === '/gone') return void res.writeHead(404).end('no such hook');
      if (req.url === '/flaky' && !failedOnce.has(id)) {
        failedOnce.add(id);
        return void res.writeHead(500).end('try again');
      }
      hits.push({ path: req.url ?? '', headers: req.headers, body: JSON.parse(text) });
      res.writeHead(200).end('ok');
    });
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  return (http.address() as AddressInfo).port;
}

beforeAll(async () => {
  const [smtpPort, httpPort] = await Promise.all([startSmtp(), startHttp()]);
  const hook = (path: string) => `http://127.0.0.1:${httpPort}${path}`;
  store = await openStore();
  config = loadConfig({
    ...configEnv(store.config),
    NOTIFY_ROUTES: JSON.stringify([
      { domains: ['*'], to: ['mailto:ops@example.test', `slack:${hook('/slack')}`] },
      { domains: ['gamma.example'], to: [`teams:${hook('/teams')}`, `webhook:${hook('/hook')}`] },
      { domains: ['*.beta.example', 'beta.example'], to: [`webhook:${hook('/flaky')}`, `webhook:${hook('/gone')}`] },
    ]),
    NOTIFY_SMTP_URL: `smtp://notifier:relay-pass@127.0.0.1:${smtpPort}`,
    NOTIFY_SMTP_TLS_VERIFY: 'false',
    NOTIFY_ALLOW_PRIVATE: 'true',
    NOTIFY_FROM: 'TLS reports <tlsrpt@example.test>',
    ALERT_WEBHOOK_SECRET: SECRET,
    INCIDENT_WINDOW_DAYS: '60',
  });
  db = createDb(store.ch, { timeoutSeconds: 30, maxRows: 1_000_000 });
  redis = new Redis(config.REDIS_URL, { maxRetriesPerRequest: null });
  const name = deliveryQueueName(config.QUEUE_NAME);
  queue = createDeliveryQueue(redis, name);
  worker = createDeliveryWorker(name, redis.duplicate(), config, {
    clickhouse: store.ch,
    logger: createLogger('notify', 'silent'),
  });
  await store.write(history(), true);
});
afterAll(async () => {
  await worker.close();
  await queue.obliterate({ force: true });
  await queue.close();
  redis.disconnect();
  await store.close();
  await new Promise<void>((resolve) => smtp.close(resolve));
  await new Promise<void>((resolve) => http.close(() => resolve()));
});

/** One evaluation at `now`, its notifications queued for their routes. */
async function evaluate(now: Date) {
  const found = await evaluateIncidents(db, store.ch, config, reserve, now);
  const items = found.notifications.map((x) => ({
    notification: x,
    destinations: destinationsFor(notifyRoutes(config), x.domains),
  }));
  await enqueueDeliveries(queue, items, undefined, now);
  return found;
}

const deliveriesSettled = (count: number) =>
  until(
    `${count} deliveries settled`,
    async () => {
      const { deliveries } = await listDeliveries(db, { name: 'all', domains: undefined }, 1000);
      const settled = deliveries.filter((d) => d.state !== 'retrying');
      return settled.length >= count ? deliveries : undefined;
    },
    60_000,
  );

describe('incident notifications', () => {
  it('a backfill: two open problems notify one by one, those that began and ended in it as one summary per domain', async () => {
    const { alerts, notifications } = await evaluate(new Date('2026-10-21T09:00:00Z'));
    expect(notifications.map((x) => `${x.kind} ${x.domains.join()} ${x.title.split(':')[0]}`).sort()).toEqual([
      'incident beta.example [opened] beta.example',
      'incident gamma.example [opened] gamma.example',
      'summary acme.example acme.example',
      'summary beta.example beta.example',
    ]);
    expect(notifications.find((x) => x.kind === 'summary' && x.domains[0] === 'acme.example')!.lines).toHaveLength(2);
    // The feed carries every event: 5 opened, 3 resolved, 1 worsened (Microsoft saw acme's certificate a day later).
    const rules = alerts.map((a) => a.rule).sort();
    expect(rules.filter((r) => r === 'incident-opened')).toHaveLength(5);
    expect(rules.filter((r) => r === 'incident-resolved')).toHaveLength(3);
    const feed = await listAlerts(db, { name: 'all', domains: undefined }, 0, 1000);
    expect(feed.alerts).toHaveLength(alerts.length);
  });

  it('delivers to every destination: mail over STARTTLS with AUTH, Slack, Teams, a signed webhook; a bad one fails alone', async () => {
    // acme: mail + Slack; beta (2): mail, Slack, flaky, gone; gamma: mail, Slack, Teams, webhook.
    const deliveries = await deliveriesSettled(14);
    expect(deliveries).toHaveLength(14);
    const failed = deliveries.filter((d) => d.state === 'failed');
    expect(failed.map((d) => d.destination)).toEqual([
      expect.stringMatching(/^webhook:http:\/\/127\.0\.0\.1:\d+\/…$/),
      expect.stringMatching(/^webhook:http:\/\/127\.0\.0\.1:\d+\/…$/),
    ]);
    expect(failed[0]!.error).toMatch(/answered 404/);
    const flaky = deliveries.filter((d) => d.state === 'delivered' && d.attempts === 2);
    expect(flaky).toHaveLength(2);
    expect(deliveries.filter((d) => d.state === 'delivered')).toHaveLength(12);

    expect(mails).toHaveLength(4);
    expect(mails.every((m) => m.secure && m.user === 'notifier' && m.to === 'ops@example.test')).toBe(true);
    const parsed = await Promise.all(mails.map((m) => simpleParser(m.raw)));
    const gamma = parsed.find(
      (m) => m.subject === '[opened] gamma.example: starttls-not-supported at mx3.gamma.example',
    )!;
    expect(gamma.text).toMatch(/starttls-not-supported at mx3\.gamma\.example \(120 failed sessions, since 2026-10-17/);
    expect(gamma.from?.value[0]).toMatchObject({ name: 'TLS reports', address: 'tlsrpt@example.test' });

    const slack = hits.filter((h) => h.path === '/slack');
    expect(slack).toHaveLength(4);
    expect(slack[0]!.body).toMatchObject({ text: expect.any(String), blocks: [{ type: 'section' }] });
    const [teams] = hits.filter((h) => h.path === '/teams');
    expect(teams!.body.attachments[0].contentType).toBe('application/vnd.microsoft.card.adaptive');
    // Report text never becomes markdown: plain text runs.
    expect(teams!.body.attachments[0].content.body[0]).toMatchObject({
      type: 'RichTextBlock',
      inlines: [{ type: 'TextRun', text: expect.stringMatching(/gamma\.example: starttls-not-supported/) }],
    });
    const [hook] = hits.filter((h) => h.path === '/hook');
    expect(hook!.headers['x-tlsrpt-signature']).toBe(signBody(SECRET, JSON.stringify(hook!.body)));
    expect(hook!.body.notification).toMatchObject({ kind: 'incident', domains: ['gamma.example'] });
  });

  it('says nothing new when nothing changed', async () => {
    const { alerts, notifications } = await evaluate(new Date('2026-10-21T09:05:00Z'));
    expect([alerts.length, notifications.length]).toEqual([0, 0]);
  });

  it('an acknowledged incident is told of again when it worsens; a stopped reporter back resolves its incident', async () => {
    const now = new Date('2026-10-22T09:00:00Z');
    const before = await evaluateIncidents(db, store.ch, config, reserve, now);
    const gamma = before.incidents.find((i) => i.domain === 'gamma.example')!;
    await recordAct(store.ch, gamma, { event: 'acknowledge', actor: 'ops', now });
    const acked = await evaluate(new Date('2026-10-22T09:01:00Z'));
    // In the feed, not told: people acknowledged it themselves.
    expect(acked.alerts.map((a) => a.rule)).toEqual(['incident-acknowledged']);
    expect(acked.notifications).toEqual([]);
    await store.write([
      report('Google Inc.', 'gamma.example', 21, [
        {
          type: 'sts',
          mode: 'enforce',
          ok: 200,
          failures: [{ rt: 'starttls-not-supported', mx: 'mx3.gamma.example', ip: '209.85.1.2', n: 150 }],
        },
      ]),
      report('Mail.Ru', 'beta.example', 21, [{ type: 'sts', mode: 'testing', ok: 100, failures: [] }]),
    ]);
    const later = await evaluate(new Date('2026-10-22T10:00:00Z'));
    expect(later.notifications.map((x) => x.title).sort()).toEqual([
      '[resolved] beta.example: reports from Mail.Ru stopped',
      '[worsened] gamma.example: starttls-not-supported at mx3.gamma.example',
    ]);
  });

  it("writes each mail recipient a daily digest of its routes' domains", async () => {
    const now = new Date('2026-10-22T10:30:00Z');
    const { incidents } = await evaluateIncidents(db, store.ch, config, reserve, now);
    const list = digests(config, incidents, now);
    expect(list.map((d) => [d.destinations, d.notification.title])).toEqual([
      [['mailto:ops@example.test'], 'TLS reporting digest 2026-10-22: 1 open, 1 resolved'],
    ]);
    expect(list[0]!.notification.lines.join('\n')).toMatch(
      /Open \(1\):\n- gamma\.example: starttls-not-supported at mx3\.gamma\.example, since 2026-10-17/,
    );
    await enqueueDeliveries(queue, list, undefined, now);
    const digest = await until('the digest mail', async () =>
      mails.find((m) => m.raw.includes('Subject: TLS reporting digest 2026-10-22')),
    );
    expect(digest.to).toBe('ops@example.test');
    expect(digests(config, [], now)).toEqual([]);
  });
});

describe('notification safety', () => {
  it('refuses a webhook target on a private address unless allowed', async () => {
    await expect(
      postJson(`http://127.0.0.1:${(http.address() as AddressInfo).port}/hook`, '{}', {
        timeoutMs: 2000,
        allowPrivate: false,
      }),
    ).rejects.toBeInstanceOf(RefusedTarget);
  });

  it('holds all but critical notifications through the quiet hours', () => {
    expect(quietDelay([22, 7], new Date('2026-10-22T23:30:00Z'))).toBe(7.5 * 3600_000);
    expect(quietDelay([22, 7], new Date('2026-10-22T12:00:00Z'))).toBe(0);
    expect(quietDelay([1, 5], new Date('2026-10-22T04:00:00Z'))).toBe(3600_000);
  });
});
