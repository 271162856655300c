// The current rows of reports, found without grouping the history (schemas/clickhouse/0005, 0008 and 0009): a report's
// rows are those of its newest processing, whose `version` is the greatest among the report's versions in
// report_versions. Only the reports stored again with other content (reprocessed_reports, marked by the worker:
// services/worker/reprocessing.ts) are looked up there; every other report's versions hold the same rows, which one
// row per identity, or the largest count per report, counts once. The API's reads and the alert rules go through
// newestOnly(), so a report delivered twice, over both channels or re-processed after a crash counts once, as in the
// *_dedup views.

/** A table's identity columns: one row per identity, whatever was written twice. */
export const POLICY_IDENTITY = ['report_key', 'policy_index'];
export const DETAIL_IDENTITY = ['report_key', 'policy_index', 'detail_index'];

/** The rows a read is about: its days, its domains if it names some, and any other condition. */
export interface Scope {
  /** A condition on `day` alone: the marks and versions looked up are those days'. */
  days: string;
  /**
   * A condition on `policy_domain` alone, if the read names domains: only their marks are looked up (a domain's read
   * costs what its own re-processed reports cost, not what every domain's do).
   */
  domains?: string | undefined;
  /** Any other condition on the rows. */
  where?: string | undefined;
}

/** The rows of `scope`: domains, days and the rest, in the order of the tables' sort keys. */
const condition = ({ days, domains, where }: Scope): string => [domains, days, where].filter(Boolean).join(' AND ');

export interface Read extends Scope {
  /**
   * Sorted by domain and day (policy_results, failure_details, domain_policies) or by day and key (policy_days,
   * failure_days): every one has `day`, `report_key` and `version`.
   */
  table: string;
  identity: string[];
  columns: string[];
}

export interface Newest {
  /** A join giving each row `newest_version`: its report's newest version if the report is marked, else 0. */
  join: string;
  /** The condition that keeps the rows of newest processings. */
  keep: string;
}

/**
 * Each marked report's newest version, for the marks of `days` (and `domains`): the rows a read keeps are those of
 * reports with no mark and those of the newest processing of marked ones. Versions are looked
 * up by (day, report_key), the sort key of report_versions: every row of a report has the report's day. ANY LEFT: the
 * right side has one row per report and every left row is kept (ClickHouse 18.16's ALL LEFT JOIN cost 4 ms more a
 * query, with nothing on the right).
 *
 * Joined, not a `(report_key, version) IN (…)` condition: ClickHouse 18.16 runs an IN subquery on a sort-key column
 * while it analyses the query (to use the set on the index), and once more for every query enclosing it; a joined
 * subquery runs once (the IN inside it reads the small reprocessed_reports).
 */
export function newestOnly(days: string, domains?: string): Newest {
  const marked = `SELECT day, report_key FROM reprocessed_reports WHERE ${days}${domains ? ` AND ${domains}` : ''}`;
  return {
    join: `ANY LEFT JOIN (SELECT report_key, max(version) AS newest_version FROM report_versions
      WHERE ${days} AND (day, report_key) IN (${marked}) GROUP BY report_key) AS newest USING (report_key)`,
    keep: '(newest_version = 0 OR version = newest_version)',
  };
}

/** The rows of `table` where `where` holds, of each report's newest processing only, one per identity. */
export function currentRows(read: Read): string {
  const { table, identity, columns, days, domains } = read;
  const newest = newestOnly(days, domains);
  return `SELECT ${[...new Set([...identity, ...columns])].join(', ')} FROM ${table} ${newest.join}
    WHERE ${condition(read)} AND ${newest.keep} LIMIT 1 BY ${identity.join(', ')}`;
}

export interface PerReport extends Scope {
  table: string;
  /** Grouped by these besides the report key. */
  by?: string[];
  /**
   * Aggregates a row written twice does not change (max, min, any, argMax), aliased to names that are not the
   * table's columns (ClickHouse would resolve the alias inside its own aggregate).
   */
  aggregates: string[];
}

/**
 * One row per current report (and `by`): `aggregates` over its newest rows, in one query level, without currentRows'
 * LIMIT 1 BY: each level enclosing a look-up adds to its cost (newestOnly).
 */
export function perReport(read: PerReport): string {
  const { table, days, domains, by = [], aggregates } = read;
  const keys = ['report_key', ...by].join(', ');
  const newest = newestOnly(days, domains);
  return `SELECT ${keys}, ${aggregates.join(', ')} FROM ${table} ${newest.join}
    WHERE ${condition(read)} AND ${newest.keep} GROUP BY ${keys}`;
}

/**
 * Failure details with each report's sts and tlsa twins once (Microsoft lists the same sessions under an sts and a
 * tlsa policy): one row per report and `keys`, `failed_once` the largest of its policy types' sums and
 * `details_once` that many details. `details` has report_key, policy_type, failed_session_count and the keys.
 */
export function twinsOnce(details: string, keys: string[]): string {
  const by = ['report_key', ...keys].join(', ');
  return `SELECT ${by}, max(typed_failed) AS failed_once, max(typed_details) AS details_once
    FROM (SELECT ${by}, policy_type, sum(failed_session_count) AS typed_failed, count() AS typed_details
          FROM (${details}) GROUP BY ${by}, policy_type)
    GROUP BY ${by}`;
}
