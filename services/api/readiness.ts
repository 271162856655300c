// Enforce readiness, one truth for the dashboard's domain page and the API's testing → enforce check (mta-sts.ts):
// over the last MTA_STS_READINESS_DAYS report days up to today, the sessions that failed under the domain's sts
// policy in testing mode. Those failures block the switch; DANE failures (a report's tlsa results, also listed under
// its sts policy by some senders) are about the TLSA records, not the MTA-STS policy, and are listed apart.
import { enforceReadiness, type Readiness } from './dashboard-queries.ts';
import type { Db } from './queries.ts';

/** Result types about DANE (RFC 8460 §4.3): a TLSA record or its DNSSEC, not the MTA-STS policy. */
export const DANE_RESULTS: readonly string[] = ['tlsa-invalid', 'dane-required', 'dnssec-invalid'];

export type Blocker = Readiness['wouldFail'][number];

export interface ReadinessVerdict {
  from: string;
  to: string;
  days: number;
  /** Reports that saw the policy in testing mode, and their sessions. */
  testingReports: number;
  successful: number;
  failed: number;
  /** Failures under the testing policy that would keep senders from delivering to that MX under enforce. */
  blocking: Blocker[];
  /** DANE failures seen under it: not a reason to hold back an MTA-STS mode change. */
  dane: Blocker[];
  /** Seen in testing mode, and nothing blocking. */
  safe: boolean;
}

export async function readinessVerdict(db: Db, domain: string, days: number, now: Date): Promise<ReadinessVerdict> {
  const to = now.toISOString().slice(0, 10);
  const from = new Date(now.getTime() - (days - 1) * 86400_000).toISOString().slice(0, 10);
  const r = await enforceReadiness(db, domain, { from, to });
  const blocking = r.wouldFail.filter((w) => !DANE_RESULTS.includes(w.result_type));
  return {
    from,
    to,
    days,
    testingReports: r.testingReports,
    successful: r.successful,
    failed: r.failed,
    blocking,
    dane: r.wouldFail.filter((w) => DANE_RESULTS.includes(w.result_type)),
    safe: r.testingReports > 0 && blocking.length === 0,
  };
}
