// npm run replay-failed puts jobs that exhausted their retries back in the queue, and they are then stored.
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { UnrecoverableError, Worker } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../services/common/logger.ts';
import { createReportQueue, enqueueReport } from '../../services/common/queue.ts';
import { createRedis } from '../../services/common/redis.ts';
import { quoteString } from '../../services/common/sql.ts';
import { BatchWriter, clickHouseInsert } from '../../services/worker/batch-writer.ts';
import { createReportWorker } from '../../services/worker/report-worker.ts';
import { corpusReports } from '../helpers/corpus.ts';
import { queryRows, testConfig, testDatabase, until } from '../helpers/env.ts';
import { configEnv } from '../helpers/services.ts';

const run = promisify(execFile);

describe('npm run replay-failed', () => {
  it('moves failed jobs back; the worker then stores them', async () => {
    const config = testConfig();
    const ch = await testDatabase(config);
    const producer = createRedis(config.REDIS_URL, 'producer');
    const queue = createReportQueue(producer, config.QUEUE_NAME);
    await queue.waitUntilReady();
    await enqueueReport(
      queue,
      {
        v: 1,
        receiptId: 'replay-1',
        receivedAt: new Date().toISOString(),
        channel: 'https',
        bodyBase64: gzipSync(corpusReports()[0]!.body).toString('base64'),
      },
      5000,
    );
    // A worker that gives up on it, as one would after exhausting its retries.
    const failing = new Worker(
      config.QUEUE_NAME,
      async () => {
        throw new UnrecoverableError('injected: gave up');
      },
      { connection: createRedis(config.REDIS_URL, 'worker') },
    );
    await until('failed', async () => ((await queue.getFailedCount()) === 1 ? true : undefined));
    await failing.close();

    const root = resolve(import.meta.dirname, '../..');
    await run(process.execPath, ['--import', 'tsx', 'deploy/scripts/replay-failed.ts'], {
      cwd: root,
      env: { PATH: process.env.PATH ?? '', ...configEnv(config) },
    });
    expect(await queue.getFailedCount()).toBe(0);

    const writer = new BatchWriter(clickHouseInsert(ch), { maxRows: 1000, maxWaitMs: 20 });
    const worker = createReportWorker(config, {
      connection: createRedis(config.REDIS_URL, 'worker'),
      writer,
      logger: createLogger('t', 'silent'),
    });
    try {
      const row = await until(
        'stored',
        async () =>
          (
            await queryRows<{ outcome: string }>(
              ch,
              `SELECT outcome FROM receipts WHERE receipt_id = ${quoteString('replay-1')}`,
            )
          )[0],
      );
      expect(row.outcome).toBe('stored');
    } finally {
      await worker.close();
      await writer.close();
      await queue.close();
      producer.disconnect();
      await ch.command({ query: `DROP DATABASE IF EXISTS ${config.CLICKHOUSE_DATABASE}` });
      await ch.close();
    }
  });
});
