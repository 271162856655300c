import { describe, expect, it } from 'vitest';
import { emptyTableRows, type TableName, type TableRows } from '../../schemas/rows.ts';
import { BatchWriter } from '../../services/worker/batch-writer.ts';

function rowsOf(n: number, tag: string): TableRows {
  const rows = emptyTableRows();
  for (let i = 0; i < n; i++) rows.policy_results.push({ report_key: tag } as never);
  rows.reports.push({ report_key: tag } as never);
  return rows;
}

describe('BatchWriter', () => {
  it('writes rows of many jobs in one insert per table, the report rows last', async () => {
    const calls: Array<[TableName, number]> = [];
    const writer = new BatchWriter(async (table, rows) => void calls.push([table, rows.length]), {
      maxRows: 1000,
      maxWaitMs: 20,
    });
    await Promise.all([writer.write(rowsOf(3, 'a')), writer.write(rowsOf(4, 'b'))]);
    expect(calls).toEqual([
      ['policy_results', 7],
      ['reports', 2],
    ]);
  });

  it('a job settles only after its batch is confirmed', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const writer = new BatchWriter(() => gate, { maxRows: 1, maxWaitMs: 1000 });
    let settled = false;
    const p = writer.write(rowsOf(1, 'a')).then(() => (settled = true));
    await new Promise((r) => setTimeout(r, 30));
    expect(settled).toBe(false);
    release();
    await p;
    expect(settled).toBe(true);
  });

  it('a failed insert fails every job of its batch, and nothing after it is written', async () => {
    const tables: TableName[] = [];
    const writer = new BatchWriter(
      async (table) => {
        tables.push(table);
        if (table === 'policy_results') throw new Error('clickhouse down');
      },
      { maxRows: 1000, maxWaitMs: 5 },
    );
    const results = await Promise.allSettled([writer.write(rowsOf(1, 'a')), writer.write(rowsOf(1, 'b'))]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(tables).not.toContain('reports');
  });

  it('flushes at maxRows without waiting for the timer', async () => {
    let inserts = 0;
    const writer = new BatchWriter(async () => void inserts++, { maxRows: 10, maxWaitMs: 60_000 });
    await writer.write(rowsOf(12, 'big'));
    expect(inserts).toBe(2);
  });
});
