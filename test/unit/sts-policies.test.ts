// Hosted MTA-STS policies: the policy file as RFC 8461 writes it, ids, the records to publish, what a policy may say.
import { describe, expect, it } from 'vitest';
import {
  newPolicyId,
  policyInput,
  policyText,
  recordsToPublish,
  stsDomain,
} from '../../services/common/sts-policies.ts';

describe('hosted MTA-STS policies', () => {
  it('writes the policy file with CRLF line ends, one mx line per pattern', () => {
    expect(policyText({ mode: 'enforce', mx: ['mx1.example.com', '*.example.net'], max_age: 604800 })).toBe(
      'version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n',
    );
  });
  it('makes ids of 1–32 letters and digits, never the previous one', () => {
    const now = new Date('2026-11-30T10:00:00Z');
    const a = newPolicyId(now);
    expect(a).toMatch(/^20261130100000[0-9a-f]{8}$/);
    for (let i = 0; i < 50; i++) expect(newPolicyId(now, a)).not.toBe(a);
  });
  it('says which records to publish, a CNAME or an A record for the policy host', () => {
    const p = { domain: 'example.com', policy_id: 'abc123' };
    expect(recordsToPublish(p, { rua: 'mailto:r@x.example', hostTarget: 'sts.x.example' })).toEqual({
      mtaSts: '_mta-sts.example.com. IN TXT "v=STSv1; id=abc123"',
      tlsRpt: '_smtp._tls.example.com. IN TXT "v=TLSRPTv1; rua=mailto:r@x.example"',
      policyHost: 'mta-sts.example.com. IN CNAME sts.x.example.',
    });
    expect(recordsToPublish(p, { rua: 'mailto:r@x.example', hostTarget: '192.0.2.10' }).policyHost).toBe(
      'mta-sts.example.com. IN A 192.0.2.10',
    );
  });
  it('takes only what a policy may say', () => {
    const ok = { mode: 'testing', mx: ['MX1.Example.com.', '*.example.net'], maxAge: 86400 };
    expect(policyInput.parse(ok).mx).toEqual(['mx1.example.com', '*.example.net']);
    for (const bad of [
      { ...ok, mode: 'strict' },
      { ...ok, mx: ['*.'] },
      { ...ok, mx: ['mx.example.com\r\nmode: none'] },
      { ...ok, mx: ['a.*.example.com'] },
      { ...ok, maxAge: 31_557_601 },
      { ...ok, maxAge: 1.5e5 + 0.5 },
    ])
      expect(policyInput.safeParse(bad).success, JSON.stringify(bad)).toBe(false);
    expect(stsDomain.safeParse('example.com\r\n').success).toBe(true);
    expect(stsDomain.safeParse('exa mple.com').success).toBe(false);
    expect(stsDomain.safeParse('localhost').success).toBe(false);
  });
});
