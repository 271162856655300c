import { describe, expect, it } from 'vitest';
import { TABLE_COLUMNS, emptyTableRows, type TableName, type TableRows } from '../../schemas/rows.ts';
import { BatchWriter, coalesce } from '../../services/worker/batch-writer.ts';
import type { MarkFn } from '../../services/worker/reprocessing.ts';
import type { DecideFn } from '../../services/worker/copies.ts';

/** No report was stored before. */
const mark: MarkFn = async () => [];
const decide: DecideFn = async (copies) => copies.map(() => 'store' as const);

/** Rows with every column set: the writer encodes them as they arrive. */
function filled<T extends TableName>(table: T, values: Record<string, unknown>): TableRows[T][number] {
  return Object.fromEntries(TABLE_COLUMNS[table].map((c) => [c, values[c] ?? ''])) as never;
}

function rowsOf(n: number, tag: string): TableRows {
  const rows = emptyTableRows();
  for (let i = 0; i < n; i++) rows.policy_results.push(filled('policy_results', { report_key: tag, policy_index: i }));
  rows.reports.push(filled('reports', { report_key: tag }));
  rows.report_fingerprints.push(filled('report_fingerprints', { report_key: tag, fingerprint: tag }));
  return rows;
}

describe('BatchWriter', () => {
  it('writes rows of many jobs in one insert per table, the report rows last', async () => {
    const calls: Array<[TableName, number, string[]]> = [];
    const writer = new BatchWriter(
      async (table, chunks, rows) =>
        void calls.push([table, rows, Buffer.concat(chunks).toString().split('\n').slice(0, -1)]),
      { maxRows: 1000, maxWaitMs: 20, mark, decide },
    );
    await Promise.all([writer.write(rowsOf(3, 'a')), writer.write(rowsOf(4, 'b'))]);
    expect(calls.map(([table, rows, lines]) => [table, rows, lines.length])).toEqual([
      ['report_fingerprints', 2, 2],
      ['policy_results', 7, 7],
      ['reports', 2, 2],
    ]);
    // Each line holds the row's values in TABLE_COLUMNS order.
    const fields = calls[1]![2][4]!.split('\t');
    expect(fields).toHaveLength(TABLE_COLUMNS.policy_results.length);
    expect([fields[0], fields[1]]).toEqual(['b', '1']);
  });

  it('writes the marks of reports stored before ahead of every other row, and none when marking fails', async () => {
    const calls: Array<[TableName, string]> = [];
    const seen: string[][] = [];
    const marking: MarkFn = async (reports) => {
      seen.push(reports.map((r) => r.reportKey));
      return reports
        .filter((r) => r.reportKey === 'b')
        .map((r) => ({ policy_domain: 'b.example', day: r.day, report_key: r.reportKey }));
    };
    const writer = new BatchWriter(
      async (table, chunks) => void calls.push([table, Buffer.concat(chunks).toString()]),
      { maxRows: 1000, maxWaitMs: 20, mark: marking, decide },
    );
    await Promise.all([writer.write(rowsOf(1, 'a')), writer.write(rowsOf(2, 'b'))]);
    expect(seen).toEqual([['a', 'b']]);
    expect(calls.map(([table]) => table)).toEqual([
      'reprocessed_reports',
      'report_fingerprints',
      'policy_results',
      'reports',
    ]);
    expect(calls[0]![1]).toBe('b.example\t\tb\n');

    const failing = new BatchWriter(async (table) => void calls.push([table, '']), {
      maxRows: 1000,
      maxWaitMs: 5,
      mark: () => Promise.reject(new Error('redis down')),
      decide,
    });
    calls.length = 0;
    await expect(failing.write(rowsOf(1, 'c'))).rejects.toThrow('redis down');
    expect(calls).toEqual([]);
  });

  it('a row that cannot be encoded fails its own job before joining a batch', async () => {
    const tables: TableName[] = [];
    const writer = new BatchWriter(async (table) => void tables.push(table), {
      maxRows: 1000,
      maxWaitMs: 5,
      mark,
      decide,
    });
    const bad = rowsOf(1, 'bad');
    (bad.policy_results[0] as { successful_sessions: number }).successful_sessions = 1.5;
    expect(() => writer.write(bad)).toThrow(/safe integer/);
    const incomplete = rowsOf(1, 'incomplete');
    delete (incomplete.reports[0] as { version?: number }).version;
    expect(() => writer.write(incomplete)).toThrow(/column version/);
    await writer.write(rowsOf(2, 'good'));
    expect(tables).toEqual(['report_fingerprints', 'policy_results', 'reports']);
  });

  it('a job settles only after its batch is confirmed', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const writer = new BatchWriter(() => gate, { maxRows: 1, maxWaitMs: 1000, mark, decide });
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
      { maxRows: 1000, maxWaitMs: 5, mark, decide },
    );
    const results = await Promise.allSettled([writer.write(rowsOf(1, 'a')), writer.write(rowsOf(1, 'b'))]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(tables).not.toContain('reports');
  });

  it('group commit: a batch whose wait ends while another is written goes once that one is stored, with all since', async () => {
    const gates: Array<() => void> = [];
    const batches: number[] = []; // the rows of each batch's first insert
    const writer = new BatchWriter(
      (table, _chunks, rows) => {
        if (table === 'report_fingerprints') batches.push(rows);
        return new Promise<void>((r) => gates.push(r));
      },
      { maxRows: 1000, maxWaitMs: 5, mark, decide },
    );
    const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));
    const first = writer.write(rowsOf(1, 'a'));
    await wait(30); // its batch is being written (held at the gate)
    const later = [writer.write(rowsOf(1, 'b'))];
    await wait(30); // b's wait is over: it waits for a's batch
    later.push(writer.write(rowsOf(1, 'c')));
    await wait(30);
    expect(batches).toEqual([1]); // nothing else written beside the first batch
    while (gates.length > 0 || batches.length < 2) {
      gates.splice(0).forEach((open) => open());
      await wait(10);
    }
    await Promise.all([first, ...later]);
    expect(batches).toEqual([1, 2]); // b and c in one batch
  });

  it('flushes at maxRows without waiting for the timer', async () => {
    let inserts = 0;
    const writer = new BatchWriter(async () => void inserts++, { maxRows: 10, maxWaitMs: 60_000, mark, decide });
    await writer.write(rowsOf(12, 'big'));
    // The batch's three tables, each in one insert.
    expect(inserts).toBe(3);
  });
});

describe('BatchWriter byte budget', () => {
  /** A writer whose inserts finish only when the test opens their gate, with a budget any row exceeds. */
  function gatedWriter(): { writer: BatchWriter; gates: Array<() => void> } {
    const gates: Array<() => void> = [];
    const writer = new BatchWriter(() => new Promise<void>((r) => gates.push(r)), {
      maxRows: 1_000_000,
      maxWaitMs: 60_000,
      maxBufferedBytes: 1,
      mark,
      decide,
    });
    return { writer, gates };
  }

  it('room() waits while the rows held fill the budget, writes them at once, and opens when they are stored', async () => {
    const { writer, gates } = gatedWriter();
    expect(writer.hasRoom()).toBe(true);
    const stored = writer.write(rowsOf(3, 'first'));
    expect(writer.hasRoom()).toBe(false);
    const order: string[] = [];
    const a = writer.room().then(() => order.push('a'));
    const b = writer.room().then(() => order.push('b'));
    // The held batch is written now (not after its 60 s timer), and room stays shut until ClickHouse confirms it.
    await new Promise((r) => setTimeout(r, 20));
    expect(gates).toHaveLength(1);
    gates.shift()!(); // report_fingerprints stored; policy_results then reports still to write
    await new Promise((r) => setTimeout(r, 20));
    gates.shift()!();
    await new Promise((r) => setTimeout(r, 20));
    expect(order).toEqual([]);
    gates.shift()!();
    await stored;
    await a;
    // One at a time: b goes only once a's rows are counted and stored.
    await new Promise((r) => setTimeout(r, 20));
    expect(order).toEqual(['a']);
    const second = writer.write(rowsOf(1, 'a'));
    await new Promise((r) => setTimeout(r, 20));
    expect(order).toEqual(['a']);
    while (gates.length > 0 || order.length < 2) {
      gates.shift()?.();
      await new Promise((r) => setTimeout(r, 5));
    }
    await Promise.all([second, b]);
    expect(order).toEqual(['a', 'b']);
  });

  /** A first job's rows are stored, `a` holds the turn room() gave it, and `b` waits behind it. */
  async function aHoldsTheTurn(): Promise<{ writer: BatchWriter; order: string[]; b: Promise<number> }> {
    const { writer, gates } = gatedWriter();
    const first = writer.write(rowsOf(1, 'first'));
    const order: string[] = [];
    const a = writer.room().then(() => order.push('a'));
    const b = writer.room().then(() => order.push('b'));
    while (order.length === 0) {
      gates.shift()?.();
      await new Promise((r) => setTimeout(r, 5));
    }
    await Promise.all([first, a]);
    return { writer, order, b };
  }

  it('a job whose rows cannot be encoded hands its turn on', async () => {
    const { writer, order, b } = await aHoldsTheTurn();
    const bad = rowsOf(1, 'bad');
    (bad.reports[0] as { version: number }).version = 0.5;
    expect(() => writer.write(bad)).toThrow(/safe integer/);
    await b;
    expect(order).toEqual(['a', 'b']);
  });

  it('a job that fails between its turn and its rows hands its turn on', async () => {
    const { writer, order, b } = await aHoldsTheTurn();
    // Nothing else is in flight: without passTurn(), b would wait forever.
    writer.passTurn();
    await b;
    expect(order).toEqual(['a', 'b']);
  });

  it('a job whose expected rows would not fit beside those held waits until they are stored', async () => {
    const gates: Array<() => void> = [];
    const writer = new BatchWriter(() => new Promise<void>((r) => gates.push(r)), {
      maxRows: 1_000_000,
      maxWaitMs: 60_000,
      maxBufferedBytes: 10_000,
      mark,
      decide,
    });
    const held = writer.write(rowsOf(1, 'held'));
    // A few hundred bytes are held: a small job fits beside them, one expecting the whole budget does not.
    expect(writer.hasRoom(0)).toBe(true);
    expect(writer.hasRoom(10_000)).toBe(false);
    let large = false;
    const turn = writer.room(10_000).then(() => (large = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(large).toBe(false);
    // Waiting, it had the held batch written at once; once that is stored, nothing is held and it goes.
    while (gates.length > 0) {
      gates.shift()!();
      await new Promise((r) => setTimeout(r, 5));
    }
    await Promise.all([held, turn]);
    expect(large).toBe(true);
    // With nothing held, even a job expecting more than the whole budget goes (alone).
    expect(writer.hasRoom(1_000_000)).toBe(true);
  });

  it('a failed batch gives its bytes back too', async () => {
    const writer = new BatchWriter(() => Promise.reject(new Error('down')), {
      maxRows: 1_000_000,
      maxWaitMs: 60_000,
      maxBufferedBytes: 1,
      mark,
      decide,
    });
    const failed = writer.write(rowsOf(1, 'x')).catch((e: Error) => e.message);
    await writer.room();
    expect(await failed).toBe('down');
  });
});

describe('coalesce (a batch as an insert body)', () => {
  it('groups small chunks up to the size, in order, and lets go of each chunk as it is sent', () => {
    const chunks = ['aaaa', 'bbbb', 'c'.repeat(20), 'dd', 'ee'].map((t) => Buffer.from(t));
    const sent = coalesce(chunks, 8);
    expect((sent.next().value as Buffer).toString()).toBe('aaaabbbb');
    // The first two are let go of; the rest are still held.
    expect(chunks.map((c) => c.length)).toEqual([0, 0, 20, 2, 2]);
    expect((sent.next().value as Buffer).toString()).toBe('c'.repeat(20));
    expect([...sent].map((b) => b.toString())).toEqual(['ddee']);
    expect(chunks.every((c) => c.length === 0)).toBe(true);
    expect([...coalesce([])]).toEqual([]);
  });
});
