// A short fuzz run in CI (npm run fuzz runs a long one): mutated corpus reports and e-mails through extraction,
// parsing and normalization give a stored report or a typed rejection, and ClickHouse takes every stored row.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClickHouseClient } from '../../services/common/clickhouse.ts';
import { INSERT_PHASES } from '../../schemas/rows.ts';
import {
  checkBody,
  checkEmail,
  collectRows,
  emailBytes,
  emailCase,
  emptyTableRows,
  reportBody,
  reportCase,
} from '../helpers/fuzz.ts';
import { queryRows, testConfig, testDatabase } from '../helpers/env.ts';

const config = testConfig();
let ch: ClickHouseClient;
beforeAll(async () => (ch = await testDatabase(config)));
afterAll(async () => {
  await ch.command({ query: `DROP DATABASE IF EXISTS ${config.CLICKHOUSE_DATABASE}` });
  await ch.close();
});

describe('fuzzing the corpus', () => {
  const rows = emptyTableRows();
  let stored = 0;
  let rejected = 0;

  it('mutated reports: stored or a typed rejection', () => {
    let n = 0;
    fc.assert(
      fc.property(reportCase, (c) => {
        const r = checkBody(reportBody(c), `fuzz-${n++}`);
        if (r.outcome === 'stored') {
          stored++;
          collectRows(rows, r);
        } else rejected++;
      }),
      { numRuns: 600, seed: 8460 },
    );
    // Both sides of the property were exercised.
    expect(stored).toBeGreaterThan(50);
    expect(rejected).toBeGreaterThan(50);
  });

  it('mutated e-mails: every report part stored or rejected with a type', async () => {
    let n = 0;
    await fc.assert(
      fc.asyncProperty(emailCase, async (c) => {
        for (const r of await checkEmail(emailBytes(c), `mail-${n++}`))
          if (r.outcome === 'stored') collectRows(rows, r);
      }),
      { numRuns: 150, seed: 5322 },
    );
  });

  it('ClickHouse takes every row the fuzzed reports produced (no row can poison a batch)', async () => {
    for (const table of INSERT_PHASES.flat()) {
      const values: readonly object[] = rows[table];
      if (values.length > 0) await ch.insert({ table, values, format: 'JSONEachRow' });
    }
    const [r] = await queryRows<{ n: number }>(ch, 'SELECT count() AS n FROM receipts');
    expect(r!.n).toBe(rows.receipts.length);
  });
});
