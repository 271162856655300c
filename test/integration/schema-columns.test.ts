// schemas/rows.ts is the one description of the rows the worker writes: its column lists must be the migrations'
// columns, on ClickHouse 18.16 as `npm run migrate` leaves it. Every column a table has that the list leaves out must
// fill itself (a DEFAULT or MATERIALIZED expression), or the worker's inserts would leave it empty unnoticed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClickHouseClient } from '../../services/common/clickhouse.ts';
import { TABLE_COLUMNS, type TableName } from '../../schemas/rows.ts';
import { queryRows, testConfig, testDatabase } from '../helpers/env.ts';

const config = testConfig();
let ch: ClickHouseClient;
beforeAll(async () => (ch = await testDatabase(config)));
afterAll(async () => {
  await ch.command({ query: `DROP DATABASE IF EXISTS ${config.CLICKHOUSE_DATABASE}` });
  await ch.close();
});

describe('the column lists of schemas/rows.ts', () => {
  for (const table of Object.keys(TABLE_COLUMNS) as TableName[])
    it(`${table}: every listed column exists, every other one fills itself`, async () => {
      const columns = await queryRows<{ name: string; default_kind: string }>(
        ch,
        `SELECT name, default_kind FROM system.columns WHERE database = currentDatabase() AND table = '${table}'`,
      );
      expect(columns.length, `${table} exists`).toBeGreaterThan(0);
      const listed: readonly string[] = TABLE_COLUMNS[table];
      const existing = new Set(columns.map((c) => c.name));
      expect(
        listed.filter((c) => !existing.has(c)),
        'listed but not in the table',
      ).toEqual([]);
      const unlisted = columns.filter((c) => !listed.includes(c.name));
      expect(
        unlisted.filter((c) => c.default_kind === '').map((c) => c.name),
        'in the table, not listed, and with no default',
      ).toEqual([]);
    });
});
