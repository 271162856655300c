// Per-file test environment: its own ClickHouse database and queue name on the suite's shared servers.
import { randomUUID } from 'node:crypto';
import type { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { inject } from 'vitest';
import { createClickHouse, type ClickHouseClient } from '../../services/common/clickhouse.ts';
import { loadConfig, type Config } from '../../services/common/config.ts';
import { migrate } from '../../services/common/migrations.ts';
import {
  BatchWriter,
  clickHouseInsert,
  type BatchWriterOptions,
  type InsertFn,
} from '../../services/worker/batch-writer.ts';
import { reprocessingMarks } from '../../services/worker/reprocessing.ts';
import { copyDecisions } from '../../services/worker/copies.ts';
import { processReportJob } from '../../services/worker/process-job.ts';
import { INSERT_PHASES } from '../../schemas/rows.ts';

export function testConfig(overrides: Record<string, string> = {}): Config {
  const id = randomUUID().replaceAll('-', '').slice(0, 12);
  return loadConfig({
    NODE_ENV: 'test',
    LOG_LEVEL: 'silent',
    DATA_DIR: inject('dataDir'),
    REDIS_URL: inject('redisUrl'),
    CLICKHOUSE_URL: inject('clickhouseUrl'),
    CLICKHOUSE_DATABASE: `test_${id}`,
    QUEUE_NAME: `test-${id}`,
    WORKER_BATCH_MAX_WAIT_MS: '50',
    // Ephemeral ports, so parallel test files and a running local stack never collide.
    WORKER_METRICS_PORT: '0',
    SMTP_METRICS_PORT: '0',
    HTTP_METRICS_PORT: '0',
    ...overrides,
  });
}

/** A migrated database of its own (up to `until`, a migration's number: as an older release left it), and a client. */
export async function testDatabase(config: Config, until?: string): Promise<ClickHouseClient> {
  await migrate(config, () => {}, until);
  return createClickHouse(config);
}

/** Stops a worker running in the test's process (then its writer, queue and connections) and drops its database. */
export async function closeWorkerSetup(s: {
  config: Config;
  ch: ClickHouseClient;
  worker: Worker;
  writer: BatchWriter;
  queue: Queue;
  connections: Redis[];
}): Promise<void> {
  await s.worker.close();
  await s.writer.close();
  await s.queue.close();
  for (const c of s.connections) c.disconnect();
  await s.ch.command({ query: `DROP DATABASE IF EXISTS ${s.config.CLICKHOUSE_DATABASE}` });
  await s.ch.close();
}

/**
 * The worker's batch writer on the test's database, deciding copies and marking the reports it stores again as the
 * worker does (on the test's Redis, under its queue name). `insert` replaces the ClickHouse insert (to inject a fault); closing the writer
 * closes its Redis connection.
 */
export function testWriter(
  config: Config,
  ch: ClickHouseClient,
  options: Omit<BatchWriterOptions, 'mark' | 'decide'> & { insert?: InsertFn },
): BatchWriter {
  const redis = new Redis(config.REDIS_URL, { lazyConnect: true });
  const { insert = clickHouseInsert(ch), ...rest } = options;
  const writer = new BatchWriter(insert, {
    ...rest,
    mark: reprocessingMarks({ redis, clickhouse: ch, config }),
    decide: copyDecisions({ redis, clickhouse: ch, config }),
  });
  const close = writer.close.bind(writer);
  writer.close = async () => {
    await close();
    redis.disconnect();
  };
  return writer;
}

/** `fn` over every item, `lanes` at a time: the read-path comparisons wait on round trips, not on the server. */
export async function inLanes<T>(items: readonly T[], lanes: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(lanes, items.length) }, lane));
}

export async function queryRows<T>(ch: ClickHouseClient, query: string): Promise<T[]> {
  const result = await ch.query({
    query,
    format: 'JSONEachRow',
    clickhouse_settings: { output_format_json_quote_64bit_integers: 0 },
  });
  return await result.json<T>();
}

export async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Stores one report body the way the worker does (same processing, same tables, same order), without the
 * queue: for tests about what is read back, not about how it got there.
 */
export async function storeDirectly(ch: ClickHouseClient, body: Buffer, receiptId: string): Promise<void> {
  const job = {
    v: 1,
    receiptId,
    receivedAt: new Date().toISOString(),
    channel: 'https',
    bodyBase64: body.toString('base64'),
  };
  const rows = processReportJob(job, receiptId, { maxDecompressedBytes: 50 * 1024 * 1024 }).rows;
  for (const phase of INSERT_PHASES) {
    for (const table of phase) {
      const values: readonly object[] = rows[table];
      if (values.length > 0) await ch.insert({ table, values, format: 'JSONEachRow' });
    }
  }
}
