// The one place that reads process.env. Parsed once at start-up; services take the slice they need.
import { forwardRules } from './forward-rules.ts';
import { z } from 'zod';

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');
const MiB = 1024 * 1024;

/** A whole number above zero from the environment (sizes, counts, timeouts). */
const positiveInt = (defaultValue: number) => z.coerce.number().int().positive().default(defaultValue);
/** A whole number from zero up (0 meaning none or never, where the setting says so). */
const nonNegativeInt = (defaultValue: number) => z.coerce.number().int().nonnegative().default(defaultValue);
/** A TCP port to listen on (0: any free port). */
const port = (defaultValue: number) => z.coerce.number().int().min(0).max(65535).default(defaultValue);

/** A comma-separated list: items trimmed, empty ones dropped. */
const commaList = (defaultValue: string) =>
  z
    .string()
    .default(defaultValue)
    .transform((v) =>
      v
        .split(',')
        .map((x) => x.trim())
        .filter(Boolean),
    );

const routeSchema = z
  .object({
    domains: z.array(z.string().regex(/^(\*|(\*\.)?[a-z0-9_-]+(\.[a-z0-9_-]+)*)$/)).min(1),
    to: z.array(z.string().regex(/^(mailto:[^\s@,]+@[^\s@,]+|(slack|teams|webhook):https?:\/\/\S+)$/)).min(1),
  })
  .strict();

export type NotifyRoute = z.infer<typeof routeSchema>;

/** NOTIFY_ROUTES read: the routes, or what is wrong with them. Kept as text in the config, so it passes on as is. */
export function routesFrom(text: string): NotifyRoute[] | string {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return 'not JSON';
  }
  const r = z.array(routeSchema).safeParse(value);
  return r.success ? r.data : `${r.error.issues[0]?.path.join('.') ?? ''}: ${r.error.issues[0]?.message ?? 'invalid'}`;
}

/** The routes of a loaded configuration (validated when it loaded). */
export const notifyRoutes = (config: Pick<Config, 'NOTIFY_ROUTES'>): NotifyRoute[] =>
  routesFrom(config.NOTIFY_ROUTES) as NotifyRoute[];

/** NOTIFY_QUIET_HOURS as [start, end] hours (UTC), or undefined. */
export const quietHours = (config: Pick<Config, 'NOTIFY_QUIET_HOURS'>): [number, number] | undefined =>
  config.NOTIFY_QUIET_HOURS ? (config.NOTIFY_QUIET_HOURS.split('-').map(Number) as [number, number]) : undefined;

export const configSchema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Where the local stack keeps Redis, ClickHouse and the development certificate. */
  DATA_DIR: z.string().default('.data'),

  REDIS_URL: z.string().url().default('redis://127.0.0.1:6390'),
  /**
   * Redis Sentinels (`host:port,host:port,…`) that name the master: with them, REDIS_URL gives only the password,
   * database and TLS (rediss://), and every service follows a failover on its own.
   */
  REDIS_SENTINELS: z
    .string()
    .default('')
    .transform((s, ctx) => {
      const list = s
        .split(',')
        .map((x) => x.trim())
        .filter(Boolean);
      return list.map((entry) => {
        const m = /^(\[[0-9a-f:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/i.exec(entry);
        if (!m || Number(m[2]) > 65535) {
          ctx.addIssue({ code: 'custom', message: `not host:port: ${entry}` });
          return { host: '', port: 0 };
        }
        return { host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) };
      });
    }),
  /** The master's name the sentinels monitor. */
  REDIS_SENTINEL_MASTER: z.string().min(1).default('tlsrpt'),
  REDIS_SENTINEL_PASSWORD: z.string().default(''),
  /** Sentinels spoken to over TLS. */
  REDIS_SENTINEL_TLS: bool.default(false),
  /** A PEM file of the CAs to trust for Redis and Sentinel TLS (a private CA); the system's when empty. */
  REDIS_TLS_CA_FILE: z.string().default(''),
  /**
   * Replicas that must hold a queued report before a receiver acknowledges it (Redis WAIT on the connection that
   * wrote it): 0 acknowledges what the master alone holds; 1 or more survives losing the master's machine.
   */
  REDIS_ACK_REPLICAS: z.coerce.number().int().min(0).max(10).default(0),
  /** How long to wait for those replicas before deferring the sender (451 / 503) instead of acknowledging. */
  REDIS_ACK_TIMEOUT_MS: positiveInt(2_000),
  QUEUE_NAME: z.string().min(1).default('tlsrpt-reports'),

  CLICKHOUSE_URL: z.string().url().default('http://127.0.0.1:8124'),
  CLICKHOUSE_USER: z.string().default('default'),
  CLICKHOUSE_PASSWORD: z.string().default(''),
  CLICKHOUSE_DATABASE: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'a plain identifier')
    .default('tlsrpt'),
  /** Native-protocol port of the local ClickHouse that `npm start` runs (clickhouse-client uses it). */
  CLICKHOUSE_TCP_PORT: z.coerce.number().int().min(1).max(65535).default(9010),
  CLICKHOUSE_REQUEST_TIMEOUT_MS: positiveInt(30_000),
  // The cluster name of remote_servers when ClickHouse is a cluster: migrations create replicated, sharded tables
  // (services/common/cluster-ddl.ts). Empty: one server.
  CLICKHOUSE_CLUSTER: z
    .string()
    .regex(/^[A-Za-z0-9_]*$/, 'letters, digits and _ only')
    .default(''),

  /** TLS certificate and key (PEM files) for the HTTPS and SMTP receivers. Empty: a development certificate. */
  TLS_CERT_FILE: z.string().default(''),
  TLS_KEY_FILE: z.string().default(''),

  HTTP_HOST: z.string().default('0.0.0.0'),
  HTTP_PORT: port(8443),
  /** Plain HTTP, only for running behind a TLS-terminating proxy. */
  HTTP_PLAINTEXT: bool.default(false),
  HTTP_PATH: z.string().startsWith('/').default('/v1/tlsrpt'),
  HTTP_MAX_BODY_BYTES: positiveInt(10 * MiB),
  /** All request bodies being read at once, together; past it new reports get 503 instead of more memory. */
  HTTP_MAX_INFLIGHT_BYTES: positiveInt(128 * MiB),
  /** How long a request may wait for Redis to take its job before it is answered 503. */
  HTTP_ENQUEUE_TIMEOUT_MS: positiveInt(5_000),
  HTTP_REQUEST_TIMEOUT_MS: positiveInt(60_000),
  HTTP_MAX_CONNECTIONS: positiveInt(2_000),
  /** Per source address: open connections, and reports per minute (past it: 429 with Retry-After). */
  HTTP_MAX_CONNECTIONS_PER_IP: positiveInt(100),
  HTTP_RATE_LIMIT_PER_MINUTE: positiveInt(6_000),
  /** /metrics, /healthz and /readyz of the HTTPS receiver, off its internet-facing port. */
  HTTP_METRICS_HOST: z.string().default('0.0.0.0'),
  HTTP_METRICS_PORT: port(9466),

  // Jobs in flight, and so the most reports one batch can hold: inserts cost per part, so more per batch is cheaper.
  // Each job waits for its batch to be stored, so this also bounds reports/s at about concurrency / (batch wait +
  // insert time): npm run bench at 1,000 reports/s offered stored 775/s with 500 (the backlog grew, p99 6 s) and
  // 979/s with 1,000 (p99 2.6 s), 2,000 no better; worker RSS 240-270 MB with 1,000 since rows are encoded on arrival.
  WORKER_CONCURRENCY: positiveInt(1_000),
  /**
   * How long a job stays with a worker that stopped renewing its hold (died, or lost its Redis master to a failover
   * while it held the job) before another worker may take it; checked every half of it.
   */
  WORKER_LOCK_MS: z.coerce.number().int().min(5_000).default(60_000),
  WORKER_MAX_DECOMPRESSED_BYTES: positiveInt(50 * MiB),
  /** Per report: policies and failure details past which it is rejected (too-many-policies, -failure-details). */
  WORKER_MAX_POLICIES: positiveInt(10_000),
  WORKER_MAX_FAILURE_DETAILS: positiveInt(100_000),
  /**
   * A batch is written when it holds this many rows (all tables together), or when the oldest waited this long and
   * the batch before it is stored (group commit: a slow ClickHouse gets fewer, larger inserts).
   */
  WORKER_BATCH_MAX_ROWS: positiveInt(30_000),
  WORKER_BATCH_MAX_WAIT_MS: nonNegativeInt(400),
  /**
   * Encoded rows held for ClickHouse (waiting and being written) past which jobs wait their turn: the bound on the
   * worker's memory with large reports (npm run bench: 64 reports of 10 MB took it to 4.7 GB without one). About
   * two batches of the usual mix (~20 KB per report), so one can be written while the next fills.
   */
  WORKER_MAX_BUFFERED_BYTES: positiveInt(32 * MiB),
  /**
   * After a report of at least this many bytes of JSON, the worker runs a full garbage collection (when started
   * with --expose-gc, as our scripts do): V8 otherwise lets the hundreds of MB such reports leave behind pile up
   * before collecting (npm run bench, "10 MB reports"). 0: never.
   */
  WORKER_GC_AFTER_BYTES: nonNegativeInt(4 * MiB),
  /** Reject rows (and their raw bodies) are deleted after this many days; 0 keeps them. */
  REJECTS_RETENTION_DAYS: nonNegativeInt(30),
  /** Raw text of stored reports (raw_reports) is deleted after this many days; 0 (the default) keeps it. */
  RAW_REPORTS_RETENTION_DAYS: nonNegativeInt(0),
  /** How often the scheduler applies retention (a BullMQ job scheduler: one run at a time across schedulers). */
  RETENTION_INTERVAL_MS: positiveInt(3_600_000),
  /** A reject's raw body past this many bytes keeps only its first bytes (internal-error bodies: all, to replay). */
  REJECT_MAX_RAW_BYTES: positiveInt(MiB),
  /** /metrics, /healthz and /readyz of the worker. */
  WORKER_METRICS_PORT: port(9464),

  SMTP_HOST: z.string().default('0.0.0.0'),
  SMTP_PORT: port(2525),
  /** The name in our greeting and EHLO reply; production: the MX host name. */
  SMTP_HOSTNAME: z.string().min(1).default('localhost'),
  /** Report mailboxes we accept mail for: addresses (`tlsrpt@example.com`) or whole domains (`@example.com`). */
  SMTP_RECIPIENTS: commaList('tlsrpt@localhost').transform((list) => list.map((x) => x.toLowerCase())),
  SMTP_MAX_MESSAGE_BYTES: positiveInt(15 * MiB),
  SMTP_MAX_HEADER_BYTES: positiveInt(256 * 1024),
  SMTP_MAX_MIME_PARTS: positiveInt(100),
  SMTP_MAX_UNZIPPED_BYTES: positiveInt(50 * MiB),
  /** Files in one zip attachment (each is a report, and a job). */
  SMTP_MAX_ZIP_ENTRIES: positiveInt(100),
  /** All messages being read, parsed and queued at once, counted 4x their size; past it: 451 4.3.1. */
  SMTP_MAX_INFLIGHT_BYTES: positiveInt(256 * MiB),
  SMTP_MAX_RECIPIENTS: positiveInt(50),
  SMTP_MAX_CLIENTS: positiveInt(1_000),
  /** Per source address: open connections (past it: 421), and messages per minute (past it: 451 4.7.1). */
  SMTP_MAX_CONNECTIONS_PER_IP: positiveInt(50),
  SMTP_RATE_LIMIT_PER_MINUTE: positiveInt(3_000),
  SMTP_SOCKET_TIMEOUT_MS: positiveInt(60_000),
  /** A whole SMTP connection ends after this long, however busy: a client trickling a byte at a time never idles. */
  SMTP_MAX_SESSION_MS: positiveInt(600_000),
  SMTP_ENQUEUE_TIMEOUT_MS: positiveInt(5_000),
  /**
   * `record` keeps every report and stores its DKIM verdict; `require` (RFC 8460 §3's rule) turns a report
   * without a valid signature by the submitter into a reject. See docs/services.md: real senders do not all sign.
   */
  SMTP_DKIM_POLICY: z.enum(['record', 'require']).default('record'),
  /** /metrics, /healthz and /readyz of the SMTP receiver. */
  SMTP_METRICS_PORT: port(9465),
  API_HOST: z.string().default('0.0.0.0'),
  API_PORT: port(8080),
  /**
   * Bearer tokens, JSON: `[{"name":"ops","sha256":"<hex of the token>","domains":["example.com"]}]`. `sha256` keeps
   * the token itself out of the configuration (`"token"` is accepted too); `domains` limits what it sees.
   * Empty in development: the token `dev-token` works, with a warning. Empty in production: nothing is served.
   */
  API_TOKENS: z.string().default(''),
  API_QUERY_TIMEOUT_SECONDS: positiveInt(10),
  API_MAX_ROWS: positiveInt(10_000),
  /**
   * Mailboxes the mailbox fetcher reads (JSON list; docs/mailboxes.md), or a file holding that
   * list. Empty: the fetcher has nothing to do and `npm start` does not run it.
   */
  IMAP_MAILBOXES: z.string().default(''),
  IMAP_MAILBOXES_FILE: z.string().default(''),
  /** Verify the DKIM signatures of fetched mail (a verdict per receipt, as for SMTP). */
  IMAP_VERIFY_DKIM: bool.default(true),
  /** How long one IMAP command may take in all (a server that drips bytes resets no clock). */
  IMAP_COMMAND_TIMEOUT_SECONDS: positiveInt(120),
  /** /metrics, /healthz and /readyz of the mailbox fetcher. */
  MAILBOX_METRICS_PORT: port(9467),
  /** The rua this deployment receives at, for the `_smtp._tls` record of hosted domains. */
  MTA_STS_RUA: z.string().min(1).default('mailto:tlsrpt@localhost'),
  /** The host name (or IPv4 address) the `mta-sts.<domain>` records of hosted domains point at: the policy host. */
  MTA_STS_HOST_TARGET: z.string().min(1).default('localhost'),
  /** Days of reports the testing → enforce check reads. */
  MTA_STS_READINESS_DAYS: positiveInt(14),
  /** The MTA-STS policy host (services/mta-sts): HTTPS for mta-sts.<hosted domain>. */
  MTA_STS_HOST: z.string().default('0.0.0.0'),
  MTA_STS_PORT: port(8445),
  /** Certificates of the policy host: `<dir>/mta-sts.<domain>.pem` (chain) and `.key`, read again on each refresh. */
  MTA_STS_CERT_DIR: z.string().default(''),
  MTA_STS_METRICS_PORT: port(9468),
  /** The ACME directory the policy host orders its certificates from (e.g. Let's Encrypt's); empty: files only. */
  MTA_STS_ACME_DIRECTORY: z.string().default(''),
  MTA_STS_ACME_EMAIL: z.string().default(''),
  /** Where HTTP-01 challenges are answered: port 80 of the policy host's address in production. */
  MTA_STS_ACME_HTTP_PORT: port(80),
  /** Extra CAs to trust for the ACME directory (tests: pebble's); empty: the system's. */
  MTA_STS_ACME_CA_FILE: z.string().default(''),
  /** How often the policy host reads the policies (it serves the last ones it read if ClickHouse is away). */
  MTA_STS_REFRESH_SECONDS: positiveInt(10),
  /** Domains checked live besides the hosted ones (comma-separated; docs/mta-sts.md). */
  POSTURE_DOMAINS: commaList(''),
  /** How often every managed domain is checked (ms); 0: only on demand. */
  POSTURE_INTERVAL_MS: nonNegativeInt(6 * 3600_000),
  /** DNS servers of the checks (`ip` or `ip:port`, comma-separated); empty: the system's. */
  POSTURE_DNS_SERVERS: commaList(''),
  /** Let the checks contact private and loopback addresses (tests only: otherwise refused, see net-guard.ts). */
  POSTURE_ALLOW_PRIVATE: bool.default(false),
  POSTURE_SMTP_PORT: port(25),
  POSTURE_HTTPS_PORT: port(443),
  /** Extra CAs the checks trust (PEM file; tests); empty: the system's. */
  POSTURE_CA_FILE: z.string().default(''),
  POSTURE_TIMEOUT_MS: positiveInt(10_000),
  /** What all the checks of one domain may take; past it the run is stored as timed out with what it found. */
  POSTURE_DOMAIN_TIMEOUT_MS: positiveInt(60_000),
  /** Domains checked side by side by the scheduled run, and MX hosts side by side within a domain. */
  POSTURE_CONCURRENCY: positiveInt(4),
  /** How long a dashboard sign-in lasts (seconds; absolute, not renewed by use). */
  UI_SESSION_TTL_SECONDS: positiveInt(8 * 3600),

  /**
   * The per-day alert rules of releases before incidents (comma-separated): failure-rate, new-result-type,
   * enforce-failure, reporter-stopped, sts-policy-fetch-error, posture. None by default: the feed carries incident
   * events instead.
   */
  ALERT_RULES: commaList('').pipe(
    z.array(
      z.enum([
        'failure-rate',
        'new-result-type',
        'enforce-failure',
        'reporter-stopped',
        'sts-policy-fetch-error',
        'posture',
      ]),
    ),
  ),
  /** An incident resolves after this many consecutive days with the domain's reports and no such failure. */
  INCIDENT_RESOLVE_DAYS: z.coerce.number().int().min(1).max(30).default(3),
  /** A regular reporter counts as stopped after this many days with the domain's reports but none of its own. */
  INCIDENT_STOPPED_AFTER_DAYS: z.coerce.number().int().min(1).max(30).default(3),
  /** Report days before a request's last day incidents are derived from, at least (up to twice: a fixed grid). */
  INCIDENT_WINDOW_DAYS: z.coerce.number().int().min(7).max(366).default(120),
  ALERT_FAILURE_RATE: z.coerce.number().min(0).max(1).default(0.05),
  ALERT_MIN_SESSIONS: nonNegativeInt(100),
  /** How many report days back each evaluation looks. */
  ALERT_LOOKBACK_DAYS: z.coerce.number().int().positive().max(366).default(30),
  ALERT_REPORTER_DAYS: positiveInt(7),
  /** Reports arrive late (Microsoft's by days): a reporter counts as stopped only after this many silent days. */
  ALERT_REPORTER_GRACE_DAYS: nonNegativeInt(2),
  ALERT_EVAL_INTERVAL_MS: positiveInt(60_000),
  /** /metrics, /healthz and /readyz of the scheduler (alert evaluation, webhooks, live checks, retention). */
  SCHEDULER_METRICS_HOST: z.string().default('0.0.0.0'),
  SCHEDULER_METRICS_PORT: port(9469),
  /** New alerts are POSTed to these URLs (comma-separated), signed with HMAC-SHA256 of the body. */
  ALERT_WEBHOOK_URLS: commaList('').pipe(z.array(z.string().url())),
  ALERT_WEBHOOK_SECRET: z.string().default(''),

  /**
   * Who is told of incidents (JSON): [{"domains": ["*" | "example.com" | "*.example.com"], "to": ["mailto:…",
   * "slack:https://hooks.slack.com/…", "teams:https://…", "webhook:https://…"]}]. Every matching route delivers.
   */
  NOTIFY_ROUTES: z
    .string()
    .default('[]')
    .superRefine((text, ctx) => {
      const r = routesFrom(text);
      if (typeof r === 'string') ctx.addIssue({ code: 'custom', message: r });
    }),
  /** The SMTP relay for mail notifications: smtp://user:password@host:587 (STARTTLS) or smtps://…:465. */
  NOTIFY_SMTP_URL: z.string().default(''),
  /** Refuse to send mail unless the relay offers STARTTLS (smtp://). */
  NOTIFY_SMTP_REQUIRE_TLS: bool.default(true),
  /** Verify the relay's certificate. Off only for a relay with a private certificate (and the tests). */
  NOTIFY_SMTP_TLS_VERIFY: bool.default(true),
  NOTIFY_FROM: z.string().default('tlsrpt-pipeline <tlsrpt@localhost>'),
  /** The hour (UTC, 0–23) of each mail recipient's daily digest; empty for none. */
  NOTIFY_DIGEST_HOUR: z.union([z.literal(''), z.coerce.number().int().min(0).max(23)]).default(''),
  /** Hours (UTC) without notifications, e.g. 22-7: what comes then waits for their end, but for critical ones. */
  NOTIFY_QUIET_HOURS: z
    .string()
    .regex(/^(|([01]?\d|2[0-3])-([01]?\d|2[0-3]))$/, 'HH-HH in UTC, e.g. 22-7')
    .default(''),
  /** The dashboard's address, for links in notifications (e.g. https://tlsrpt.example.com). */
  NOTIFY_DASHBOARD_URL: z.string().default(''),
  /** Deliver to private and loopback addresses too (tests and closed networks only). */
  NOTIFY_ALLOW_PRIVATE: bool.default(false),

  /**
   * Report forwarding (JSON): [{"domains": ["example.com", "*.example.net"], "to": ["mailto:tlsrpt@other.example",
   * "https://collector.example/v1/tlsrpt"]}]; "domains" left out: every domain. Each accepted report's original bytes
   * go to each matching destination once (services/common/forwarding.ts). Mail goes through NOTIFY_SMTP_URL.
   */
  FORWARD_RULES: z.string().default(''),
  /** The From of forwarded report mail (its domain is the one DKIM signs for, with FORWARD_DKIM_*). */
  FORWARD_FROM: z.string().default('tlsrpt-pipeline <tlsrpt@localhost>'),
  /** DKIM signing of forwarded mail (RFC 8460 §3): the domain, selector and PEM private key file; empty: unsigned. */
  FORWARD_DKIM_DOMAIN: z.string().default(''),
  FORWARD_DKIM_SELECTOR: z.string().default(''),
  FORWARD_DKIM_KEY_FILE: z.string().default(''),
  /** This deployment's name in the header forwarded reports carry (FORWARDED_HEADER); the host name by default. */
  FORWARD_INSTANCE: z.string().max(200).default(''),
  /** Forward to private and loopback addresses, and over plain http (tests and closed networks only). */
  FORWARD_ALLOW_PRIVATE: bool.default(false),
  /** How long a forwarding job is held before another scheduler may take it up (its process died). */
  FORWARD_LOCK_MS: positiveInt(30_000),
});

export type Config = z.infer<typeof configSchema>;

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = configSchema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new Error(`invalid configuration:\n${lines.join('\n')}`);
  }
  try {
    forwardRules(parsed.data);
  } catch (err) {
    throw new Error(`invalid configuration:\n  ${(err as Error).message}`, { cause: err });
  }
  return parsed.data;
}

/** A parsed configuration as the environment that parses to it again (for services a test or the bench starts). */
export function configEnv(config: Config): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(config) as Array<[string, unknown]>) {
    if (k === 'REDIS_SENTINELS')
      env[k] = config.REDIS_SENTINELS.map((s) => `${s.host.includes(':') ? `[${s.host}]` : s.host}:${s.port}`).join(
        ',',
      );
    else if (Array.isArray(v)) env[k] = v.map(String).join(',');
    else env[k] = String(v);
  }
  return env;
}
