// Collects rows across jobs and writes them in few large inserts (one insert costs ~33 ms on ClickHouse 18.16
// whatever its size). A job's promise settles only when ClickHouse has confirmed the batch holding its rows:
// never complete a job before its rows are stored.
// Rows are encoded to TabSeparated bytes as each job arrives, so a waiting batch holds compact buffers, outside the
// JavaScript heap, rather than row objects (the worker's memory under load is mostly waiting batches).
import { insertTsvPieces, type ClickHouseClient } from '../common/clickhouse.ts';
import { encodeTsvPieces } from '../common/tsv.ts';
import { INSERT_PHASES, TABLE_COLUMNS, type TableName, type TableRows } from '../../schemas/rows.ts';
import { copyOf, type CopyRef, type DecideFn } from './copies.ts';
import { storedReportOf, type MarkFn, type StoredReport } from './reprocessing.ts';

/** What became of a job's rows: all written, or (a copy of a report stored before) its receipt and copy only. */
export type WriteOutcome = 'stored' | 'duplicate' | 'conflict';

/** What a copy that is not counted writes: its receipt, its copy and its text (raw_reports keeps each text once). */
export const NOT_COUNTED: TableName[] = ['receipts', 'report_copies', 'raw_reports'];

/**
 * Writes one table's part of a batch: TabSeparated chunks in TABLE_COLUMNS order, `rows` lines in all. The chunks
 * are the insert's to use up: a batch is written once (a failed one is retried from the queue, job by job).
 */
export type InsertFn = (table: TableName, chunks: Buffer[], rows: number) => Promise<void>;

const SENT = Buffer.alloc(0);

/**
 * Chunks as the insert's body, copied lazily into groups of about `size` bytes: a batch of small jobs holds
 * thousands of small chunks (one write each would cost more than the copy), and copying a whole batch at once
 * would double the memory it holds (a batch of 10 MB reports holds tens of MB). Each chunk is let go of as it is
 * sent: a heap snapshot showed finished inserts' bodies still reachable through their requests.
 */
export function* coalesce(chunks: Buffer[], size = 1 << 20): Generator<Buffer> {
  let group: Buffer[] = [];
  let bytes = 0;
  for (let i = 0; i < chunks.length; i++) {
    const chunk = chunks[i]!;
    chunks[i] = SENT;
    group.push(chunk);
    bytes += chunk.length;
    if (bytes >= size) {
      yield group.length === 1 ? chunk : Buffer.concat(group, bytes);
      group = [];
      bytes = 0;
    }
  }
  if (group.length > 0) yield Buffer.concat(group, bytes);
}

/** The InsertFn of the worker: one streamed TabSeparated insert per table. */
export function clickHouseInsert(client: ClickHouseClient): InsertFn {
  return (table, chunks) => insertTsvPieces(client, table, TABLE_COLUMNS[table], coalesce(chunks));
}

export interface BatchWriterOptions {
  maxRows: number;
  maxWaitMs: number;
  /** Encoded bytes held (current batch and batches being written) past which `room()` waits; default: no bound. */
  maxBufferedBytes?: number;
  /**
   * The marks of the batch's reports stored before with other content, written ahead of its other rows
   * (services/worker/reprocessing.ts). Required: such a report without its mark would be counted by the rows of two
   * versions in the API's reads.
   */
  mark: MarkFn;
  /**
   * Which copies of reports are counted (services/worker/copies.ts), decided for the batch before anything is written.
   * Required: without it a later copy, from anyone, would replace a report's figures.
   */
  decide: DecideFn;
}

export interface FlushStats {
  rows: number;
  jobs: number;
  ms: number;
  error?: unknown;
}

const TABLES = INSERT_PHASES.flat();

/** One job's rows, encoded, and what the batch needs to decide about them. */
interface Entry {
  encoded: Array<readonly [TableName, Buffer[], number]>;
  /** The report copy the rows store, with its receipt encoded as a conflict, if it turns out one. */
  copy?: { ref: CopyRef; conflictReceipt: Buffer[] };
  report?: StoredReport;
  resolve: (outcome: WriteOutcome) => void;
  reject: (err: unknown) => void;
}

interface Batch {
  entries: Entry[];
  count: number;
  bytes: number;
}

function newBatch(): Batch {
  return { entries: [], count: 0, bytes: 0 };
}

export class BatchWriter {
  private batch = newBatch();
  private timer: NodeJS.Timeout | undefined;
  private readonly inFlight = new Set<Promise<void>>();
  /** The batch's time came while another was being written: it goes once that one is stored. */
  private due = false;
  private bufferedBytes = 0;
  private readonly waitingForRoom: Array<{ resolve: () => void; expectedBytes: number }> = [];

  constructor(
    private readonly insert: InsertFn,
    private readonly options: BatchWriterOptions,
    private readonly onFlush: (stats: FlushStats) => void = () => {},
  ) {}

  /**
   * Whether a job may make its rows now: they fit in `maxBufferedBytes` beside the rows held (`expectedBytes`: what
   * the job expects to add, 0 when unknown or small) and no job is waiting. Checked and acted on in the same tick (no
   * await between this and `write`), so jobs cannot all pass at once.
   */
  hasRoom(expectedBytes = 0): boolean {
    return this.fits(expectedBytes) && this.waitingForRoom.length === 0;
  }

  /**
   * Resolves when it is this job's turn to make its rows: jobs wait in order and are let through one at a time,
   * each after the previous one's rows are counted, so large reports wait instead of piling up in memory. A single
   * report larger than the budget goes alone.
   */
  room(expectedBytes = 0): Promise<void> {
    return new Promise<void>((resolve) => {
      this.waitingForRoom.push({ resolve, expectedBytes });
      this.letNextIn();
    });
  }

  /** The turn `room()` gave ends without rows (the job failed first): the next waiting job may go. */
  passTurn(): void {
    this.letNextIn();
  }

  /**
   * Under the budget, and the job's expected rows fit beside those held, unless nothing is held: without the second
   * test a 10 MB report (~21 MB of rows) would go in beside another one under a 32 MiB budget, holding both.
   */
  private fits(expectedBytes: number): boolean {
    const max = this.options.maxBufferedBytes ?? Infinity;
    return this.bufferedBytes < max && (this.bufferedBytes === 0 || this.bufferedBytes + expectedBytes <= max);
  }

  private letNextIn(): void {
    const next = this.waitingForRoom[0];
    if (!next) return;
    if (this.fits(next.expectedBytes)) {
      this.waitingForRoom.shift();
      next.resolve();
    }
    // Nothing more comes into the current batch while jobs wait: write it now rather than at its timer.
    else this.flush();
  }

  /**
   * Adds one job's rows; resolves when they are stored, rejects when their batch failed (the job retries).
   * Throws, before anything is added, if a row cannot be encoded: that job fails alone, not its batch.
   */
  write(rows: TableRows): Promise<WriteOutcome> {
    let encoded;
    let copy: Entry['copy'];
    try {
      // Bytes now, not strings joined at flush: joining thousands of concatenated strings cost 3× the encoding.
      encoded = TABLES.filter((t) => rows[t].length > 0).map(
        (t) => [t, encodeTsvPieces(TABLE_COLUMNS[t], rows[t]), rows[t].length] as const,
      );
      const ref = copyOf(rows);
      if (ref) {
        const asConflict = rows.receipts.map((r) => ({ ...r, outcome: 'conflict' as const }));
        copy = { ref, conflictReceipt: encodeTsvPieces(TABLE_COLUMNS.receipts, asConflict) };
      }
    } catch (err) {
      // This job's turn is over without rows: the next waiting job may go.
      this.letNextIn();
      throw err;
    }
    const batch = this.batch;
    const done = new Promise<WriteOutcome>((resolve, reject) =>
      batch.entries.push({ encoded, ...(copy ? { copy } : {}), report: storedReportOf(rows), resolve, reject }),
    );
    for (const [, pieces, count] of encoded) {
      for (const piece of pieces) {
        batch.bytes += piece.length;
        this.bufferedBytes += piece.length;
      }
      batch.count += count;
    }
    if (batch.count >= this.options.maxRows) this.flush();
    else this.timer ??= setTimeout(() => this.flushWhenIdle(), this.options.maxWaitMs);
    this.letNextIn();
    return done;
  }

  /**
   * The batch's wait is over: written now, or, while an earlier batch is still being written, as soon as that one is
   * stored (group commit). A slow ClickHouse then gets fewer, larger inserts instead of overlapping small ones: at
   * 250 reports/s on a busy machine the 400 ms batches took longer to insert than to fill, and each insert's fixed
   * cost made ClickHouse the largest CPU user per report.
   */
  private flushWhenIdle(): void {
    this.timer = undefined;
    if (this.inFlight.size > 0) this.due = true;
    else this.flush();
  }

  /** Starts writing the current batch now. */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.due = false;
    const batch = this.batch;
    if (batch.entries.length === 0) return;
    this.batch = newBatch();
    const started = Date.now();
    const jobs = batch.entries.length;
    const p = this.writeBatch(batch).then(
      (outcomes) => {
        this.release(batch);
        this.onFlush({ rows: batch.count, jobs, ms: Date.now() - started });
        batch.entries.forEach((e, i) => e.resolve(outcomes[i]!));
      },
      (error: unknown) => {
        this.release(batch);
        this.onFlush({ rows: batch.count, jobs, ms: Date.now() - started, error });
        for (const e of batch.entries) e.reject(error);
      },
    );
    this.inFlight.add(p);
    void p.finally(() => {
      this.inFlight.delete(p);
      if (this.due && this.inFlight.size === 0) this.flush();
    });
  }

  /** A batch is settled: its bytes no longer count, and the next waiting job may go. */
  private release(batch: Batch): void {
    this.bufferedBytes -= batch.bytes;
    this.letNextIn();
  }

  /**
   * Decides which copies are counted, marks the reports stored again with other content, then writes each job's rows
   * (all of them, or only what a copy that is not counted keeps) phase by phase. The outcome of each entry, in order.
   */
  private async writeBatch(batch: Batch): Promise<WriteOutcome[]> {
    const withCopy = batch.entries.filter((e) => e.copy);
    const decided = await this.options.decide(withCopy.map((e) => e.copy!.ref));
    const decision = new Map(withCopy.map((e, i) => [e, decided[i]!]));
    const outcomes = batch.entries.map((e): WriteOutcome => {
      const d = decision.get(e);
      return d === undefined || d === 'store' ? 'stored' : d;
    });
    const chunks = {} as Record<TableName, Buffer[]>;
    const rows = {} as Record<TableName, number>;
    for (const t of TABLES) {
      chunks[t] = [];
      rows[t] = 0;
    }
    batch.entries.forEach((e, i) => {
      const outcome = outcomes[i]!;
      for (const [table, pieces, count] of e.encoded) {
        if (outcome !== 'stored' && !NOT_COUNTED.includes(table)) continue;
        // One by one: a large report has tens of thousands of pieces, too many for push(...spread).
        const use = outcome === 'conflict' && table === 'receipts' ? e.copy!.conflictReceipt : pieces;
        for (const piece of use) chunks[table].push(piece);
        rows[table] += count;
      }
      // The chunks alone hold the pieces now, so each is let go of as it is sent (coalesce).
      e.encoded = [];
      delete e.copy;
    });
    const stored = batch.entries.flatMap((e, i) => (outcomes[i] === 'stored' && e.report ? [e.report] : []));
    const marks = await this.options.mark(stored);
    if (marks.length > 0) {
      chunks.reprocessed_reports.push(...encodeTsvPieces(TABLE_COLUMNS.reprocessed_reports, marks));
      rows.reprocessed_reports += marks.length;
    }
    for (const phase of INSERT_PHASES) {
      const tables = phase.filter((t) => rows[t] > 0);
      await Promise.all(tables.map((t) => this.insert(t, chunks[t], rows[t])));
    }
    return outcomes;
  }

  /** Writes what is pending and waits for every insert in flight. */
  async close(): Promise<void> {
    this.flush();
    await Promise.allSettled([...this.inFlight]);
  }
}
