// Hostile IMAP servers against the mailbox fetcher: a literal far larger than the size it announced, and a FETCH
// that never ends while bytes keep coming. Each bounded (bytes read, time per command), the mailbox reported
// unhealthy with the reason, and another mailbox of the same fetcher read meanwhile.
import { randomUUID } from 'node:crypto';
import { request } from 'node:http';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import type { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createLogger } from '../../services/common/logger.ts';
import { createOpsServer, createRegistry } from '../../services/common/metrics.ts';
import { createReportQueue } from '../../services/common/queue.ts';
import { closeRedis, createRedis } from '../../services/common/redis.ts';
import { MailboxFetcher, mailboxesHealth } from '../../services/mailbox-fetcher/fetcher.ts';
import { mailboxSchema } from '../../services/common/mailboxes.ts';
import { fetcherMetrics } from '../../services/mailbox-fetcher/metrics.ts';
import { corpusEmails } from '../helpers/corpus.ts';
import { until } from '../helpers/env.ts';
import { startFakeImap, type FakeBody, type FakeImap } from '../helpers/fake-imap.ts';

const MAX_MESSAGE = 1 << 20;
const queueName = `hostile-imap-${randomUUID()}`;
let redis: Redis;
let queue: Queue;
let dataDir: string;
const servers: FakeImap[] = [];

beforeAll(async () => {
  redis = createRedis(inject('redisUrl'), 'producer');
  queue = createReportQueue(redis, queueName);
  dataDir = join(inject('dataDir'), `hostile-imap-${randomUUID()}`);
});

afterAll(async () => {
  for (const s of servers) await s.close();
  await queue.obliterate({ force: true });
  await queue.close();
  await closeRedis(redis);
});

async function fetcherFor(name: string, body: FakeBody, commandTimeoutMs: number, silentLogout = false) {
  const server = await startFakeImap(dataDir, body, { silentLogout });
  servers.push(server);
  const box = mailboxSchema.parse({
    name,
    host: 'localhost',
    port: server.port,
    tls: 'implicit',
    user: 'u',
    password: 'p',
    caFile: join(dataDir, 'certs/dev-cert.pem'),
    pollSeconds: 600,
  });
  const fetcher = new MailboxFetcher(box, {
    queue,
    redis,
    stateKey: `${queueName}:imap`,
    logger: createLogger('hostile-imap', 'silent'),
    metrics: fetcherMetrics(createRegistry('mailbox-fetcher')),
    limits: { maxMimeParts: 100, maxUnzippedBytes: 10 << 20, maxZipEntries: 10 },
    imap: { maxMessageBytes: MAX_MESSAGE, commandTimeoutMs },
    dkim: false,
  });
  return { server, fetcher, running: fetcher.run() };
}

const healthz = (port: number) =>
  new Promise<{ status: number; body: string }>((resolve, reject) => {
    request({ host: '127.0.0.1', port, path: '/healthz' }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    })
      .on('error', reject)
      .end();
  });

describe('hostile IMAP servers', () => {
  it('a literal far larger than announced is cut off at its first line; the other mailbox is read', async () => {
    const honest = corpusEmails().find((e) => !e.file.includes('empty'))!.raw;
    const good = await fetcherFor('good', { kind: 'honest', message: honest }, 10_000);
    // Announces 100 bytes, sends 200 MiB: read whole before (the size check trusted the announced size).
    const bad = await fetcherFor('bad', { kind: 'huge-literal', announced: 100, literal: 200 << 20 }, 10_000);
    const rssBefore = process.memoryUsage().rss;
    try {
      await until('the bad mailbox reported unhealthy', async () => (bad.fetcher.health.healthy ? undefined : true));
      expect(bad.fetcher.health.reason).toMatch(/literal|size|limit|exceed/i);
      // The client closed the connection long before the literal's end: what the server got out is what the
      // socket buffers took.
      expect(bad.server.bodyBytesSent()).toBeLessThan(32 << 20);
      expect(process.memoryUsage().rss - rssBefore).toBeLessThan(150 << 20);
      // The honest mailbox read its message, queued its report and marked it.
      await until('the good mailbox queued its report', async () => ((await queue.count()) >= 1 ? true : undefined));
      await until('the good message marked', async () =>
        good.server.commands.some((c) => /^UID STORE 1 \+FLAGS/i.test(c)) ? true : undefined,
      );
      expect(good.fetcher.health.healthy).toBe(true);
      // /healthz names the unhealthy mailbox and only it.
      const ops = createOpsServer(
        createRegistry('mailbox-fetcher'),
        async () => true,
        () => mailboxesHealth([good.fetcher, bad.fetcher]),
      );
      await new Promise<void>((resolve) => ops.listen(0, '127.0.0.1', resolve));
      const { status, body } = await healthz((ops.address() as { port: number }).port);
      ops.close();
      expect(status).toBe(503);
      const parsed = JSON.parse(body) as { status: string; mailboxes: Array<{ mailbox: string }> };
      expect(parsed.status).toBe('unhealthy');
      expect(parsed.mailboxes.map((m) => m.mailbox)).toEqual(['bad']);
    } finally {
      await Promise.all([good.fetcher.stop(), bad.fetcher.stop()]);
      await Promise.all([good.running, bad.running]);
    }
  });

  it('a FETCH that never ends, its bytes dripping, is ended at the command deadline', async () => {
    const bad = await fetcherFor('endless', { kind: 'endless', everyMs: 100 }, 1500);
    const started = Date.now();
    try {
      await until('the endless mailbox reported unhealthy', async () =>
        bad.fetcher.health.healthy ? undefined : true,
      );
      expect(bad.fetcher.health.reason).toMatch(/FETCH of 1 message\(s\) took longer than 1.5 s/);
      // Ended by the deadline, not by the 5-minute idle timeout that each dripped line resets.
      expect(Date.now() - started).toBeLessThan(20_000);
    } finally {
      await bad.fetcher.stop();
      await bad.running;
    }
  });

  it('a message larger than announced but within the literal bound is left alone, by its real bytes', async () => {
    // Announces 100 bytes, sends the limit plus one: no more than that is read, and the message is not queued.
    const before = await queue.count();
    // And it never answers LOGOUT (nor the end of IDLE): stopping the fetcher is not held by it.
    const bad = await fetcherFor(
      'liar',
      { kind: 'huge-literal', announced: 100, literal: MAX_MESSAGE + 1 },
      10_000,
      true,
    );
    try {
      await until('the liar mailbox read', async () =>
        bad.server.commands.some((c) => /^UID FETCH 1 .*BODY/i.test(c)) &&
        (await redis.hget(`${queueName}:imap:liar`, 'lastUid')) === '1'
          ? true
          : undefined,
      );
      expect(await queue.count()).toBe(before);
      expect(bad.server.commands.some((c) => /STORE/i.test(c))).toBe(false);
      await until('the fetcher idle', async () => (bad.server.commands.includes('IDLE') ? true : undefined));
      // Stopped within the LOGOUT deadline (5 s), though the server answers neither DONE nor LOGOUT.
      const stopped = Promise.all([bad.fetcher.stop(), bad.running]).then(() => 'stopped');
      expect(await Promise.race([stopped, new Promise((r) => setTimeout(() => r('held'), 15_000))])).toBe('stopped');
    } finally {
      await bad.fetcher.stop();
      await bad.running;
    }
  });
});
