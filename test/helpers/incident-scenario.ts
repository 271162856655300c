// A history of three domains with real problems, for the incident and notification tests: an expired certificate
// on one MX that stops and comes back (Google, and Microsoft with sts+tlsa twins), a week of policy fetch errors, a
// reporter that stops, a new MX without STARTTLS. Day n is 2026-10-n.
import type { ClickHouseClient } from '../../services/common/clickhouse.ts';
import { processReportJob } from '../../services/worker/process-job.ts';
import { testConfig, testDatabase, testWriter } from './env.ts';
export const day = (n: number): string => `2026-10-${String(n).padStart(2, '0')}`;
export const TO = day(20);
export const NOW = new Date('2026-10-21T08:00:00Z');
export const options = { resolveDays: 3, stoppedAfterDays: 3, regularShare: 0.6, windowDays: 60 };

export interface Failure {
  rt: string;
  mx?: string;
  ip?: string;
  n: number;
}
export interface Policy {
  type: 'sts' | 'tlsa';
  mode: string;
  ok: number;
  failures: Failure[];
}

/** A report of `org` about `domain` for day n of the scenario (or a `YYYY-MM-DD` day). */
export function report(org: string, domain: string, n: number | string, policies: Policy[]): string {
  const d = typeof n === 'string' ? n : day(n);
  return JSON.stringify({
    'organization-name': org,
    'date-range': { 'start-datetime': `${d}T00:00:00Z`, 'end-datetime': `${d}T23:59:59Z` },
    'contact-info': 'tlsrpt@example.net',
    'report-id': `${org}-${domain}-${d}`,
    policies: policies.map((p) => ({
      policy:
        p.type === 'sts'
          ? {
              'policy-type': 'sts',
              'policy-domain': domain,
              'policy-string': ['version: STSv1', `mode: ${p.mode}`, `mx: *.${domain}`, 'max_age: 86400'],
            }
          : { 'policy-type': 'tlsa', 'policy-domain': domain, 'policy-string': ['3 1 1 AAAA'] },
      summary: {
        'total-successful-session-count': p.ok,
        'total-failure-session-count': p.failures.reduce((a, f) => a + f.n, 0),
      },
      'failure-details': p.failures.map((f) => ({
        'result-type': f.rt,
        ...(f.mx ? { 'receiving-mx-hostname': f.mx } : {}),
        ...(f.ip ? { 'sending-mta-ip': f.ip } : {}),
        'failed-session-count': f.n,
      })),
    })),
  });
}

const within = (n: number, from: number, to: number): boolean => n >= from && n <= to;

/** Twenty days of three domains. */
export function history(): string[] {
  const out: string[] = [];
  for (let n = 1; n <= 20; n++) {
    const expired = within(n, 5, 9) || within(n, 15, 16);
    out.push(
      report('Google Inc.', 'acme.example', n, [
        {
          type: 'sts',
          mode: 'enforce',
          ok: 900,
          failures: expired ? [{ rt: 'certificate-expired', mx: 'MX2.acme.example.', ip: '209.85.1.1', n: 100 }] : [],
        },
      ]),
    );
    // Microsoft lists the same sessions under an sts and a tlsa policy.
    const twin = (type: 'sts' | 'tlsa'): Policy => ({
      type,
      mode: 'enforce',
      ok: 500,
      failures: within(n, 6, 9) ? [{ rt: 'certificate-expired', mx: 'mx2.acme.example', n: 50 }] : [],
    });
    out.push(report('Microsoft Corporation', 'acme.example', n, [twin('sts'), twin('tlsa')]));
    out.push(
      report('Google Inc.', 'beta.example', n, [
        {
          type: 'sts',
          mode: 'testing',
          ok: 300,
          failures: within(n, 3, 8) ? [{ rt: 'sts-policy-fetch-error', n: 40 }] : [],
        },
      ]),
    );
    if (n <= 12)
      out.push(report('Mail.Ru', 'beta.example', n, [{ type: 'sts', mode: 'testing', ok: 100, failures: [] }]));
    out.push(
      report('Google Inc.', 'gamma.example', n, [
        {
          type: 'sts',
          mode: 'enforce',
          ok: 200,
          failures: n >= 17 ? [{ rt: 'starttls-not-supported', mx: 'mx3.gamma.example', ip: '209.85.1.2', n: 30 }] : [],
        },
      ]),
    );
  }
  return out;
}

/** A report sent days late: Comcast saw the expired certificate on day 10 too. */
export const LATE = report('Comcast', 'acme.example', 10, [
  { type: 'sts', mode: 'enforce', ok: 10, failures: [{ rt: 'certificate-expired', mx: 'mx2.acme.example', n: 20 }] },
]);

/** A seeded random number generator (mulberry32), so a failure names the seed that failed. */
export function seeded(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A seeded shuffle, so a failure names the order that failed. */
export function shuffled<T>(list: T[], seed: number): T[] {
  const out = [...list];
  const random = seeded(seed);
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

export interface Store {
  config: ReturnType<typeof testConfig>;
  ch: ClickHouseClient;
  write: (bodies: string[], atOnce?: boolean) => Promise<void>;
  close: () => Promise<void>;
}

/** A database of its own (migrated up to `until`, when given), written through the worker's path. */
export async function openStore(config = testConfig(), until?: string): Promise<Store> {
  const ch = await testDatabase(config, until);
  const writer = testWriter(config, ch, { maxRows: 100_000, maxWaitMs: 5 });
  let receipt = 0;
  const rowsOf = (body: string) => {
    const id = `inc-${++receipt}`;
    const job = {
      v: 1,
      receiptId: id,
      receivedAt: NOW.toISOString(),
      channel: 'https',
      bodyBase64: Buffer.from(body).toString('base64'),
    };
    return processReportJob(job, id, { maxDecompressedBytes: 1 << 24 }).rows;
  };
  return {
    config,
    ch,
    write: async (bodies, atOnce = false) => {
      if (atOnce) await Promise.all(bodies.map((b) => writer.write(rowsOf(b))));
      else for (const b of bodies) await writer.write(rowsOf(b));
    },
    close: async () => {
      await writer.close();
      await ch.command({ query: `DROP DATABASE IF EXISTS ${config.CLICKHOUSE_DATABASE}` });
      await ch.close();
    },
  };
}
