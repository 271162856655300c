// Hosted MTA-STS policies (RFC 8461), shared by the API (which changes them) and the policy host (which serves them):
// what a policy may say, its text, its id, the current policies in ClickHouse, and the DNS records to publish.
import { quoteString } from './clickhouse-compat.ts';
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import type { ClickHouseClient } from './clickhouse.ts';

const label = '[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?';
const hostname = new RegExp(`^${label}(?:\\.${label})+$`);

export const stsDomain = z
  .string()
  .max(240)
  .transform((s) => s.trim().toLowerCase().replace(/\.$/, ''))
  .pipe(z.string().regex(hostname, 'a domain name in A-label form'));

/** An `mx:` pattern: a host name, or `*.` and a host name (RFC 8461 §3.2). */
const mxPattern = z
  .string()
  .max(253)
  .transform((s) => s.trim().toLowerCase().replace(/\.$/, ''))
  .pipe(z.string().regex(new RegExp(`^(\\*\\.)?${label}(?:\\.${label})+$`), 'an MX host name or *.domain pattern'));

export const MODES = ['enforce', 'testing', 'none'] as const;
export type StsMode = (typeof MODES)[number];

export const policyInput = z.object({
  mode: z.enum(MODES),
  mx: z.array(mxPattern).min(1).max(100),
  /** Seconds; RFC 8461 allows up to 31557600. At least a day: shorter defeats the policy's purpose. */
  maxAge: z.number().int().min(86_400).max(31_557_600),
  /** Reported failures the operator accepts when switching to enforce: by receiving MX host or by reporter. */
  acknowledge: z
    .object({
      mx: z.array(z.string().max(253)).max(100).default([]),
      organizations: z.array(z.string().max(256)).max(100).default([]),
    })
    .optional(),
});
export type PolicyInput = z.infer<typeof policyInput>;

/** Adopting a published policy: its mode and, from a live check, its MX patterns and max_age, unless given. */
export const adoptInput = policyInput.pick({ mx: true, maxAge: true }).partial();

export interface StsPolicy {
  domain: string;
  mode: StsMode;
  mx: string[];
  max_age: number;
  policy_id: string;
  changed_at: string;
  serve_until: string;
  removed: number;
}

/** The policy file, exactly: CRLF line ends (RFC 8461 §3.2), one `mx:` line per pattern. */
export function policyText(p: Pick<StsPolicy, 'mode' | 'mx' | 'max_age'>): string {
  return ['version: STSv1', `mode: ${p.mode}`, ...p.mx.map((m) => `mx: ${m}`), `max_age: ${p.max_age}`]
    .map((l) => `${l}\r\n`)
    .join('');
}

/** A new policy id: 1–32 letters and digits (RFC 8461 §3.1), ordered by time, never the previous one. */
export function newPolicyId(now: Date, previous?: string): string {
  for (;;) {
    const id = `${now
      .toISOString()
      .replace(/[-:T.Z]/g, '')
      .slice(0, 14)}${randomBytes(4).toString('hex')}`;
    if (id !== previous) return id;
  }
}

type RowReader = (sql: string) => Promise<Array<Record<string, unknown>>>;

/** Rows straight from a ClickHouse client, numbers as numbers. */
export const clientRows =
  (ch: ClickHouseClient): RowReader =>
  async (sql) =>
    (
      await ch.query({
        query: sql,
        format: 'JSONEachRow',
        clickhouse_settings: { output_format_json_quote_64bit_integers: 0 },
      })
    ).json<Record<string, unknown>>();

/** Every domain's newest policy row (removed ones included: the API needs them, the host leaves them out). */
export async function currentPolicies(ch: ClickHouseClient): Promise<StsPolicy[]> {
  return hostedPolicies(clientRows(ch));
}

/** Every domain's newest policy row (removed or not), through any row reader. */
export async function hostedPolicies(read: RowReader): Promise<StsPolicy[]> {
  return (await read(policiesSql())).map(policyOf);
}

/** One domain's newest policy row (removed or not), through any row reader (the dashboard's bounded reads). */
export async function currentPolicy(read: RowReader, domain: string): Promise<StsPolicy | undefined> {
  const [row] = await read(policiesSql(domain));
  return row ? policyOf(row) : undefined;
}

// Aliases differ from the columns: ClickHouse would resolve argMax(mode …) AS mode recursively.
const policiesSql = (domain?: string): string =>
  `SELECT domain, argMax(mode, version) AS current_mode, argMax(mx, version) AS current_mx,
          argMax(max_age, version) AS current_max_age, argMax(policy_id, version) AS current_id,
          toString(argMax(changed_at, version)) AS current_changed_at,
          toString(argMax(serve_until, version)) AS current_serve_until,
          argMax(removed, version) AS current_removed
   FROM sts_policies${domain === undefined ? '' : ` WHERE domain = ${quoteString(domain)}`}
   GROUP BY domain ORDER BY domain`;

const policyOf = (r: Record<string, unknown>): StsPolicy => ({
  domain: String(r.domain),
  mode: r.current_mode as StsMode,
  mx: r.current_mx as string[],
  max_age: Number(r.current_max_age),
  policy_id: String(r.current_id),
  changed_at: String(r.current_changed_at),
  serve_until: String(r.current_serve_until),
  removed: Number(r.current_removed),
});

export interface PublishSettings {
  /** The rua of this deployment, e.g. `mailto:tlsrpt@reports.example.com,https://reports.example.com/v1/tlsrpt`. */
  rua: string;
  /** The name the `mta-sts.<domain>` records point at (the policy host). */
  hostTarget: string;
}

/** The DNS records a domain publishes for its hosted policy, as zone-file lines. */
export function recordsToPublish(p: Pick<StsPolicy, 'domain' | 'policy_id'>, s: PublishSettings) {
  const target = s.hostTarget.replace(/\.?$/, '.');
  return {
    mtaSts: `_mta-sts.${p.domain}. IN TXT "v=STSv1; id=${p.policy_id}"`,
    tlsRpt: `_smtp._tls.${p.domain}. IN TXT "v=TLSRPTv1; rua=${s.rua}"`,
    policyHost: /^\d{1,3}(\.\d{1,3}){3}\.$/.test(target)
      ? `mta-sts.${p.domain}. IN A ${target.slice(0, -1)}`
      : `mta-sts.${p.domain}. IN CNAME ${target}`,
  };
}

/** A policy as published: its fields as the text gave them. */
export interface ParsedPolicy {
  mode: string;
  mx: string[];
  maxAge: number;
}

/** RFC 8461 §3.2: `key: value` lines; version first; mode; mx (but for mode none); max_age. */
export function parsePolicy(text: string): ParsedPolicy | string {
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '');
  const pairs = lines.map((l) => /^([A-Za-z0-9_]+):\s*(.*?)\s*$/.exec(l));
  if (pairs.some((p) => !p)) return 'a line is not "key: value"';
  const get = (k: string) => pairs.filter((p) => p![1] === k).map((p) => p![2]!);
  if (pairs[0]![1] !== 'version' || pairs[0]![2] !== 'STSv1') return 'the first line is not "version: STSv1"';
  const mode = get('mode')[0];
  if (!mode || !['enforce', 'testing', 'none'].includes(mode))
    return `mode "${mode ?? ''}" is not enforce, testing or none`;
  const maxAge = Number(get('max_age')[0]);
  if (!Number.isInteger(maxAge) || maxAge < 0 || maxAge > 31_557_600)
    return 'max_age is not a whole number up to 31557600';
  const mx = get('mx');
  if (mode !== 'none' && mx.length === 0) return 'no mx line';
  return { mode, mx: mx.map((m) => m.toLowerCase()), maxAge };
}
