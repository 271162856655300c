// A check run of one managed domain (hosted by us, or listed in POSTURE_DOMAINS), stored with its time; the API
// runs them on a schedule and on demand. Domains not managed are never checked: nobody can aim the checker.
import { toClickHouseDateTime } from '../sql.ts';
import { Resolver } from 'node:dns/promises';
import { readFile } from 'node:fs/promises';
import type { ClickHouseClient } from '../clickhouse.ts';
import type { Config } from '../config.ts';
import { currentPolicies } from '../sts-policies.ts';
import { checkDomain, type CheckResult } from './checks.ts';
import { latestRun, storeRun, type Reader } from './store.ts';

export type PostureConfig = Pick<
  Config,
  | 'POSTURE_DOMAINS'
  | 'POSTURE_DNS_SERVERS'
  | 'POSTURE_ALLOW_PRIVATE'
  | 'POSTURE_SMTP_PORT'
  | 'POSTURE_HTTPS_PORT'
  | 'POSTURE_CA_FILE'
  | 'POSTURE_TIMEOUT_MS'
>;

export async function managedDomains(ch: ClickHouseClient, config: PostureConfig): Promise<string[]> {
  const hosted = (await currentPolicies(ch)).filter((p) => !p.removed).map((p) => p.domain);
  return [...new Set([...hosted, ...config.POSTURE_DOMAINS.map((d) => d.toLowerCase().replace(/\.$/, ''))])].sort();
}

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
  /** How the previous run is read: the API passes its Db, which qualifies the tables on a cluster. */
  db: Reader = { rows: <T>(sql: string) => rowsOf<T>(ch, sql) },
): Promise<{ checkedAt: string; results: CheckResult[] }> {
  const resolver = new Resolver({ timeout: Math.min(config.POSTURE_TIMEOUT_MS, 5000), tries: 2 });
  if (config.POSTURE_DNS_SERVERS.length > 0) resolver.setServers(config.POSTURE_DNS_SERVERS);
  const [previous] = (await latestRun(db, domain)).filter((r) => r.check_name === 'policy' && r.policy_id !== '');
  const run = await checkDomain(domain, {
    resolver,
    allowPrivate: config.POSTURE_ALLOW_PRIVATE,
    smtpPort: config.POSTURE_SMTP_PORT,
    httpsPort: config.POSTURE_HTTPS_PORT,
    ca: config.POSTURE_CA_FILE ? await readFile(config.POSTURE_CA_FILE, 'utf8') : undefined,
    timeoutMs: config.POSTURE_TIMEOUT_MS,
    now,
    previous: previous ? { id: previous.policy_id, policy: previous.policy_text } : undefined,
  });
  await storeRun(ch, { domain, at: now, results: run.results, id: run.id, policyText: run.policyText });
  return { checkedAt: toClickHouseDateTime(now), results: run.results };
}
