// The current rows of reports, found without grouping the history (schemas/clickhouse/0005_read_tables.sql): a
// report's rows are those of its newest processing, whose `version` is the greatest among the report's rows in
// policy_days. The API's reads and the alert rules go through currentRows(), so a report delivered twice, over both
// channels or re-processed after a crash counts once, as in the *_dedup views.

/** A table's identity columns: one row per identity, whatever was written twice. */
export const POLICY_IDENTITY = ['report_key', 'policy_index'];
export const DETAIL_IDENTITY = ['report_key', 'policy_index', 'detail_index'];

export interface Read {
  /** policy_results or failure_details (sorted by domain, day), or policy_days or failure_days (by day, key). */
  table: string;
  identity: string[];
  columns: string[];
  /** What the read is about; a condition on the table's sort key keeps its cost to the rows asked for. */
  where: string;
}

/**
 * The rows of `table` where `where` holds, of each report's newest processing only, one per identity. The newest
 * versions are looked up by (day, report_key), policy_days' sort key: every row of a report has the report's day.
 */
export function currentRows({ table, identity, columns, where }: Read): string {
  const keys = `SELECT day, report_key FROM ${table} WHERE ${where}`;
  const latest = `SELECT report_key, max(version) FROM policy_days WHERE (day, report_key) IN (${keys}) GROUP BY report_key`;
  return `SELECT ${[...new Set([...identity, ...columns])].join(', ')} FROM ${table}
    WHERE ${where} AND (report_key, version) IN (${latest}) LIMIT 1 BY ${identity.join(', ')}`;
}
