// Check runs stored and read back: every result of a run shares its `checked_at`.
import type { ClickHouseClient } from '../clickhouse.ts';
import { quoteString, toClickHouseDateTime } from '../sql.ts';
import type { CheckResult } from './checks.ts';

export async function storeRun(
  ch: ClickHouseClient,
  run: { domain: string; at: Date; results: CheckResult[]; id?: string | undefined; policyText?: string | undefined },
): Promise<void> {
  await ch.insert({
    table: 'posture_checks',
    format: 'JSONEachRow',
    values: run.results.map((r) => ({
      domain: run.domain,
      checked_at: toClickHouseDateTime(run.at),
      check_name: r.check,
      subject: r.subject,
      severity: r.severity,
      summary: r.summary,
      detail: JSON.stringify(r.detail),
      policy_id: r.check === 'policy' ? (run.id ?? '') : '',
      policy_text: r.check === 'policy' ? (run.policyText ?? '') : '',
    })),
  });
}

export interface StoredCheck {
  checked_at: string;
  check_name: string;
  subject: string;
  severity: string;
  summary: string;
  detail: string;
  policy_id: string;
  policy_text: string;
}

/** What reads the stored checks: the API's Db (tables qualified on a cluster) has this shape. */
export interface Reader {
  rows<T>(sql: string): Promise<T[]>;
}

/** The results of a domain's newest check run (or of the newest run at or before `at`). */
export async function latestRun(db: Reader, domain: string, at?: string): Promise<StoredCheck[]> {
  const before = at ? ` AND checked_at <= toDateTime(${quoteString(at)}, 'UTC')` : '';
  // run_at, not checked_at: ClickHouse 18.16 would read the WHERE's checked_at as the alias (a String).
  const found = await db.rows<Omit<StoredCheck, 'checked_at'> & { run_at: string }>(
    `SELECT toString(checked_at) AS run_at, check_name, subject, severity, summary, detail, policy_id, policy_text
     FROM posture_checks WHERE domain = ${quoteString(domain)} AND checked_at =
       (SELECT max(checked_at) FROM posture_checks WHERE domain = ${quoteString(domain)}${before})
     ORDER BY check_name, subject`,
  );
  return found.map(({ run_at, ...r }) => ({ ...r, checked_at: run_at }));
}

/** The check run of a domain nearest in time to `at` (before or after), for joining a reported failure to it. */
export async function nearestRun(db: Reader, domain: string, at: string): Promise<StoredCheck[]> {
  const d = quoteString(domain);
  const t = `toDateTime(${quoteString(at)}, 'UTC')`;
  const [nearest] = await db.rows<{ at: string }>(
    `SELECT toString(checked_at) AS at FROM posture_checks WHERE domain = ${d}
       AND checked_at BETWEEN ${t} - 7 * 86400 AND ${t} + 7 * 86400
     ORDER BY abs(toInt64(checked_at) - toInt64(${t})) LIMIT 1`,
  );
  return nearest ? await latestRun(db, domain, nearest.at) : [];
}
