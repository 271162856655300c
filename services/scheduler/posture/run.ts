// A check run of one managed domain (hosted by us, or listed in POSTURE_DOMAINS), stored with its time; the
// scheduler runs them on a schedule and on demand (the API's POST /v1/checks/{domain}, through the check-now queue).
// Domains not managed are never checked: nobody can aim the checker.
import { quoteString } from '../../common/clickhouse-compat.ts';
import { toClickHouseDateTime } from '../../common/sql.ts';
import { Resolver } from 'node:dns/promises';
import { readFile } from 'node:fs/promises';
import type { ClickHouseClient } from '../../common/clickhouse.ts';
import type { Config } from '../../common/config.ts';
import { checkDomain, type CheckResult } from './checks.ts';
import type { Logger } from '../../common/logger.ts';
import { latestRun, managedDomains, type Reader } from '../../common/posture-store.ts';

export type PostureConfig = Pick<
  Config,
  | 'POSTURE_DOMAINS'
  | 'POSTURE_DNS_SERVERS'
  | 'POSTURE_ALLOW_PRIVATE'
  | 'POSTURE_SMTP_PORT'
  | 'POSTURE_HTTPS_PORT'
  | 'POSTURE_CA_FILE'
  | 'POSTURE_TIMEOUT_MS'
  | 'POSTURE_DOMAIN_TIMEOUT_MS'
  | 'POSTURE_CONCURRENCY'
>;

export async function rowsOf<T>(ch: ClickHouseClient, sql: string): Promise<T[]> {
  const result = await ch.query({
    query: sql,
    format: 'JSONEachRow',
    clickhouse_settings: { output_format_json_quote_64bit_integers: 0 },
  });
  return await result.json<T>();
}

export async function runChecks(
  ch: ClickHouseClient,
  domain: string,
  config: PostureConfig,
  now = new Date(),
  /** How the previous run is read: the scheduler passes its Db, which qualifies the tables on a cluster. */
  db: Reader = { rows: <T>(sql: string) => rowsOf<T>(ch, sql) },
): Promise<{ checkedAt: string; results: CheckResult[] }> {
  const resolver = new Resolver({ timeout: Math.min(config.POSTURE_TIMEOUT_MS, 5000), tries: 2 });
  if (config.POSTURE_DNS_SERVERS.length > 0) resolver.setServers(config.POSTURE_DNS_SERVERS);
  const [previous] = (await latestRun(db, domain)).filter((r) => r.check_name === 'policy' && r.policy_id !== '');
  const found: CheckResult[] = [];
  const stop = new AbortController();
  const checked = checkDomain(
    domain,
    {
      resolver,
      allowPrivate: config.POSTURE_ALLOW_PRIVATE,
      smtpPort: config.POSTURE_SMTP_PORT,
      httpsPort: config.POSTURE_HTTPS_PORT,
      ca: config.POSTURE_CA_FILE ? await readFile(config.POSTURE_CA_FILE, 'utf8') : undefined,
      timeoutMs: config.POSTURE_TIMEOUT_MS,
      concurrency: config.POSTURE_CONCURRENCY,
      signal: stop.signal,
      now,
      previous: previous ? { id: previous.policy_id, policy: previous.policy_text } : undefined,
    },
    found,
  );
  // The domain's deadline: what was found by then is stored, with the run recorded as timed out.
  let timer: NodeJS.Timeout | undefined;
  const ms = config.POSTURE_DOMAIN_TIMEOUT_MS;
  const run = await Promise.race([
    checked,
    new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms))),
  ]).finally(() => clearTimeout(timer));
  if (!run) {
    stop.abort();
    resolver.cancel();
    checked.catch(() => {});
  }
  const results = run
    ? run.results
    : [
        ...found,
        {
          check: 'run' as const,
          subject: domain,
          severity: 'warning' as const,
          summary: `the checks of ${domain} did not finish within ${ms / 1000} s; what they found by then is kept`,
          detail: { timedOut: true, deadlineMs: ms },
        },
      ];
  const at = await storeRun(ch, db, { domain, startedAt: now, results, id: run?.id, policyText: run?.policyText });
  return { checkedAt: toClickHouseDateTime(at), results };
}

/**
 * The checks of every managed domain, `POSTURE_CONCURRENCY` domains side by side: a domain whose hosts stall costs
 * its own deadline, not every other domain's turn.
 */
export async function checkAllDomains(ch: ClickHouseClient, config: PostureConfig, db: Reader, logger: Logger) {
  const domains = await managedDomains(ch, config);
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < domains.length) {
      const domain = domains[next++]!;
      try {
        const run = await runChecks(ch, domain, config, new Date(), db);
        const failing = run.results.filter((r) => r.severity !== 'ok');
        if (failing.length > 0)
          logger.info({ domain, failing: failing.map((r) => r.summary) }, 'posture check found problems');
      } catch (err) {
        logger.warn({ err, domain }, 'posture check failed');
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(config.POSTURE_CONCURRENCY, domains.length) }, lane));
}

/** A run's results, to be stored. */
interface FinishedRun {
  domain: string;
  startedAt: Date;
  results: CheckResult[];
  id?: string | undefined;
  policyText?: string | undefined;
}

/** Runs of a domain being stored by this process, one after another (see storeRun). */
const storing = new Map<string, Promise<unknown>>();

/**
 * Stores a run's results (one row each, the policy's id and text on the policy result) and answers the run's time.
 * A run is its rows' `checked_at`, a DateTime of whole seconds: a run started in the same second as the domain's
 * previous one (Check now pressed twice, a scheduled run beside it) is stored a second after it, or the two would
 * read as one run with every finding twice.
 */
async function storeRun(ch: ClickHouseClient, db: Reader, run: FinishedRun): Promise<Date> {
  const before = storing.get(run.domain) ?? Promise.resolve();
  const stored = before.catch(() => {}).then(() => insertRun(ch, db, run));
  storing.set(run.domain, stored);
  try {
    return await stored;
  } finally {
    if (storing.get(run.domain) === stored) storing.delete(run.domain);
  }
}

async function insertRun(ch: ClickHouseClient, db: Reader, run: FinishedRun): Promise<Date> {
  const [last] = await db.rows<{ at: number | string }>(
    `SELECT toUInt32(max(checked_at)) AS at FROM posture_checks WHERE domain = ${quoteString(run.domain)}`,
  );
  const second = Math.floor(run.startedAt.getTime() / 1000);
  const at = new Date(Math.max(second, Number(last?.at ?? 0) + 1) * 1000);
  await ch.insert({
    table: 'posture_checks',
    format: 'JSONEachRow',
    values: run.results.map((r) => ({
      domain: run.domain,
      checked_at: toClickHouseDateTime(at),
      check_name: r.check,
      subject: r.subject,
      severity: r.severity,
      summary: r.summary,
      detail: JSON.stringify(r.detail),
      policy_id: r.check === 'policy' ? (run.id ?? '') : '',
      policy_text: r.check === 'policy' ? (run.policyText ?? '') : '',
    })),
  });
  return at;
}
