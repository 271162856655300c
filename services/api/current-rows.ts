// The current rows of reports, found without grouping the history (schemas/clickhouse/0005 and 0008): a report's
// rows are those of its newest processing, whose `version` is the greatest among the report's versions in
// report_versions. The API's reads and the alert rules go through newestOnly(), so a report delivered twice, over
// both channels or re-processed after a crash counts once, as in the *_dedup views.

/** A table's identity columns: one row per identity, whatever was written twice. */
export const POLICY_IDENTITY = ['report_key', 'policy_index'];
export const DETAIL_IDENTITY = ['report_key', 'policy_index', 'detail_index'];

export interface Read {
  /**
   * Sorted by domain and day (policy_results, failure_details, domain_policies) or by day and key (policy_days,
   * failure_days): every one has `day`, `report_key` and `version`.
   */
  table: string;
  identity: string[];
  columns: string[];
  /** What the read is about; a condition on the table's sort key keeps its cost to the rows asked for. */
  where: string;
  /** The condition of `where` on `day` alone: the look-up of versions reads only those days' partitions. */
  days: string;
}

/**
 * A join with each report's newest version, for the reports of `table` where `where` holds: the rows of `table` it
 * keeps are those of the newest processings. Versions are looked up by (day, report_key), the sort key of
 * report_versions (schemas/clickhouse/0008): every row of a report has the report's day. ALL, not ANY: the right side
 * has one row per report, and current ClickHouse's ANY INNER JOIN keeps one left row per key, not every row.
 *
 * Joined, not a `(report_key, version) IN (…)` condition: ClickHouse 18.16 runs an IN subquery on a sort-key column
 * while it analyses the query (to use the set on the index), and once more for every query enclosing it (a 90-day
 * series paid it four times: 105 ms of its 116). A joined subquery runs once.
 */
export function newestOnly(table: string, where: string, days: string): string {
  const keys = `SELECT day, report_key FROM ${table} WHERE ${where}`;
  // `days` besides the keys: 18.16 does not prune partitions by a set of (day, key) pairs, and analysing every
  // month's parts made the look-up's cost grow with the history (90-day series at 50 M rows: 19 → 15 ms).
  return `ALL INNER JOIN (SELECT report_key, max(version) AS version FROM report_versions
    WHERE ${days} AND (day, report_key) IN (${keys}) GROUP BY report_key) AS newest USING (report_key, version)`;
}

/** The rows of `table` where `where` holds, of each report's newest processing only, one per identity. */
export function currentRows({ table, identity, columns, where, days }: Read): string {
  return `SELECT ${[...new Set([...identity, ...columns])].join(', ')} FROM ${table} ${newestOnly(table, where, days)}
    WHERE ${where} LIMIT 1 BY ${identity.join(', ')}`;
}

export interface PerReport {
  table: string;
  where: string;
  /** As in Read. */
  days: string;
  /** Grouped by these besides the report key. */
  by?: string[];
  /**
   * Aggregates a row written twice does not change (max, min, any, argMax), aliased to names that are not the
   * table's columns (ClickHouse 18.16 would resolve the alias inside its own aggregate).
   */
  aggregates: string[];
}

/**
 * One row per current report (and `by`): `aggregates` over its newest rows, in one query level, without currentRows'
 * LIMIT 1 BY: each level enclosing a look-up adds to its cost (newestOnly).
 */
export function perReport({ table, where, days, by = [], aggregates }: PerReport): string {
  const keys = ['report_key', ...by].join(', ');
  return `SELECT ${keys}, ${aggregates.join(', ')} FROM ${table} ${newestOnly(table, where, days)}
    WHERE ${where} GROUP BY ${keys}`;
}
