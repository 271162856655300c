// The live checks' results as the API and the scheduler read them (the scheduler runs the checks and stores them:
// services/scheduler/posture/), and which domains are managed (checked at all). Every result of a run shares its
// `checked_at`.
import type { ClickHouseClient } from './clickhouse.ts';
import type { Config } from './config.ts';
import { quoteString } from './clickhouse-compat.ts';
import { clientRows, currentPolicies, currentPolicy } from './sts-policies.ts';

/** POSTURE_DOMAINS as domains compare: lower case, no final dot. */
const listed = (postureDomains: readonly string[]): string[] =>
  postureDomains.map((d) => d.toLowerCase().replace(/\.$/, ''));

/** The domains checked: hosted by us, or listed in POSTURE_DOMAINS. No other domain is ever checked. */
export async function managedDomains(ch: ClickHouseClient, config: Pick<Config, 'POSTURE_DOMAINS'>): Promise<string[]> {
  const hosted = (await currentPolicies(ch)).filter((p) => !p.removed).map((p) => p.domain);
  return [...new Set([...hosted, ...listed(config.POSTURE_DOMAINS)])].sort();
}

/** Whether one domain is managed (listed, or hosted and not removed): its own policy read, not every domain's. */
export async function isManagedDomain(
  source: ClickHouseClient | ((sql: string) => Promise<Array<Record<string, unknown>>>),
  postureDomains: readonly string[],
  domain: string,
): Promise<boolean> {
  if (listed(postureDomains).includes(domain)) return true;
  const hosted = await currentPolicy(typeof source === 'function' ? source : clientRows(source), domain);
  return hosted !== undefined && !hosted.removed;
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

/** A stored check's detail (the JSON the scheduler wrote), or {} where it is not a JSON object. */
export function checkDetail(c: Pick<StoredCheck, 'detail'>): Record<string, unknown> {
  try {
    const d = JSON.parse(c.detail) as unknown;
    return d && typeof d === 'object' ? (d as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/** What reads the stored checks: common/db.ts's Db (tables qualified on a cluster) has this shape. */
export interface Reader {
  rows<T>(sql: string): Promise<T[]>;
}

/** The results of a domain's newest check run (or of the newest run at or before `at`). */
export async function latestRun(db: Reader, domain: string, at?: string): Promise<StoredCheck[]> {
  const before = at ? ` AND checked_at <= toDateTime(${quoteString(at)}, 'UTC')` : '';
  // run_at, not checked_at: ClickHouse would read the WHERE's checked_at as the alias (a String).
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
