// The analyst queries of docs/analysts-sql.md run, as the read-only `analyst` user, against stored reports.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClickHouse, type ClickHouseClient } from '../../services/common/clickhouse.ts';
import { corpusReports } from '../helpers/corpus.ts';
import { queryRows, storeDirectly, testConfig, testDatabase } from '../helpers/env.ts';

const readme = readFileSync(resolve(import.meta.dirname, '../../docs/analysts-sql.md'), 'utf8');
const section = readme;
const queries = [...section.matchAll(/```sql\n([\s\S]*?)```/g)].map((m) => m[1]!.trim());

const config = testConfig();
let ch: ClickHouseClient;
let analyst: ClickHouseClient;

beforeAll(async () => {
  ch = await testDatabase(config);
  let i = 0;
  for (const body of [...corpusReports().map((c) => c.body), Buffer.from('not json')])
    await storeDirectly(ch, body, `readme-${i++}`);
  analyst = createClickHouse({ ...config, CLICKHOUSE_USER: 'analyst' });
});

afterAll(async () => {
  await analyst.close();
  await ch.command({ query: `DROP DATABASE IF EXISTS ${config.CLICKHOUSE_DATABASE}` });
  await ch.close();
});

describe('docs/analysts-sql.md queries', () => {
  it('there are at least ten', () => expect(queries.length).toBeGreaterThanOrEqual(10));
  for (const [i, sql] of queries.entries()) {
    it(`query ${i + 1}: ${sql.split('\n')[0]!.slice(0, 70)}`, async () => {
      const rows = await queryRows<Record<string, unknown>>(analyst, sql);
      expect(Array.isArray(rows)).toBe(true);
    });
  }
  it('answer with the stored data', async () => {
    const flags = await queryRows<{ flag: string }>(
      analyst,
      queries.find((q) => q.includes('ARRAY JOIN flags'))!,
    );
    expect(flags.map((f) => f.flag)).toContain('datetime-without-zone');
    const fetchErrors = await queryRows<{ policy_domain: string }>(
      analyst,
      queries.find((q) => q.includes("'sts-policy-fetch-error'"))!,
    );
    expect(fetchErrors.map((r) => r.policy_domain)).toEqual(expect.arrayContaining(['krvtz.net', 'example.com']));
    const rejects = await queryRows<{ reason: string }>(
      analyst,
      queries.find((q) => q.includes('FROM rejects'))!,
    );
    expect(rejects).toEqual([expect.objectContaining({ reason: 'not-json' })]);
  });
  it('the queries for large histories answer as the views', async () => {
    const [{ last } = { last: '' }] = await queryRows<{ last: string }>(
      ch,
      'SELECT toString(max(day)) AS last FROM policy_days',
    );
    const byDomain = (rows: Array<Record<string, unknown>>) =>
      rows.map((r) => JSON.stringify([r.policy_domain, r.successful_sessions, r.failed_sessions])).sort();
    const yesterday = queries
      .find((q) => q.includes('day = yesterday()'))!
      .replaceAll('yesterday()', `toDate('${last}')`);
    const viewDay = await queryRows<Record<string, unknown>>(
      ch,
      `SELECT policy_domain, successful_sessions, failed_sessions FROM domain_daily WHERE day = toDate('${last}')`,
    );
    expect(viewDay.length).toBeGreaterThan(0);
    expect(byDomain(await queryRows(analyst, yesterday))).toEqual(byDomain(viewDay));

    const ninety = queries.find((q) => q.includes('FROM domain_policies'))!;
    for (const domain of ['example.com', 'krvtz.net']) {
      const sql = ninety.replaceAll("'example.com'", `'${domain}'`).replaceAll('today() - 90', "toDate('2000-01-01')");
      const view = await queryRows<Record<string, unknown>>(
        ch,
        `SELECT toString(day) AS report_day, successful_sessions, failed_sessions, reports FROM domain_daily
         WHERE policy_domain = '${domain}' ORDER BY day`,
      );
      expect(view.length).toBeGreaterThan(0);
      expect(await queryRows(analyst, sql)).toEqual(view);
    }
  });
  it('the analyst user cannot write', async () => {
    await expect(analyst.command({ query: 'DROP TABLE rejects' })).rejects.toThrow(/readonly|Cannot execute/i);
    await expect(analyst.command({ query: "INSERT INTO alerts (alert_id) VALUES ('x')" })).rejects.toThrow(
      /readonly|Cannot execute/i,
    );
  });
});
