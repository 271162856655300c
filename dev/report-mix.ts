// Synthetic reports shaped like the real corpus: 1–20 policies, 0–50 failure details each, real senders' key
// order and value forms. Seeded, so every run measures the same bytes.

import { gzipSync } from 'node:zlib';

export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    // mulberry32
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const RESULT_TYPES = [
  'certificate-expired',
  'starttls-not-supported',
  'validation-failure',
  'certificate-host-mismatch',
  'sts-policy-fetch-error',
  'certificate-not-trusted',
];
const ORGS = ['Google Inc.', 'Microsoft Corporation', 'Mail.ru', 'Example Mailer'];

export interface MixOptions {
  maxPolicies: number;
  maxDetails: number;
}

/** One report. `i` makes it unique (its report-id); `day` is an offset in days from 2025-01-01. */
export function makeReport(
  random: () => number,
  i: number,
  opts: MixOptions = { maxPolicies: 20, maxDetails: 50 },
): Record<string, unknown> {
  const pick = <T>(xs: T[]): T => xs[Math.floor(random() * xs.length)]!;
  const day = new Date(Date.UTC(2025, 0, 1) + Math.floor(random() * 60) * 86400_000).toISOString().slice(0, 10);
  // Most reports are small: policies and details skew low, as in the corpus.
  const policyCount = 1 + Math.floor(random() ** 3 * opts.maxPolicies);
  const org = pick(ORGS);
  return {
    'organization-name': org,
    'date-range': { 'start-datetime': `${day}T00:00:00Z`, 'end-datetime': `${day}T23:59:59Z` },
    'contact-info': 'smtp-tls-reporting@example.net',
    'report-id': `${day}T00:00:00Z_bench-${i}`,
    policies: Array.from({ length: policyCount }, (_, p) => {
      const domain = `domain${Math.floor(random() * 500)}.example`;
      const detailCount = random() < 0.6 ? 0 : 1 + Math.floor(random() ** 2 * opts.maxDetails);
      const details = Array.from({ length: detailCount }, () => ({
        'result-type': pick(RESULT_TYPES),
        'sending-mta-ip': `198.51.${Math.floor(random() * 255)}.${Math.floor(random() * 255)}`,
        'receiving-ip': `203.0.113.${Math.floor(random() * 255)}`,
        'receiving-mx-hostname': `mx${p}.${domain}`,
        'failed-session-count': 1 + Math.floor(random() * 20),
      }));
      const failed = details.reduce((a, d) => a + d['failed-session-count'], 0);
      return {
        policy: {
          'policy-type': 'sts',
          'policy-string': [
            'version: STSv1',
            random() < 0.5 ? 'mode: enforce' : 'mode: testing',
            `mx: *.${domain}`,
            'max_age: 604800',
          ],
          'policy-domain': domain,
          'mx-host': [`*.${domain}`],
        },
        summary: {
          'total-successful-session-count': Math.floor(random() * 5000),
          'total-failure-session-count': failed,
        },
        ...(details.length > 0 ? { 'failure-details': details } : {}),
      };
    }),
  };
}

type WithSummaries = { policies: Array<{ summary: { 'total-successful-session-count': number } }> };
const successfulSessions = (report: WithSummaries): number =>
  report.policies.reduce((a, p) => a + p.summary['total-successful-session-count'], 0);

/** One gzipped report of the benchmark's mix (0.2% are large: up to 200 policies of 400 details each). */
export function mixReport(
  random: () => number,
  i: number,
  mix?: MixOptions,
): { body: Buffer; successfulSessions: number } {
  const big = random() < 0.002;
  const opts = mix ?? (big ? { maxPolicies: 200, maxDetails: 400 } : { maxPolicies: 20, maxDetails: 50 });
  const report = makeReport(random, i, opts) as unknown as WithSummaries;
  return { body: gzipSync(JSON.stringify(report)), successfulSessions: successfulSessions(report) };
}

/** A report of about `bytes` of JSON: many policies of the mix's shape (the benchmark's "10 MB reports"). */
export function largeReport(
  random: () => number,
  i: number,
  bytes: number,
): { body: Buffer; json: number; successfulSessions: number } {
  const report = makeReport(random, i, { maxPolicies: 1, maxDetails: 50 }) as { policies: unknown[] };
  let size = JSON.stringify(report).length;
  while (size < bytes)
    for (const p of makeReport(random, i, { maxPolicies: 20, maxDetails: 50 }).policies as unknown[]) {
      report.policies.push(p);
      size += JSON.stringify(p).length + 1;
    }
  return {
    body: gzipSync(JSON.stringify(report)),
    json: size,
    successfulSessions: successfulSessions(report as unknown as WithSummaries),
  };
}
