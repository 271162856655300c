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

const config = testConfig({ HTTP_MAX_INFLIGHT_BYTES: String(100 * 1024) });
const redis = createRedis(config.REDIS_URL, 'producer');
let server: Server;
let port = 0;

beforeAll(async () => {
  const queue = await openReportQueue(redis, config.QUEUE_NAME);
  const registry = new Registry();
  server = createHttpReceiver(config, {
    queue,
    redis,
    logger: createLogger('t', 'silent'),
    tls: undefined,
    registry,
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
    // Five abandoned 60 KiB bodies would exceed the 100 KiB budget if they were still counted.
    const body = Buffer.concat([gzipSync(corpusReports()[0]!.body), Buffer.alloc(0)]);
    await until('accepted', async () => ((await post(body)) === 202 ? true : undefined), 5_000);
    const big = Buffer.alloc(70 * 1024, 0x1f);
    big[1] = 0x8b;
    expect(await post(big)).toBe(202);
  });
});
