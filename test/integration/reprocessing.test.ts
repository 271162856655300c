// Which reports the worker marks as stored again with other content (services/worker/reprocessing.ts), on the real
// Redis and ClickHouse: the reads skip the version look-up for every unmarked report, so a missed mark is a report
// counted by two versions' rows.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClickHouseClient } from '../../services/common/clickhouse.ts';
import { processReportJob } from '../../services/worker/process-job.ts';
import {
  processedKeyPrefix,
  reprocessingMarks,
  storedReportOf,
  type MarkFn,
  type StoredReport,
} from '../../services/worker/reprocessing.ts';
import { queryRows, testConfig, testDatabase, testWriter } from '../helpers/env.ts';

const config = testConfig();
let ch: ClickHouseClient;
let redis: Redis;
let mark: MarkFn;

/** A report of `domains` (one sts policy each) under the identity `id`, as the worker stores it. */
function rowsOf(id: string, domains: string[], signedMail = false) {
  const report = {
    'organization-name': 'reporter.example',
    'date-range': { 'start-datetime': '2025-02-01T00:00:00Z', 'end-datetime': '2025-02-01T23:59:59Z' },
    'contact-info': 'tlsrpt@reporter.example',
    'report-id': id,
    policies: domains.map((d) => ({
      policy: { 'policy-type': 'sts', 'policy-domain': d, 'policy-string': ['version: STSv1', 'mode: enforce'] },
      summary: { 'total-successful-session-count': 5, 'total-failure-session-count': 0 },
    })),
  };
  const job = {
    v: 1,
    receiptId: `rc-${id}${signedMail ? '-mail' : ''}`,
    receivedAt: new Date().toISOString(),
    channel: signedMail ? 'smtp' : 'https',
    bodyBase64: '',
    ...(signedMail ? { smtp: { dkim: { result: 'pass', submitterAligned: true } } } : {}),
  };
  job.bodyBase64 = Buffer.from(JSON.stringify(report)).toString('base64');
  const result = processReportJob(job, job.receiptId, { maxDecompressedBytes: 1 << 20 });
  if (result.outcome !== 'stored') throw new Error('not stored');
  return result.rows;
}

const ref = (id: string, domains: string[]): StoredReport => storedReportOf(rowsOf(id, domains))!;
const short = (key: string): string => key.slice(0, 8);
const marksOf = (rows: Array<{ policy_domain: string; report_key: string }>) =>
  rows.map((r) => `${short(r.report_key)} ${r.policy_domain}`).sort();

beforeAll(async () => {
  ch = await testDatabase(config);
  redis = new Redis(config.REDIS_URL);
  mark = reprocessingMarks({ redis, clickhouse: ch, config });
});

afterAll(async () => {
  redis.disconnect();
  await ch.command({ query: `DROP DATABASE IF EXISTS ${config.CLICKHOUSE_DATABASE}` });
  await ch.close();
});

describe('marks of reports stored again with other content', () => {
  it('none for a report seen once or stored again with the same rows; other content is marked under both versions’ domains', async () => {
    const first = ref('one', ['a.example']);
    expect(await mark([first])).toEqual([]);
    // By mail and by HTTPS: the same rows, in the same batch or later.
    expect(await mark([ref('one', ['a.example']), ref('one', ['a.example'])])).toEqual([]);
    // Other content in one batch: the second processing sees the first's record.
    const two = ref('two', ['b.example']);
    const inOneBatch = await mark([two, ref('two', ['c.example', 'b.example'])]);
    expect(marksOf(inOneBatch)).toEqual([`${short(two.reportKey)} b.example`, `${short(two.reportKey)} c.example`]);
    // Later, with a domain the first did not name: the first's domain (only in Redis) is marked too.
    const again = await mark([ref('one', ['d.example'])]);
    expect(marksOf(again)).toEqual([`${short(first.reportKey)} a.example`, `${short(first.reportKey)} d.example`]);
  });

  it('without Redis’ record (past the window, or Redis emptied), ClickHouse’s fingerprints and domains decide', async () => {
    const writer = testWriter(config, ch, { maxRows: 1000, maxWaitMs: 5 });
    await writer.write(rowsOf('stored', ['x.example', 'y.example']));
    await writer.close();
    const key = ref('stored', ['x.example']).reportKey;
    const forget = () => redis.del(`${processedKeyPrefix(config.QUEUE_NAME)}2025-02-01:${key}`);
    await forget();
    expect(await mark([ref('stored', ['x.example', 'y.example'])])).toEqual([]);
    await forget();
    // The new version names only z.example: x and y keep rows of the older one, so they are marked too.
    expect(marksOf(await mark([ref('stored', ['z.example'])]))).toEqual(
      ['x.example', 'y.example', 'z.example'].map((d) => `${short(key)} ${d}`),
    );
  });

  it('a version stored before fingerprints were counts as other content', async () => {
    const writer = testWriter(config, ch, { maxRows: 1000, maxWaitMs: 5 });
    await writer.write(rowsOf('older', ['o.example']));
    await writer.close();
    await ch.command({ query: 'TRUNCATE TABLE report_fingerprints' });
    const same = ref('older', ['o.example']);
    await redis.del(`${processedKeyPrefix(config.QUEUE_NAME)}2025-02-01:${same.reportKey}`);
    expect(marksOf(await mark([same]))).toEqual([`${short(same.reportKey)} o.example`]);
  });

  it('the writer stores the marks with the batch, before its rows, and every processing’s fingerprint', async () => {
    const writer = testWriter(config, ch, { maxRows: 1000, maxWaitMs: 5 });
    // The second copy outranks the first (a DKIM-aligned mail after a POST): both are stored, the mail's counted.
    await Promise.all([
      writer.write(rowsOf('batch', ['p.example'])),
      writer.write(rowsOf('batch', ['q.example'], true)),
    ]);
    await writer.close();
    const key = ref('batch', ['p.example']).reportKey;
    const marks = await queryRows<{ policy_domain: string; report_key: string }>(
      ch,
      `SELECT DISTINCT policy_domain, report_key FROM reprocessed_reports WHERE report_key = '${key}'`,
    );
    expect(marksOf(marks)).toEqual([`${short(key)} p.example`, `${short(key)} q.example`]);
    const [fingerprints] = await queryRows<{ n: number }>(
      ch,
      `SELECT uniqExact(fingerprint) AS n FROM report_fingerprints WHERE report_key = '${key}'`,
    );
    expect(fingerprints!.n).toBe(2);
  });
});
