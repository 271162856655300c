// The HTTPS receiver's own bookkeeping, in process (plain HTTP) against the suite's Redis.
import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { gzipSync } from 'node:zlib';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../services/common/logger.ts';
import { receiverMetrics } from '../../services/common/metrics.ts';
import { openReportQueue } from '../../services/common/queue.ts';
import { createRedis } from '../../services/common/redis.ts';
import { createHttpReceiver } from '../../services/http-receiver/app.ts';
import { corpusReports } from '../helpers/corpus.ts';
import { testConfig, until } from '../helpers/env.ts';

const config = testConfig({ HTTP_MAX_INFLIGHT_BYTES: String(400 * 1024) });
const redis = createRedis(config.REDIS_URL, 'producer');
let server: Server;
let port = 0;

beforeAll(async () => {
  const queue = await openReportQueue(redis, config.QUEUE_NAME);
  const registry = new Registry();
  server = createHttpReceiver(config, {
    queue,
    logger: createLogger('t', 'silent'),
    tls: undefined,
    metrics: receiverMetrics(registry),
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  port = (server.address() as AddressInfo).port;
});
afterAll(async () => {
  await new Promise<void>((r) => server.close(() => r()));
  redis.disconnect();
});

const post = async (body: Buffer) =>
  (
    await fetch(`http://127.0.0.1:${port}/v1/tlsrpt`, {
      method: 'POST',
      headers: { 'content-type': 'application/tlsrpt+gzip' },
      body,
    })
  ).status;

describe('in-flight body budget', () => {
  it('clients that vanish mid-body give their bytes back', async () => {
    for (let i = 0; i < 5; i++) {
      // 60 KiB of a declared 80 KiB body, then the client is gone.
      const s = connect(port, '127.0.0.1');
      await new Promise<void>((r) => s.on('connect', () => r()));
      s.write(
        `POST /v1/tlsrpt HTTP/1.1\r\nHost: x\r\nContent-Type: application/tlsrpt+gzip\r\nContent-Length: ${80 * 1024}\r\n\r\n`,
      );
      s.write(Buffer.alloc(60 * 1024, 1));
      await new Promise((r) => setTimeout(r, 50));
      s.destroy();
    }
    // Five abandoned 60 KiB bodies (240 KiB held each) would exceed the 400 KiB budget if they were still counted.
    const body = Buffer.concat([gzipSync(corpusReports()[0]!.body), Buffer.alloc(0)]);
    await until('accepted', async () => ((await post(body)) === 202 ? true : undefined), 5_000);
    const big = Buffer.alloc(70 * 1024, 0x1f);
    big[1] = 0x8b;
    expect(await post(big)).toBe(202);
  });
});

/** A receiver on a queue whose `add` waits until the test lets it go: a slow Redis, injected. */
async function slowQueueReceiver(timeoutMs: number) {
  const adds: Array<() => void> = [];
  const removed: string[] = [];
  const queue = {
    add: () => new Promise((r) => adds.push(() => r({}))),
    remove: (id: string) => (removed.push(id), Promise.resolve(1)),
  };
  const srv = createHttpReceiver(
    { ...config, HTTP_ENQUEUE_TIMEOUT_MS: timeoutMs },
    {
      queue: queue as never,
      logger: createLogger('t', 'silent'),
      tls: undefined,
      metrics: receiverMetrics(new Registry()),
    },
  );
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const url = `http://127.0.0.1:${(srv.address() as AddressInfo).port}/v1/tlsrpt`;
  const send = (body: Buffer) =>
    fetch(url, { method: 'POST', headers: { 'content-type': 'application/tlsrpt+gzip' }, body }).then((r) => r.status);
  return { adds, removed, send, close: () => new Promise<void>((r) => srv.close(() => r())) };
}

describe('bytes held until the job is in Redis', () => {
  it('a body waiting for Redis still counts against the budget', async () => {
    const s = await slowQueueReceiver(5_000);
    const body = Buffer.alloc(70 * 1024, 0x1f);
    body[1] = 0x8b;
    const first = s.send(body);
    await until('first add under way', async () => (s.adds.length === 1 ? true : undefined));
    // 280 KiB held by the first; a second would make 560 KiB of the 400 KiB budget.
    expect(await s.send(body)).toBe(503);
    s.adds[0]!();
    expect(await first).toBe(202);
    // Given back once Redis took it: the same body is taken again.
    const third = s.send(body);
    await until('third add under way', async () => (s.adds.length === 2 ? true : undefined));
    s.adds[1]!();
    expect(await third).toBe(202);
    await s.close();
  });

  it('a job that reaches Redis after its 503 is removed again: nothing answered 503 is kept', async () => {
    const s = await slowQueueReceiver(100);
    expect(await s.send(gzipSync(corpusReports()[0]!.body))).toBe(503);
    s.adds[0]!();
    await until('removed', async () => (s.removed.length === 1 ? true : undefined));
    await s.close();
  });
});
