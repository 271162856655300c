// Which copy of a report counts (services/worker/trust.ts): a copy never replaces one better authenticated (a
// DKIM-aligned mail > a mail without > an HTTPS POST), among equals the first received stays, a later copy with other
// figures is a conflict (kept, shown, counted nowhere) until an operator chooses it, and a re-delivery of the same
// figures changes nothing. Copies as the SMTP receiver and the HTTPS receiver queue them, written by two workers'
// writers; an operator's choice goes through the real queue and worker.
import { dkimVerdict } from '../../services/api/ui/pages/reports.ts';
import { randomUUID } from 'node:crypto';
import type { Queue, Worker } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClickHouseClient } from '../../services/common/clickhouse.ts';
import { createLogger } from '../../services/common/logger.ts';
import { createReportQueue, enqueueReport } from '../../services/common/queue.ts';
import { createRedis } from '../../services/common/redis.ts';
import { chooseCopy } from '../../services/api/copies.ts';
import { createDb, domainSummary, getReport, type Db } from '../../services/api/queries.ts';
import type { BatchWriter } from '../../services/worker/batch-writer.ts';
import { processReportJob } from '../../services/worker/process-job.ts';
import { createReportWorker } from '../../services/worker/report-worker.ts';
import { queryRows, testConfig, testDatabase, testWriter, until } from '../helpers/env.ts';
import { googleLikeReport } from '../helpers/forgeable.ts';

const config = testConfig();
let ch: ClickHouseClient;
let db: Db;
let writers: [BatchWriter, BatchWriter];
let queue: Queue;
let worker: Worker;
const all = { name: 'operator', domains: undefined };
const range = { from: '2026-11-01', to: '2026-11-30' };

type Via = 'mail-dkim' | 'mail-dkim-no-key' | 'mail' | 'https';

let clock = Date.parse('2026-11-03T06:00:00Z');

/** One copy as a receiver queues it, received a second after the one before; its rows for a writer. */
function copy(json: string, via: Via, receiptId = `${via}-${randomUUID()}`) {
  clock += 1000;
  const job = {
    v: 1,
    receiptId,
    receivedAt: new Date(clock).toISOString(),
    channel: via === 'https' ? 'https' : 'smtp',
    remoteAddress: '203.0.113.9',
    bodyBase64: Buffer.from(json).toString('base64'),
    ...(via === 'https'
      ? {}
      : {
          smtp: {
            envelopeFrom: 'noreply-smtp-tls-reporting@google.com',
            dkim:
              via === 'mail-dkim'
                ? { result: 'pass', signingDomain: 'google.com', submitterAligned: true }
                : via === 'mail-dkim-no-key'
                  ? { result: 'fail', signingDomain: 'google.com', submitterAligned: true, comment: 'no key' }
                  : { result: 'none', submitterAligned: false },
          },
        }),
  };
  const r = processReportJob(job, receiptId, { maxDecompressedBytes: 1 << 20 }, new Date(clock + 500));
  if (r.outcome !== 'stored') throw new Error(r.detail);
  return { receiptId, key: r.reportKey, rows: r.rows };
}

/** Copies written in turn, each once the one before is stored, by the given worker's writer. */
async function inTurn(...copies: Array<[ReturnType<typeof copy>, 0 | 1]>) {
  const outcomes = [];
  for (const [c, w] of copies) outcomes.push(await writers[w].write(c.rows));
  return outcomes;
}

const failed = async (domain: string) => (await domainSummary(db, domain, range)).failedSessions;

async function copiesOf(key: string) {
  const r = await getReport(db, all, key, { detailLimit: 10 });
  return {
    conflicts: r!.conflicts,
    states: Object.fromEntries(r!.copies.map((c) => [c.receiptId, `${c.state} ${c.trust} ${c.failedSessions}`])),
  };
}

const outcomeOf = async (receiptId: string) =>
  (
    await queryRows<{ outcome: string }>(
      ch,
      `SELECT argMax(outcome, version) AS outcome FROM receipts WHERE receipt_id = '${receiptId}'`,
    )
  )[0]?.outcome;

beforeAll(async () => {
  ch = await testDatabase(config);
  db = createDb(ch, { timeoutSeconds: 30, maxRows: 100_000 });
  writers = [
    testWriter(config, ch, { maxRows: 1000, maxWaitMs: 5 }),
    testWriter(config, ch, { maxRows: 1000, maxWaitMs: 5 }),
  ];
  const connection = createRedis(config.REDIS_URL, 'producer');
  queue = createReportQueue(connection, config.QUEUE_NAME);
  worker = createReportWorker(config, {
    connection: createRedis(config.REDIS_URL, 'worker'),
    writer: writers[0],
    logger: createLogger('trust', 'silent'),
  });
});

afterAll(async () => {
  await worker.close();
  await queue.close();
  for (const w of writers) await w.close();
  await ch.command({ query: `DROP DATABASE IF EXISTS ${config.CLICKHOUSE_DATABASE}` });
  await ch.close();
});

describe("a delivery's DKIM verdict", () => {
  it('carries its reason: "fail: no key", as the verifier said it', async () => {
    const mail = copy(googleLikeReport('unsigned-key.example', 10, 0), 'mail-dkim-no-key');
    expect(await inTurn([mail, 0])).toEqual(['stored']);
    const r = await getReport(db, all, mail.key, { detailLimit: 10 });
    expect(r!.receipts.map((d) => [d.dkim_result, d.dkim_reason])).toEqual([['fail', 'no key']]);
    expect(dkimVerdict(r!.receipts[0]!)).toBe('fail: no key (d=google.com, aligned)');
    expect(dkimVerdict({ dkim_result: 'pass', dkim_reason: 'good signature', dkim_domain: 'google.com' })).toBe(
      'pass (d=google.com)',
    );
  });
});

describe('which copy of a report counts', () => {
  it('a forged POST after the signed mail is a conflict: the figures stay the mail’s, the copy is shown', async () => {
    const mail = copy(googleLikeReport('after.example', 1000, 500), 'mail-dkim');
    const forged = copy(googleLikeReport('after.example', 1500, 0), 'https');
    expect(await inTurn([mail, 0], [forged, 1])).toEqual(['stored', 'conflict']);
    expect(forged.key).toBe(mail.key);
    expect(await failed('after.example')).toBe(500);
    expect(await copiesOf(mail.key)).toEqual({
      conflicts: 1,
      states: {
        [mail.receiptId]: 'counted mail-dkim-aligned 500',
        [forged.receiptId]: 'conflict https-post 0',
      },
    });
    expect(await outcomeOf(forged.receiptId)).toBe('conflict');
    // The report's delivery is still the mail's, and its text is the mail's; the forged text is kept apart.
    const r = await getReport(db, all, mail.key, { detailLimit: 10 });
    expect(r!.report).toMatchObject({ channel: 'smtp', dkim_result: 'pass' });
    expect(r!.raw).toMatchObject({
      policies: [{ summary: { 'total-failure-session-count': 500 } }],
    });
    const [texts] = await queryRows<{ n: number }>(
      ch,
      `SELECT count() AS n FROM raw_reports WHERE report_key = '${mail.key}'`,
    );
    expect(Number(texts!.n)).toBe(2);
  });

  it('a forged POST before the signed mail is replaced by it, and kept as a conflict', async () => {
    const forged = copy(googleLikeReport('before.example', 1500, 0), 'https');
    const mail = copy(googleLikeReport('before.example', 1000, 500), 'mail-dkim');
    expect(await inTurn([forged, 0], [mail, 1])).toEqual(['stored', 'stored']);
    expect(await failed('before.example')).toBe(500);
    expect((await copiesOf(mail.key)).states).toEqual({
      [mail.receiptId]: 'counted mail-dkim-aligned 500',
      [forged.receiptId]: 'conflict https-post 0',
    });
  });

  it('among equals the first received stays, whatever order they are processed in', async () => {
    // Two POSTs, then two unsigned mails: the later-received one processed first.
    const first = copy(googleLikeReport('equals.example', 900, 100), 'https');
    const second = copy(googleLikeReport('equals.example', 1000, 0), 'https');
    expect(await inTurn([second, 0], [first, 1])).toEqual(['stored', 'stored']);
    expect(await failed('equals.example')).toBe(100);
    expect((await copiesOf(first.key)).states).toEqual({
      [first.receiptId]: 'counted https-post 100',
      [second.receiptId]: 'conflict https-post 0',
    });
    const a = copy(googleLikeReport('mails.example', 10, 5), 'mail');
    const b = copy(googleLikeReport('mails.example', 15, 0), 'mail');
    expect(await inTurn([a, 1], [b, 0])).toEqual(['stored', 'conflict']);
    expect(await failed('mails.example')).toBe(5);
  });

  it('a re-delivery of the same figures changes nothing: no conflict, the better copy named', async () => {
    const json = googleLikeReport('same.example', 70, 30);
    const post = copy(json, 'https');
    const mail = copy(json, 'mail-dkim');
    const again = copy(json, 'https');
    expect(await inTurn([post, 0], [mail, 1], [again, 0])).toEqual(['stored', 'stored', 'duplicate']);
    expect(await failed('same.example')).toBe(30);
    expect(await copiesOf(post.key)).toEqual({
      conflicts: 0,
      states: {
        [mail.receiptId]: 'counted mail-dkim-aligned 30',
        [post.receiptId]: 'same-figures https-post 30',
        [again.receiptId]: 'same-figures https-post 30',
      },
    });
    expect(await outcomeOf(again.receiptId)).toBe('stored');
  });

  it('two workers with the mail and the POST in flight at once: the mail counts, in either order', async () => {
    for (const [domain, order] of [
      ['race1.example', [0, 1]],
      ['race2.example', [1, 0]],
    ] as const) {
      const mail = copy(googleLikeReport(domain, 1000, 500), 'mail-dkim');
      const forged = copy(googleLikeReport(domain, 1500, 0), 'https');
      // Side by side, each at its own worker, in one batch window.
      const outcomes = await Promise.all([writers[order[0]].write(mail.rows), writers[order[1]].write(forged.rows)]);
      expect(outcomes[0]).toBe('stored');
      expect(await failed(domain)).toBe(500);
      expect((await copiesOf(mail.key)).states[forged.receiptId]).toBe('conflict https-post 0');
    }
  });

  it("an operator's choice counts a conflict's figures, and outranks copies received after it", async () => {
    const first = copy(googleLikeReport('choice.example', 900, 100), 'https');
    const second = copy(googleLikeReport('choice.example', 1000, 0), 'https');
    await inTurn([first, 0], [second, 1]);
    expect(await failed('choice.example')).toBe(100);
    const enqueue = (job: Parameters<typeof enqueueReport>[1]) => enqueueReport(queue, job, 10_000);
    const chosen = await chooseCopy(
      db,
      { key: first.key, receiptId: second.receiptId, by: 'operator', now: new Date() },
      enqueue,
    );
    // Its copy row comes with the report's last insert phase, after the figures.
    const { states } = await until('the chosen copy counted', async () => {
      const c = await copiesOf(first.key);
      return c.states[chosen.queued] === 'counted operator-choice 0' ? c : undefined;
    });
    expect(await failed('choice.example')).toBe(0);
    expect(states[first.receiptId]).toBe('conflict https-post 100');
    // A signed mail with other figures, later: the operator's choice stays.
    const late = copy(googleLikeReport('choice.example', 800, 200), 'mail-dkim');
    expect(await inTurn([late, 1])).toEqual(['conflict']);
    expect(await failed('choice.example')).toBe(0);
    await expect(
      chooseCopy(db, { key: first.key, receiptId: 'no-such-copy', by: 'operator', now: new Date() }, enqueue),
    ).rejects.toThrow(/has no copy no-such-copy/);
  });
});
