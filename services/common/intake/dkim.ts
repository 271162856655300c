// DKIM for report mail (RFC 8460 §3): a report sent by mail must carry a valid signature by the reporting domain,
// without an `l=` tag; the key should allow service type `tlsrpt`. Verified with mailauth, whose DNS resolver is
// injectable (tests serve the keys they generate).
import { promises as dns } from 'node:dns';
import { dkimVerify, type DNSResolver } from 'mailauth';
import type { DkimVerdict } from '../../../schemas/job.ts';
import { headerBytes } from './extract.ts';

export type { DNSResolver };

/** Same domain, or one a parent of the other (organizational alignment without a public-suffix list). */
export function domainsAligned(a: string, b: string): boolean {
  const x = a.toLowerCase().replace(/\.$/, '');
  const y = b.toLowerCase().replace(/\.$/, '');
  if (!x || !y) return false;
  return x === y || x.endsWith(`.${y}`) || y.endsWith(`.${x}`);
}

/** The `s=` tag of a DKIM key record: absent or `*` allows every service. */
export function keyAllowsTlsrpt(record: string): boolean {
  const tag = record
    .split(';')
    .map((t) => t.trim())
    .find((t) => /^s\s*=/.test(t));
  if (!tag) return true;
  const services = tag
    .replace(/^s\s*=/, '')
    .split(':')
    .map((s) => s.trim().toLowerCase());
  return services.includes('*') || services.includes('tlsrpt');
}

interface SignatureResult {
  signingDomain?: string;
  selector?: string;
  status: { result: string; comment?: string };
  canonBodyLengthLimited?: boolean;
  rr?: string;
}

/** Whether the message's header section holds a DKIM-Signature field (else there is nothing to verify). */
export function hasDkimSignature(raw: Buffer): boolean {
  return /(^|\n)dkim-signature[ \t]*:/i.test(raw.subarray(0, headerBytes(raw)).toString('latin1'));
}

const UNSIGNED: DkimVerdict = {
  result: 'none',
  signingDomain: '',
  selector: '',
  submitterAligned: false,
  keyAllowsTlsrpt: false,
  lengthLimited: false,
  comment: 'message not signed',
  signatures: 0,
};

export interface CacheOptions {
  /** How long an answer is kept: node's resolver gives no TTL for TXT records, so one bound for all. */
  ttlMs: number;
  /** How long "no such record" is kept; failures (SERVFAIL, timeouts) are never kept. */
  negativeTtlMs: number;
  /** Names kept at most (the oldest go first). */
  maxNames: number;
}

const NEGATIVE = new Set(['ENOTFOUND', 'ENODATA', 'NXDOMAIN']);

/**
 * A resolver that keeps key records for a while and asks once for names wanted at the same time: a reporter's
 * daily batch of mails is signed with one key, which was one DNS query per mail.
 */
export function cachingResolver(
  resolve: DNSResolver,
  o: CacheOptions = { ttlMs: 300_000, negativeTtlMs: 60_000, maxNames: 10_000 },
  now: () => number = Date.now,
): DNSResolver {
  const kept = new Map<string, { until: number; answer: Promise<string[][] | string[]> }>();
  return (name, rrtype) => {
    const key = `${rrtype} ${name.toLowerCase()}`;
    const hit = kept.get(key);
    if (hit && hit.until > now()) return hit.answer;
    kept.delete(key);
    const answer = resolve(name, rrtype);
    const entry = { until: Number.POSITIVE_INFINITY, answer }; // in flight: shared until it settles
    kept.set(key, entry);
    if (kept.size > o.maxNames) kept.delete(kept.keys().next().value!);
    answer.then(
      () => void (entry.until = now() + o.ttlMs),
      (err: unknown) => {
        const code = (err as { code?: string }).code ?? '';
        if (NEGATIVE.has(code)) entry.until = now() + o.negativeTtlMs;
        else if (kept.get(key) === entry) kept.delete(key);
      },
    );
    return answer;
  };
}

const systemResolver = cachingResolver((name, rrtype) => dns.resolve(name, rrtype) as Promise<string[][]>);

export async function verifyDkim(
  raw: Buffer,
  submitterDomain: string,
  resolver: DNSResolver = systemResolver,
): Promise<DkimVerdict> {
  // mailauth parses the whole message even when no signature is there: most of its cost for unsigned mail.
  if (!hasDkimSignature(raw)) return { ...UNSIGNED };
  const res = await dkimVerify(raw, { resolver });
  const signatures = (res.results as SignatureResult[]).filter((r) => r.signingDomain);
  if (signatures.length === 0) return { ...UNSIGNED };
  const valid = (s: SignatureResult): boolean => s.status.result === 'pass' && !s.canonBodyLengthLimited;
  const aligned = (s: SignatureResult): boolean => domainsAligned(s.signingDomain ?? '', submitterDomain);
  // The signature the verdict rests on: a valid one by the submitter, else any valid one, else the first.
  const best = signatures.find((s) => valid(s) && aligned(s)) ?? signatures.find(valid) ?? signatures[0]!;
  let result: DkimVerdict['result'];
  let comment = best.status.comment ?? '';
  if (valid(best)) result = 'pass';
  else if (best.status.result === 'temperror') result = 'temperror';
  else {
    result = 'fail';
    if (best.status.result === 'pass' && best.canonBodyLengthLimited)
      comment = 'signature with l= does not count (RFC 8460 §3)';
    else comment ||= best.status.result;
  }
  return {
    result,
    signingDomain: best.signingDomain ?? '',
    selector: best.selector ?? '',
    submitterAligned: aligned(best),
    keyAllowsTlsrpt: best.rr ? keyAllowsTlsrpt(best.rr) : false,
    lengthLimited: Boolean(best.canonBodyLengthLimited),
    comment: comment.slice(0, 500),
    signatures: signatures.length,
  };
}
