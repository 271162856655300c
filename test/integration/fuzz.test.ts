// A short fuzz run in CI (npm run fuzz runs a long one: FUZZ_RUNS report cases, a fifth as many e-mails, seed
// FUZZ_SEED): mutated corpus reports and e-mails through extraction,
// parsing and normalization give a stored report or a typed rejection, and ClickHouse takes every stored row and
// returns each value as it was sent.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClickHouseClient } from '../../services/common/clickhouse.ts';
import { INSERT_PHASES, TABLE_COLUMNS } from '../../schemas/rows.ts';
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
import { queryRows, testConfig, testDatabase, testWriter } from '../helpers/env.ts';

const config = testConfig();
const runs = Number(process.env.FUZZ_RUNS ?? 600);
const seed = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : undefined;
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
      { numRuns: runs, seed: seed ?? 8460 },
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
      { numRuns: Math.ceil(runs / 4), seed: seed ?? 5322 },
    );
  });

  it('ClickHouse takes every row the fuzzed reports produced, and gives every value back unchanged', async () => {
    // Through the worker's own path (TabSeparated encoding, one batch): no row can poison a batch.
    const writer = testWriter(config, ch, { maxRows: 10_000_000, maxWaitMs: 10 });
    await writer.write(rows);
    const [r] = await queryRows<{ n: number }>(ch, 'SELECT count() AS n FROM receipts');
    expect(r!.n).toBe(rows.receipts.length);
    // Every stored row, every column, equals a row that was sent (merges may have collapsed duplicates).
    for (const table of INSERT_PHASES.flat()) {
      const columns: readonly string[] = TABLE_COLUMNS[table];
      const line = (row: object) => JSON.stringify(columns.map((c) => (row as Record<string, unknown>)[c]));
      const sent = new Set((rows[table] as object[]).map(line));
      const got = await queryRows<object>(ch, `SELECT ${columns.join(', ')} FROM ${table}`);
      expect(got.length > 0).toBe(sent.size > 0);
      expect(got.map(line).filter((l) => !sent.has(l))).toEqual([]);
    }
  });
});
