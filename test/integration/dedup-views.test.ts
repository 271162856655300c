// The dedup views: the newest version wins for every column (NULL included), and a report delivered by mail and
// over HTTPS shows the same delivery facts whatever order the copies were processed in; the API's one-report read
// (which groups only that report's rows) agrees with the view.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClickHouseClient } from '../../services/common/clickhouse.ts';
import { createDb, getReport } from '../../services/api/queries.ts';
import { BatchWriter } from '../../services/worker/batch-writer.ts';
import { processReportJob } from '../../services/worker/process-job.ts';
import { queryRows, testConfig, testDatabase, testWriter } from '../helpers/env.ts';

const config = testConfig();
let ch: ClickHouseClient;
let writer: BatchWriter;
let clock = Date.parse('2026-11-01T00:00:00Z');

const report = (id: string, contact: string | undefined, detail: Record<string, unknown>) =>
  JSON.stringify({
    'organization-name': 'Order Org',
    'date-range': { 'start-datetime': '2026-10-01T00:00:00Z', 'end-datetime': '2026-10-01T23:59:59Z' },
    ...(contact === undefined ? {} : { 'contact-info': contact }),
    'report-id': id,
    policies: [
      {
        policy: { 'policy-type': 'sts', 'policy-domain': 'order.example' },
        summary: { 'total-successful-session-count': 5, 'total-failure-session-count': 1 },
        'failure-details': [{ 'result-type': 'certificate-expired', 'failed-session-count': 1, ...detail }],
      },
    ],
  });

/** Processes one delivery at a later processing time than the one before (the rows' `version`). */
async function deliver(json: string, receiptId: string, receivedAt: string, mail?: 'pass' | 'none') {
  const job = {
    v: 1,
    receiptId,
    receivedAt,
    channel: mail ? 'smtp' : 'https',
    bodyBase64: Buffer.from(json).toString('base64'),
    ...(mail
      ? {
          smtp: {
            envelopeFrom: 'r@order.example',
            dkim: {
              result: mail,
              signingDomain: mail === 'pass' ? 'order.example' : '',
              submitterAligned: mail === 'pass',
            },
          },
        }
      : {}),
  };
  clock += 1000;
  const r = processReportJob(job, receiptId, { maxDecompressedBytes: 1 << 20 }, new Date(clock));
  await writer.write(r.rows);
  return r.outcome === 'stored' ? r.reportKey : '';
}

const viewRow = async (key: string) =>
  (
    await queryRows<Record<string, unknown>>(
      ch,
      `SELECT channel, dkim_result, receipt_id, contact_info FROM reports_dedup WHERE report_key = '${key}'`,
    )
  )[0];

beforeAll(async () => {
  ch = await testDatabase(config);
  writer = testWriter(config, ch, { maxRows: 1000, maxWaitMs: 5 });
});
afterAll(async () => {
  await ch.command({ query: `DROP DATABASE IF EXISTS ${config.CLICKHOUSE_DATABASE}` });
  await ch.close();
});

describe('dedup views', () => {
  it('a newer version with NULL shows NULL, not the older value (argMax skipped NULLs)', async () => {
    const key = await deliver(
      report('nulls', 'old@order.example', { 'receiving-ip': '192.0.2.1' }),
      'n1',
      '2026-10-02T01:00:00Z',
    );
    // Better authenticated (a DKIM-aligned mail): it replaces the POSTed copy, NULLs included.
    await deliver(report('nulls', undefined, {}), 'n2', '2026-10-02T02:00:00Z', 'pass');
    expect((await viewRow(key))!.contact_info).toBeNull();
    const [detail] = await queryRows<{ receiving_ip: string | null }>(
      ch,
      `SELECT receiving_ip FROM failure_details_dedup WHERE report_key = '${key}'`,
    );
    expect(detail!.receiving_ip).toBeNull();
  });

  it('mail (DKIM pass) and HTTPS copies of one report show the same delivery facts in either order', async () => {
    const json = (id: string) => report(id, 'x@order.example', {});
    const a = await deliver(json('order-a'), 'a-https', '2026-10-02T01:00:00Z');
    await deliver(json('order-a'), 'a-mail', '2026-10-02T02:00:00Z', 'pass');
    const b = await deliver(json('order-b'), 'b-mail', '2026-10-02T02:00:00Z', 'pass');
    await deliver(json('order-b'), 'b-https', '2026-10-02T01:00:00Z');
    const rowA = await viewRow(a);
    const rowB = await viewRow(b);
    expect(rowA).toMatchObject({ channel: 'smtp', dkim_result: 'pass', receipt_id: 'a-mail' });
    expect(rowB).toMatchObject({ channel: 'smtp', dkim_result: 'pass', receipt_id: 'b-mail' });
    // Two unsigned mails and HTTPS: the first received wins, whatever was processed last.
    const c = await deliver(json('order-c'), 'c-late', '2026-10-02T05:00:00Z', 'none');
    await deliver(json('order-c'), 'c-early', '2026-10-02T03:00:00Z', 'none');
    await deliver(json('order-c'), 'c-https', '2026-10-02T01:00:00Z');
    expect(await viewRow(c)).toMatchObject({ channel: 'smtp', dkim_result: 'none', receipt_id: 'c-early' });
  });

  it("the API's one-report read equals the view's row for every report", async () => {
    const db = createDb(ch, { timeoutSeconds: 10, maxRows: 10_000 });
    const rows = await queryRows<Record<string, unknown> & { report_key: string }>(ch, 'SELECT * FROM reports_dedup');
    expect(rows.length).toBe(4);
    for (const row of rows) {
      const got = await getReport(db, { name: 'all', domains: undefined }, row.report_key, { detailLimit: 100 });
      expect(got?.report).toEqual(row);
    }
  });
});
