// How far back from the previous evaluation's start stored rows still count as new, for both evaluations (incidents
// and the per-day alert rules): a ClickHouse insert takes its time (the ingest tables' inserted_at) when it starts
// and is seen when it ends, within the ClickHouse request timeout.
import type { Config } from '../common/config.ts';

/**
 * Twice the ClickHouse request timeout, at least a minute. Rows inside the margin are evaluated again by the next
 * evaluation too, so the margin is also how much work repeats (a fixed 300 s made every minute's evaluation derive
 * the last six minutes' domains, and missed inserts that ran longer under a longer timeout).
 */
export const insertMarginSeconds = (c: Pick<Config, 'CLICKHOUSE_REQUEST_TIMEOUT_MS'>): number =>
  Math.max(60, Math.ceil((2 * c.CLICKHOUSE_REQUEST_TIMEOUT_MS) / 1000));
