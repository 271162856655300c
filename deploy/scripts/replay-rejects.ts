// npm run replay-rejects -- --reason internal-error[,schema-invalid…] [--from YYYY-MM-DD] [--to YYYY-MM-DD] [--dry-run]
// Puts rejected receipts back in the queue with their receipt id, body and metadata as first received: after fixing
// the bug behind `internal-error` rejects, or after a release that accepts what an older one refused. The worker
// processes them again; a receipt it stores gets a newer receipt row (the reject's is replaced in every view) and
// leaves the rejects listing, while its reject row stays as history. Receipts stored since, or already in the queue,
// are skipped, so running it twice queues nothing twice.
import { parseArgs } from 'node:util';
import { createClickHouse } from '../../services/common/clickhouse.ts';
import { loadConfig } from '../../services/common/config.ts';
import { REJECT_REASONS } from '../../services/common/errors.ts';
import { createLogger } from '../../services/common/logger.ts';
import { createReportQueue, queueOnce } from '../../services/common/queue.ts';
import { closeRedis, createRedis } from '../../services/common/redis.ts';
import { jobFromReject, type RejectedReceipt } from '../../schemas/job.ts';
import { rejectDates, rejectPageSql, rejectRowsSql } from './replay-rejects-sql.ts';

const usage =
  'usage: npm run replay-rejects -- --reason <reason>[,<reason>…] [--from YYYY-MM-DD] [--to YYYY-MM-DD] [--dry-run]';
const { values } = parseArgs({
  options: {
    reason: { type: 'string' },
    from: { type: 'string' },
    to: { type: 'string' },
    'dry-run': { type: 'boolean', default: false },
  },
});
const reasons = (values.reason ?? '').split(',').filter((r) => r !== '');
const unknown = reasons.filter((r) => !(REJECT_REASONS as readonly string[]).includes(r));
const badDate = [values.from, values.to].find((d) => d !== undefined && !/^\d{4}-\d{2}-\d{2}$/.test(d));
if (reasons.length === 0 || unknown.length > 0 || badDate !== undefined) {
  if (unknown.length > 0) console.error(`unknown reason ${unknown.join(', ')}; one of: ${REJECT_REASONS.join(', ')}`);
  if (badDate !== undefined) console.error(`not a date: ${badDate}`);
  console.error(usage);
  process.exit(2);
}

const config = loadConfig();
const log = createLogger('replay-rejects', config.LOG_LEVEL);
const ch = createClickHouse(config);
const connection = createRedis(config.REDIS_URL, 'producer');
const queue = createReportQueue(connection, config.QUEUE_NAME);

const dates = rejectDates(values.from, values.to);
const counts = { queued: 0, alreadyQueued: 0, unreadable: 0 };
let after = '';
for (;;) {
  const page = await ch.query({
    query: rejectPageSql(after, reasons, dates),
    format: 'JSONEachRow',
  });
  const ids = (await page.json<{ receipt_id: string }>()).map((r) => r.receipt_id);
  if (ids.length === 0) break;
  after = ids[ids.length - 1]!;
  const result = await ch.query({ query: rejectRowsSql(ids), format: 'JSONEachRow' });
  const rows = await result.json<RejectedReceipt & { reason: string }>();
  for (const row of rows) {
    let job;
    try {
      job = jobFromReject(row);
    } catch (err) {
      counts.unreadable++;
      log.warn({ receiptId: row.receipt_id, err }, 'not a job');
      continue;
    }
    if ((await queueOnce(queue, job, values['dry-run'])) === 'already-queued') {
      counts.alreadyQueued++;
      continue;
    }
    counts.queued++;
    log.info({ receiptId: job.receiptId, reason: row.reason, dryRun: values['dry-run'] }, 'queued again');
  }
}
log.info({ queue: config.QUEUE_NAME, reasons, dryRun: values['dry-run'], ...counts }, 'replay done');
await queue.close();
await closeRedis(connection);
await ch.close();
