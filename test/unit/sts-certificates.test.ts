// The policy host's certificate states (services/common/sts-certificates.ts, services/mta-sts/certificate-states.ts)
// and what the API makes of them: a hosted policy is active only with a usable certificate of mta-sts.<domain>;
// otherwise pending-certificate, with the _mta-sts record held back.
import { X509Certificate } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import { beforeAll, describe, expect, it } from 'vitest';
import { describePolicy } from '../../services/api/mta-sts.ts';
import { certificateState, certificateView } from '../../services/common/sts-certificates.ts';
import { hostStates } from '../../services/mta-sts/certificate-states.ts';
import type { LoadedCertificate } from '../../services/mta-sts/policy-host.ts';
import { testCa } from '../helpers/dns-and-ca.ts';

const now = new Date();
let good: { cert: string; private: string };
let expired: { cert: string; private: string };
let otherName: { cert: string; private: string };

const loaded = (c: { cert: string; private: string }): LoadedCertificate => ({
  context: createSecureContext({ cert: c.cert, key: c.private }),
  certificate: new X509Certificate(c.cert),
});

beforeAll(async () => {
  const ca = await testCa('States Test CA');
  [good, expired, otherName] = await Promise.all([
    ca.issue('mta-sts.a.example'),
    ca.issue('mta-sts.a.example', { expired: true }),
    ca.issue('mta-sts.elsewhere.example'),
  ]);
}, 60_000);

describe('a certificate file for a policy host', () => {
  it('is issued while valid and naming the host, with its dates and its CA', () => {
    const s = certificateState(good.cert, 'mta-sts.a.example', now);
    expect(s.state).toBe('issued');
    expect(s.issuer).toBe('States Test CA');
    expect(s.valid_until > s.valid_from).toBe(true);
    expect(s.reason).toBe('');
  });

  it('is expired past its end, unusable for another name or when it does not parse', () => {
    const past = certificateState(expired.cert, 'mta-sts.a.example', now);
    expect(past.state).toBe('expired');
    expect(past.reason).toMatch(/^it expired on \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/);
    expect(certificateState(otherName.cert, 'mta-sts.a.example', now)).toMatchObject({
      state: 'unusable',
      reason: 'it does not name mta-sts.a.example (DNS:mta-sts.elsewhere.example)',
    });
    expect(certificateState('not a certificate', 'mta-sts.a.example', now).state).toBe('unusable');
  });
});

describe('the states the policy host records', () => {
  const acme = (failed: Record<string, string> = {}) => ({
    failure: (host: string) =>
      failed[host] ? { reason: failed[host], retryAt: new Date('2026-12-07T10:00:00Z') } : undefined,
  });

  it('pending while an ACME CA is to order one, failed with the CA’s reason, missing without a CA', () => {
    const contexts = new Map([['mta-sts.a.example', loaded(good)]]);
    const domains = ['a.example', 'b.example', 'c.example'];
    const withCa = hostStates(domains, contexts, acme({ 'mta-sts.c.example': 'NXDOMAIN looking up A' }), '/c', now);
    expect(Object.fromEntries([...withCa].map(([h, s]) => [h, s.state]))).toEqual({
      'mta-sts.a.example': 'issued',
      'mta-sts.b.example': 'pending',
      'mta-sts.c.example': 'failed',
    });
    expect(withCa.get('mta-sts.c.example')!.reason).toBe(
      'the ACME order failed: NXDOMAIN looking up A; tried again after 2026-12-07 10:00:00 UTC',
    );
    const withoutCa = hostStates(['b.example'], new Map(), undefined, '/etc/certs', now);
    expect(withoutCa.get('mta-sts.b.example')).toMatchObject({
      state: 'missing',
      reason:
        'no mta-sts.b.example.pem and mta-sts.b.example.key in /etc/certs, and no ACME CA configured (MTA_STS_ACME_DIRECTORY) to order one',
    });
  });

  it('keeps an expired certificate’s dates beside the failed renewal, and tells certificates of domains not hosted yet', () => {
    const contexts = new Map([
      ['mta-sts.a.example', loaded(expired)],
      ['mta-sts.later.example', loaded(good)],
    ]);
    const states = hostStates(['a.example'], contexts, acme({ 'mta-sts.a.example': 'rate limited' }), '/c', now);
    expect(states.get('mta-sts.a.example')).toMatchObject({ state: 'failed', issuer: 'States Test CA' });
    expect(states.get('mta-sts.a.example')!.reason).toMatch(
      /^the ACME order failed: rate limited; tried again after .* \(the certificate held: it expired on .*\)$/,
    );
    // Named for another host, but read: recorded as it is, so hosting later.example later knows it at once.
    expect(states.get('mta-sts.later.example')!.state).toBe('unusable');
  });
});

describe('a hosted policy as the API describes it', () => {
  const policy = {
    domain: 'a.example',
    mode: 'testing' as const,
    mx: ['mx.a.example'],
    max_age: 86400,
    policy_id: '20261207abcd',
    changed_at: '2026-12-07 08:00:00',
    serve_until: '1970-01-01 00:00:00',
    removed: 0,
  };
  const publish = { rua: 'mailto:tlsrpt@reports.example', hostTarget: 'sts.reports.example' };
  const row = (state: 'issued' | 'pending', validUntil: string) => ({
    host: 'mta-sts.a.example',
    state,
    valid_from: '2026-01-01 00:00:00',
    valid_until: validUntil,
    issuer: 'R11',
    reason: state === 'pending' ? 'being ordered from the ACME CA' : '',
    checked_at: '2026-12-07 08:00:00',
    version: 1,
  });

  it('is active with all three records once the certificate is usable', () => {
    const d = describePolicy(
      policy,
      publish,
      certificateView('mta-sts.a.example', row('issued', '2099-01-01 00:00:00'), now),
    );
    expect(d.state).toBe('active');
    expect(Object.keys(d.records)).toEqual(['mtaSts', 'tlsRpt', 'policyHost']);
    expect(d).not.toHaveProperty('recordsNotYet');
  });

  it('is pending-certificate, holding back _mta-sts, while ordered, unknown, or issued but expired since', () => {
    for (const cert of [row('pending', '1970-01-01 00:00:00'), undefined, row('issued', '2020-01-01 00:00:00')]) {
      const d = describePolicy(policy, publish, certificateView('mta-sts.a.example', cert, now));
      expect(d.state).toBe('pending-certificate');
      expect(Object.keys(d.records)).toEqual(['tlsRpt', 'policyHost']);
      expect(d.recordsNotYet).toEqual({ mtaSts: '_mta-sts.a.example. IN TXT "v=STSv1; id=20261207abcd"' });
    }
    const expiredSince = certificateView('mta-sts.a.example', row('issued', '2020-01-01 00:00:00'), now);
    expect(expiredSince).toMatchObject({ state: 'expired', reason: 'it expired on 2020-01-01 00:00:00 UTC' });
    expect(certificateView('mta-sts.a.example', undefined, now).state).toBe('unknown');
  });
});
