// Forwards an operator can see and send again: the scheduler's forward worker delivers to a local collector that
// refuses one destination (a 400: it gives up at once) and takes the other; GET /v1/forwards lists each delivery's
// newest state, POST /v1/forwards/{id}/retry sends the one that failed again, and so does the dashboard's Forwards
// page once the collector takes it.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClickHouseClient } from '../../services/common/clickhouse.ts';
import {
  createForwardQueue,
  forwardId,
  forwardQueueName,
  forwardRetry,
  type ForwardJob,
} from '../../services/common/forwarding.ts';
import { createLogger } from '../../services/common/logger.ts';
import { createApi } from '../../services/api/server.ts';
import { createDb } from '../../services/api/queries.ts';
import { redisSessions } from '../../services/api/ui/sessions.ts';
import { createForwardWorker } from '../../services/scheduler/forward.ts';
import { queryRows, testConfig, testDatabase, until } from '../helpers/env.ts';

const ADMIN = 'admin-token-forwards';
const LIMITED = 'limited-token-forwards';
const config = testConfig({
  API_TOKENS: JSON.stringify([
    { name: 'admin', token: ADMIN },
    { name: 'limited', token: LIMITED, domains: ['fwd.example'] },
  ]),
  FORWARD_ALLOW_PRIVATE: 'true',
});
let ch: ClickHouseClient;
let redis: Redis;
let api: Server;
let base: string;
let collector: Server;
let collectorUrl: string;
let worker: Worker<ForwardJob>;
const queue = () => createForwardQueue(redis, config.QUEUE_NAME);
/** The collector's answer to /refusing (a 400 until the test lets it through); /taking always answers 200. */
let refusing = true;
const posted: Array<{ path: string; key: string; body: string }> = [];

const job = (destination: string, n: number): ForwardJob => ({
  reportKey: String(n).repeat(32),
  receiptId: `receipt-${n}`,
  destination,
  policyDomain: 'fwd.example',
  organization: 'Forward Test Org',
  reportId: `report-${n}`,
  bodyBase64: Buffer.from(`{"report":${n}}`).toString('base64'),
  contentType: 'application/tlsrpt+json',
  filename: `report-${n}.json`,
});

async function call(method: string, path: string, token = ADMIN) {
  const res = await fetch(`${base}${path}`, { method, headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** A dashboard session of the token (its cookie). */
async function signIn(token: string): Promise<string> {
  const res = await fetch(`${base}/ui/sign-in`, {
    method: 'POST',
    redirect: 'manual',
    headers: { origin: base, 'content-type': 'application/x-www-form-urlencoded' },
    body: `token=${token}&next=%2Fui%2Fforwards`,
  });
  return res.headers.get('set-cookie')!.split(';')[0]!;
}

type Listed = { id: string; state: string; attempts: number; error: string | null; destination: string };
const listed = async (query = ''): Promise<Listed[]> =>
  (await call('GET', `/v1/forwards${query}`)).body.forwards as Listed[];

beforeAll(async () => {
  ch = await testDatabase(config);
  redis = new Redis(config.REDIS_URL, { maxRetriesPerRequest: null });
  collector = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = req.url ?? '';
      posted.push({ path, key: String(req.headers['idempotency-key']), body: Buffer.concat(chunks).toString() });
      if (path === '/refusing' && refusing) res.writeHead(400).end('not today');
      else res.writeHead(200).end('ok');
    });
  });
  await new Promise<void>((r) => collector.listen(0, '127.0.0.1', () => r()));
  collectorUrl = `http://127.0.0.1:${(collector.address() as AddressInfo).port}`;
  worker = createForwardWorker(forwardQueueName(config.QUEUE_NAME), redis, config, {
    clickhouse: ch,
    logger: createLogger('forward-test', 'silent'),
  });
  api = await createApi(config, {
    db: createDb(ch, { timeoutSeconds: 10, maxRows: 10_000 }),
    logger: createLogger('api-test', 'silent'),
    registry: new Registry(),
    ready: async () => true,
    sessions: redisSessions(redis, config.QUEUE_NAME, 3600),
    clickhouse: ch,
    forwards: forwardRetry(redis, config.QUEUE_NAME),
  });
  await new Promise<void>((r) => api.listen(0, '127.0.0.1', () => r()));
  base = `http://127.0.0.1:${(api.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await worker.close();
  await new Promise<void>((r) => api.close(() => r()));
  await new Promise<void>((r) => collector.close(() => r()));
  redis.disconnect();
  await ch.command({ query: `DROP DATABASE IF EXISTS ${config.CLICKHOUSE_DATABASE}` });
  await ch.close();
});

describe('forwards', () => {
  it('lists each delivery in its newest state and sends a failed one again by hand, once', async () => {
    const refused = job(`${collectorUrl}/refusing`, 1);
    const taken = job(`${collectorUrl}/taking`, 2);
    const [refusedId, takenId] = [refused, taken].map((j) => forwardId(j.reportKey, j.destination)) as [string, string];
    const q = queue();
    for (const j of [refused, taken]) await q.add('forward', j, { jobId: forwardId(j.reportKey, j.destination) });
    await q.close();
    const states = async () => new Map((await listed()).map((f) => [f.id, f]));
    const first = await until('both recorded', async () => {
      const s = await states();
      return s.get(refusedId)?.state === 'failed' && s.get(takenId)?.state === 'delivered' ? s : undefined;
    });
    // A 400 gives up at once: one attempt, the collector's answer as the reason; the https path is not shown.
    expect(first.get(refusedId)).toMatchObject({ attempts: 1, destination: `${collectorUrl}/…` });
    expect(first.get(refusedId)!.error).toContain('answered 400: not today');
    expect(first.get(takenId)).toMatchObject({ attempts: 1, error: null });
    expect((await listed('?state=failed')).map((f) => f.id)).toEqual([refusedId]);
    expect((await listed('?state=delivered')).map((f) => f.id)).toEqual([takenId]);
    expect(await listed('?limit=1')).toHaveLength(1);

    // Only a failed one is sent again: a delivered one is a 409, an unknown one a 404, a malformed id a 400.
    expect((await call('POST', `/v1/forwards/${takenId}/retry`)).status).toBe(409);
    expect((await call('POST', `/v1/forwards/${'f'.repeat(32)}/retry`)).status).toBe(404);
    expect((await call('POST', '/v1/forwards/not-an-id/retry')).status).toBe(400);
    expect((await call('GET', '/v1/forwards?state=lost')).status).toBe(400);
    // Forwarding is the deployment's: a token limited to domains neither sees nor retries it.
    expect((await call('GET', '/v1/forwards', LIMITED)).status).toBe(403);
    expect((await call('POST', `/v1/forwards/${refusedId}/retry`, LIMITED)).status).toBe(403);

    // Sent again while the destination still refuses: it fails again, after one attempt of its own.
    const newestFailed = async (): Promise<number> => {
      const [r] = await queryRows<{ v: number }>(
        ch,
        `SELECT max(version) AS v FROM forward_deliveries WHERE forward_id = '${refusedId}' AND state = 'failed'`,
      );
      return Number(r?.v ?? 0);
    };
    const firstFailed = await newestFailed();
    const retried = await call('POST', `/v1/forwards/${refusedId}/retry`);
    expect(retried).toEqual({ status: 202, body: { id: refusedId, state: 'queued' } });
    await until('the retry refused', async () =>
      posted.filter((p) => p.path === '/refusing').length === 2 ? true : undefined,
    );
    // Recorded as failed again: a newer record (a merge may keep only the newest of the two).
    await until('the retry recorded', async () => ((await newestFailed()) > firstFailed ? true : undefined));
    const again = (await states()).get(refusedId)!;
    expect(again).toMatchObject({ state: 'failed', attempts: 1 });
    expect(again.error).toContain('answered 400');

    // The dashboard's Forwards page (operators) lists it with "Send again", which sends it once the destination takes it.
    const cookie = await signIn(ADMIN);
    const shown = await fetch(`${base}/ui/forwards?state=failed`, { headers: { cookie } });
    expect(shown.status).toBe(200);
    const text = await shown.text();
    expect(text).toContain(`action="/ui/forwards/${refusedId}/retry"`);
    expect(text).toContain(refused.reportKey.slice(0, 12));
    expect(text).not.toContain(taken.reportKey.slice(0, 12));
    expect((await fetch(`${base}/ui/forwards`, { headers: { cookie: await signIn(LIMITED) } })).status).toBe(403);
    const send = (origin: string) =>
      fetch(`${base}/ui/forwards/${refusedId}/retry`, {
        method: 'POST',
        redirect: 'manual',
        headers: { origin, cookie, 'content-type': 'application/x-www-form-urlencoded' },
        body: `next=${encodeURIComponent('/ui/forwards?state=failed')}`,
      });
    expect((await send('https://elsewhere.example')).status).toBe(403);
    refusing = false;
    const sent = await send(base);
    expect(sent.status).toBe(303);
    expect(sent.headers.get('location')).toBe('/ui/forwards?state=failed');
    const after = await until('the retry delivered', async () => {
      const s = await states();
      return s.get(refusedId)?.state === 'delivered' ? s : undefined;
    });
    // Its attempts counted from the first again; the same bytes and idempotency key each time.
    expect(after.get(refusedId)).toMatchObject({ attempts: 1, error: null });
    const refusedPosts = posted.filter((p) => p.path === '/refusing');
    expect(refusedPosts).toHaveLength(3);
    for (const p of refusedPosts) expect(p).toEqual({ path: '/refusing', key: refusedId, body: '{"report":1}' });
    // Delivered now: not sent again, from either side.
    expect((await call('POST', `/v1/forwards/${refusedId}/retry`)).status).toBe(409);
    expect((await send(base)).status).toBe(409);
    expect(posted.filter((p) => p.path === '/taking')).toHaveLength(1);
  });
});
