// DKIM for report mail (RFC 8460 §3): a report sent by mail must carry a valid signature by the reporting domain,
// without an `l=` tag; the key should allow service type `tlsrpt`. Verified with mailauth, whose DNS resolver is
// injectable (tests serve the keys they generate).
import { dkimVerify, type DNSResolver } from 'mailauth';
import type { DkimVerdict } from '../../../schemas/job.ts';

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

export async function verifyDkim(raw: Buffer, submitterDomain: string, resolver?: DNSResolver): Promise<DkimVerdict> {
  const res = await dkimVerify(raw, resolver ? { resolver } : {});
  const signatures = (res.results as SignatureResult[]).filter((r) => r.signingDomain);
  if (signatures.length === 0) {
    return {
      result: 'none',
      signingDomain: '',
      selector: '',
      submitterAligned: false,
      keyAllowsTlsrpt: false,
      lengthLimited: false,
      comment: 'message not signed',
      signatures: 0,
    };
  }
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
