// The analyst queries in the README run, as the read-only `analyst` user, against stored reports.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClickHouse, type ClickHouseClient } from '../../services/common/clickhouse.ts';
import { corpusReports } from '../helpers/corpus.ts';
import { queryRows, storeDirectly, testConfig, testDatabase } from '../helpers/env.ts';

const readme = readFileSync(resolve(import.meta.dirname, '../../README.md'), 'utf8');
const section = readme.slice(
  readme.indexOf('## For analysts'),
  readme.indexOf('\n## ', readme.indexOf('## For analysts') + 5),
);
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

describe('README analyst queries', () => {
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
  it('the analyst user cannot write', async () => {
    await expect(analyst.command({ query: 'DROP TABLE rejects' })).rejects.toThrow(/readonly|Cannot execute/i);
    await expect(analyst.command({ query: "INSERT INTO alerts (alert_id) VALUES ('x')" })).rejects.toThrow(
      /readonly|Cannot execute/i,
    );
  });
});
