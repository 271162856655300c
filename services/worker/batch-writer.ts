// Collects rows across jobs and writes them in few large inserts (one insert costs ~33 ms on ClickHouse 18.16
// whatever its size). A job's promise settles only when ClickHouse has confirmed the batch holding its rows:
// never complete a job before its rows are stored.
import { INSERT_PHASES, emptyTableRows, type TableName, type TableRows } from '../../schemas/rows.ts';

export type InsertFn = (table: TableName, rows: readonly object[]) => Promise<void>;

export interface BatchWriterOptions {
  maxRows: number;
  maxWaitMs: number;
}

export interface FlushStats {
  rows: number;
  jobs: number;
  ms: number;
  error?: unknown;
}

interface Batch {
  rows: TableRows;
  count: number;
  waiters: Array<{ resolve: () => void; reject: (err: unknown) => void }>;
}

const TABLES = INSERT_PHASES.flat();

function newBatch(): Batch {
  return { rows: emptyTableRows(), count: 0, waiters: [] };
}

export class BatchWriter {
  private batch = newBatch();
  private timer: NodeJS.Timeout | undefined;
  private readonly inFlight = new Set<Promise<void>>();

  constructor(
    private readonly insert: InsertFn,
    private readonly options: BatchWriterOptions,
    private readonly onFlush: (stats: FlushStats) => void = () => {},
  ) {}

  /** Adds one job's rows; resolves when they are stored, rejects when their batch failed (the job retries). */
  write(rows: TableRows): Promise<void> {
    const batch = this.batch;
    for (const table of TABLES) {
      const target = batch.rows[table] as object[];
      // A loop, not push(...rows): a report may hold more rows than the call stack takes arguments.
      for (const row of rows[table]) target.push(row);
      batch.count += rows[table].length;
    }
    const done = new Promise<void>((resolve, reject) => batch.waiters.push({ resolve, reject }));
    if (batch.count >= this.options.maxRows) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), this.options.maxWaitMs);
    return done;
  }

  /** Starts writing the current batch now. */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.batch;
    if (batch.waiters.length === 0) return;
    this.batch = newBatch();
    const started = Date.now();
    const p = this.writeBatch(batch).then(
      () => {
        this.onFlush({ rows: batch.count, jobs: batch.waiters.length, ms: Date.now() - started });
        for (const w of batch.waiters) w.resolve();
      },
      (error: unknown) => {
        this.onFlush({ rows: batch.count, jobs: batch.waiters.length, ms: Date.now() - started, error });
        for (const w of batch.waiters) w.reject(error);
      },
    );
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p));
  }

  private async writeBatch(batch: Batch): Promise<void> {
    for (const phase of INSERT_PHASES) {
      const tables = phase.filter((t) => batch.rows[t].length > 0);
      await Promise.all(tables.map((t) => this.insert(t, batch.rows[t])));
    }
  }

  /** Writes what is pending and waits for every insert in flight. */
  async close(): Promise<void> {
    this.flush();
    await Promise.allSettled([...this.inFlight]);
  }
}
