// Large bodies under a backlog: a job holds no large body while it waits, and still stores the right one.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { Job, type Queue, type Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { ClickHouseClient } from '../../services/common/clickhouse.ts';
import { createLogger } from '../../services/common/logger.ts';
import { createReportQueue, enqueueReport } from '../../services/common/queue.ts';
import { createRedis } from '../../services/common/redis.ts';
import { BatchWriter, clickHouseInsert } from '../../services/worker/batch-writer.ts';
import { createReportWorker, RELOAD_BODY_OVER } from '../../services/worker/report-worker.ts';
import { closeWorkerSetup, queryRows, testConfig, testDatabase, until, testWriter } from '../helpers/env.ts';

const config = testConfig();
let ch: ClickHouseClient;
let producer: Redis;
let consumer: Redis;
let queue: Queue;
let worker: Worker;
let writer: BatchWriter;
/** Inserts wait here while set: the first batch stays in flight and every later job waits for room. */
let gate: Promise<void> | undefined;
const active = new Map<string, Job>();
const completed = new Map<string, { outcome: string }>();
const failed: string[] = [];
/** Events in the order they happened: `active <id>`, `completed <id>`. */
const events: string[] = [];

beforeAll(async () => {
  ch = await testDatabase(config);
  producer = createRedis(config.REDIS_URL, 'producer');
  consumer = createRedis(config.REDIS_URL, 'worker');
  queue = createReportQueue(producer, config.QUEUE_NAME);
  const insert = clickHouseInsert(ch);
  // A budget of one byte: any job's rows fill it, so each job waits for the batch before it to be stored.
  writer = testWriter(config, ch, {
    insert: async (table, chunks, rows) => {
      await gate;
      await insert(table, chunks, rows);
    },
    maxRows: 1_000_000,
    maxWaitMs: 20,
    maxBufferedBytes: 1,
  });
  worker = createReportWorker(config, { connection: consumer, writer, logger: createLogger('test', 'silent') });
  worker.on('active', (job) => {
    active.set(job.id ?? '', job);
    events.push(`active ${job.id}`);
  });
  worker.on('completed', (job, result: { outcome: string }) => {
    completed.set(job.id ?? '', result);
    events.push(`completed ${job.id}`);
  });
  worker.on('failed', (job) => failed.push(job?.id ?? ''));
});

afterAll(async () => {
  await closeWorkerSetup({ config, ch, worker, writer, queue, connections: [producer, consumer] });
});

/** A gzipped report whose body is over the threshold: random text does not compress. */
function largeBody(): { body: Buffer; reportId: string } {
  const reportId = randomUUID();
  const report = {
    'organization-name': 'Large Org',
    'date-range': { 'start-datetime': '2025-04-01T00:00:00Z', 'end-datetime': '2025-04-01T23:59:59Z' },
    'contact-info': 'tls@large.example',
    'report-id': reportId,
    policies: [
      {
        policy: { 'policy-type': 'no-policy-found', 'policy-domain': 'large.example' },
        summary: { 'total-successful-session-count': 7, 'total-failure-session-count': 1 },
        'failure-details': [
          {
            'result-type': 'certificate-expired',
            'failed-session-count': 1,
            'additional-information': randomBytes(RELOAD_BODY_OVER).toString('hex'),
          },
        ],
      },
    ],
  };
  const body = gzipSync(JSON.stringify(report));
  expect(body.toString('base64').length).toBeGreaterThan(RELOAD_BODY_OVER);
  return { body, reportId };
}

async function send(body: Buffer): Promise<string> {
  const receiptId = randomUUID();
  await enqueueReport(
    queue,
    { v: 1, receiptId, receivedAt: new Date().toISOString(), channel: 'https', bodyBase64: body.toString('base64') },
    5_000,
  );
  return receiptId;
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('large bodies under a backlog', () => {
  it('jobs waiting for room or for their batch hold no large body, and each stores its own', async () => {
    let open!: () => void;
    gate = new Promise<void>((r) => (open = r));
    const sent = Array.from({ length: 4 }, () => largeBody());
    const ids: string[] = [];
    for (const { body } of sent) ids.push(await send(body));
    // Every job is taken: the first one's batch is held at the gate, the three others wait for room.
    await until('all four jobs active', async () => (ids.every((id) => active.has(id)) ? true : undefined));
    await new Promise((r) => setTimeout(r, 200));
    const held = ids.map((id) => (active.get(id)!.data as { bodyBase64: string }).bodyBase64.length);
    expect(held).toEqual([0, 0, 0, 0]);
    expect(completed.size).toBe(0);

    open();
    gate = undefined;
    for (const id of ids)
      expect(await until(`job ${id}`, async () => completed.get(id), 45_000)).toMatchObject({ outcome: 'stored' });
    expect(failed).toEqual([]);
    // Each receipt stored the body it was sent with (read again from Redis for the three that waited).
    const rows = await queryRows<{ receipt_id: string; body_sha256: string; outcome: string }>(
      ch,
      `SELECT receipt_id, body_sha256, outcome FROM receipts`,
    );
    expect(new Map(rows.map((r) => [r.receipt_id, [r.body_sha256, r.outcome]]))).toEqual(
      new Map(ids.map((id, i) => [id, [sha256(sent[i]!.body), 'stored']])),
    );
    const reports = await queryRows<{ report_id: string }>(ch, `SELECT report_id FROM reports ORDER BY report_id`);
    expect(reports.map((r) => r.report_id)).toEqual(sent.map((s) => s.reportId).sort());
  });

  it('a body that cannot be read again fails that job alone: it is retried and the others go on', async () => {
    let open!: () => void;
    gate = new Promise<void>((r) => (open = r));
    const reread = vi.spyOn(Job, 'fromId').mockRejectedValueOnce(new Error('injected: redis unavailable'));
    try {
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) ids.push(await send(largeBody().body));
      await until('all three jobs active', async () => (ids.every((id) => active.has(id)) ? true : undefined));
      open();
      gate = undefined;
      for (const id of ids) await until(`job ${id}`, async () => completed.get(id), 45_000);
      // The second job (first to read its body again) failed once and was retried; the third did not wait for that
      // retry to come back (the failed job handed its turn on).
      expect(failed).toEqual([ids[1]]);
      expect(reread).toHaveBeenCalled();
      const retried = events.lastIndexOf(`active ${ids[1]}`);
      expect(events.indexOf(`active ${ids[1]}`)).toBeLessThan(retried);
      expect(events.indexOf(`completed ${ids[2]}`)).toBeLessThan(retried);
      const [count] = await queryRows<{ c: number }>(
        ch,
        `SELECT count() AS c FROM receipts WHERE receipt_id IN (${ids.map((id) => `'${id}'`).join(',')})`,
      );
      expect(count!.c).toBe(3);
    } finally {
      reread.mockRestore();
    }
  });
});
