// Two queues of live checks: every managed domain on a schedule (POSTURE_INTERVAL_MS, one run at a time across
// schedulers), and "check now" for one domain, asked by the API (common/check-now.ts).
import { Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { ClickHouseClient } from '../common/clickhouse.ts';
import { checkNowQueueName, type CheckNowJob, type CheckNowResult } from '../common/check-now.ts';
import type { Db } from '../common/db.ts';
import type { Logger } from '../common/logger.ts';
import { isManagedDomain } from '../common/posture-store.ts';
import { startScheduledJob, type ScheduledJob } from '../common/scheduled-job.ts';
import { checkAllDomains, runChecks, type PostureConfig } from './posture/run.ts';

export interface PostureDeps {
  redis: Redis;
  clickhouse: ClickHouseClient;
  db: Db;
  logger: Logger;
}

export function startPostureChecks(
  config: PostureConfig & { QUEUE_NAME: string; POSTURE_INTERVAL_MS: number },
  deps: PostureDeps,
): ScheduledJob {
  const { redis, clickhouse, db, logger } = deps;
  const scheduled =
    config.POSTURE_INTERVAL_MS > 0
      ? startScheduledJob(
          redis,
          `${config.QUEUE_NAME}-posture-checks`,
          'posture-checks',
          config.POSTURE_INTERVAL_MS,
          () => checkAllDomains(clickhouse, config, db, logger),
          logger,
        )
      : undefined;
  // A few on-demand checks side by side; each bounded by POSTURE_DOMAIN_TIMEOUT_MS.
  const now = new Worker<CheckNowJob, CheckNowResult>(
    checkNowQueueName(config.QUEUE_NAME),
    async (job) => {
      const domain = job.data.domain;
      // Checked again here: only managed domains are ever checked, whoever put the job in the queue.
      if (!(await isManagedDomain(clickhouse, config.POSTURE_DOMAINS, domain)))
        throw new Error(`${domain} is not a managed domain: not checked`);
      return await runChecks(clickhouse, domain, config, new Date(), db);
    },
    { connection: redis.duplicate(), concurrency: config.POSTURE_CONCURRENCY },
  );
  now.on('error', (err) => logger.warn({ err }, 'check-now worker error'));
  return {
    close: async () => {
      await now.close();
      await scheduled?.close();
    },
  };
}
