// npm run replay-failed puts jobs that exhausted their retries back in the queue, and they are then stored;
// npm run replay-rejects does the same for rejected receipts.
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { UnrecoverableError, Worker } from 'bullmq';
import { reportJobSchema } from '../../schemas/job.ts';
import { INSERT_PHASES } from '../../schemas/rows.ts';
import { createDb, listRejects } from '../../services/api/queries.ts';
import { describe, expect, it } from 'vitest';
import type { ClickHouseClient } from '../../services/common/clickhouse.ts';
import type { Config } from '../../services/common/config.ts';
import { ReportRejectedError } from '../../services/common/errors.ts';
import { createLogger } from '../../services/common/logger.ts';
import { createReportQueue, enqueueReport } from '../../services/common/queue.ts';
import { createRedis } from '../../services/common/redis.ts';
import { quoteString } from '../../services/common/clickhouse-compat.ts';
import { BatchWriter } from '../../services/worker/batch-writer.ts';
import { createReportWorker } from '../../services/worker/report-worker.ts';
import { rejectedRows } from '../../services/worker/rows.ts';
import { corpusReports } from '../helpers/corpus.ts';
import { queryRows, testConfig, testDatabase, until, testWriter } from '../helpers/env.ts';
import { configEnv } from '../helpers/services.ts';

const run = promisify(execFile);

/** A database and a queue of this test's own, with the producer connection behind the queue. */
async function queueSetup() {
  const config = testConfig();
  const ch = await testDatabase(config);
  const producer = createRedis(config.REDIS_URL, 'producer');
  const queue = createReportQueue(producer, config.QUEUE_NAME);
  await queue.waitUntilReady();
  return { config, ch, producer, queue };
}

/** The report worker, in this process, on that queue and database. */
function startWorker(config: Config, ch: ClickHouseClient): { writer: BatchWriter; worker: Worker } {
  const writer = testWriter(config, ch, { maxRows: 1000, maxWaitMs: 20 });
  const worker = createReportWorker(config, {
    connection: createRedis(config.REDIS_URL, 'worker'),
    writer,
    logger: createLogger('t', 'silent'),
  });
  return { writer, worker };
}

describe('npm run replay-failed', () => {
  it('moves failed jobs back; the worker then stores them', async () => {
    const { config, ch, producer, queue } = await queueSetup();
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

    const { writer, worker } = startWorker(config, ch);
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

describe('npm run replay-rejects', () => {
  it('queues the chosen reasons again, once; the worker stores them and they leave the rejects listing', async () => {
    const { config, ch, producer, queue } = await queueSetup();
    const receivedAt = new Date();
    // Two receipts rejected by a bug of ours (their bodies are good reports) and one that is really not JSON.
    const rejected = [
      ['bug-1', gzipSync(corpusReports()[0]!.body), 'internal-error'],
      ['bug-2', gzipSync(corpusReports()[1]!.body), 'internal-error'],
      ['junk-1', Buffer.from('not json'), 'not-json'],
    ] as const;
    for (const [receiptId, body, reason] of rejected) {
      const job = reportJobSchema.parse({
        v: 1,
        receiptId,
        receivedAt: receivedAt.toISOString(),
        channel: 'https',
        bodyBase64: body.toString('base64'),
      });
      const rows = rejectedRows(job, body, new ReportRejectedError(reason, 'injected'), receivedAt);
      for (const table of INSERT_PHASES.flat()) {
        const values: readonly object[] = rows[table];
        if (values.length > 0) await ch.insert({ table, values, format: 'JSONEachRow' });
      }
    }
    const root = resolve(import.meta.dirname, '../..');
    const replay = async (...args: string[]) =>
      JSON.parse(
        (
          await run(process.execPath, ['--import', 'tsx', 'deploy/scripts/replay-rejects.ts', ...args], {
            cwd: root,
            env: { PATH: process.env.PATH ?? '', ...configEnv(config, { LOG_LEVEL: 'info' }) },
          })
        ).stdout
          .trim()
          .split('\n')
          .at(-1)!,
      ) as { queued: number; alreadyQueued: number; unreadable: number };
    const day = receivedAt.toISOString().slice(0, 10);
    const outcomes = async () =>
      await queryRows<{ receipt_id: string; outcome: string }>(
        ch,
        `SELECT receipt_id, argMax(outcome, version) AS outcome FROM receipts GROUP BY receipt_id ORDER BY receipt_id`,
      );
    const db = createDb(ch, { timeoutSeconds: 10, maxRows: 1000 });
    const listed = async () =>
      (await listRejects(db, { from: day, to: day }, { limit: 10 })).rejects.map((r) => r.receiptId).sort();

    try {
      await expect(
        run(process.execPath, ['--import', 'tsx', 'deploy/scripts/replay-rejects.ts'], { cwd: root }),
      ).rejects.toThrow(/usage/);
      expect(await replay('--reason', 'internal-error', '--dry-run')).toMatchObject({ queued: 2 });
      expect(await queue.count()).toBe(0);
      expect(await replay('--reason', 'internal-error', '--from', day, '--to', day)).toMatchObject({ queued: 2 });
      expect(await queue.count()).toBe(2);
      // While they wait in the queue, a second run queues nothing twice.
      expect(await replay('--reason', 'internal-error')).toMatchObject({ queued: 0, alreadyQueued: 2 });

      const { writer, worker } = startWorker(config, ch);
      try {
        await until('both stored', async () => {
          const rows = await outcomes();
          return rows.filter((r) => r.outcome === 'stored').length === 2 ? rows : undefined;
        });
      } finally {
        await worker.close();
        await writer.close();
      }
      expect(await outcomes()).toEqual([
        { receipt_id: 'bug-1', outcome: 'stored' },
        { receipt_id: 'bug-2', outcome: 'stored' },
        { receipt_id: 'junk-1', outcome: 'rejected' },
      ]);
      expect(await listed()).toEqual(['junk-1']);
      // Stored now: nothing left to replay for that reason.
      expect(await replay('--reason', 'internal-error')).toMatchObject({ queued: 0, alreadyQueued: 0 });
    } finally {
      await queue.close();
      producer.disconnect();
      await ch.command({ query: `DROP DATABASE IF EXISTS ${config.CLICKHOUSE_DATABASE}` });
      await ch.close();
    }
  });
});
