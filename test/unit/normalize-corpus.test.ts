// Every JSON report of the real corpus through decode + validation + normalization, each checked against the
// source file as read by plain JSON.parse: every policy's counts, every failure detail's fields.
import { isIP } from 'node:net';
import { describe, expect, it } from 'vitest';
import { decodeReport } from '../../services/worker/decode.ts';
import { normalizeReport, type NormalizedReport } from '../../services/worker/normalize.ts';
import { corpusReports, sourcePolicies } from '../helpers/corpus.ts';

/** An address as 8 full IPv6 groups (or IPv4 as it is): written here, independent of the code under test. */
function expandIp(ip: string): string {
  if (isIP(ip) === 4) return ip;
  const [head = '', tail = ''] = ip.toLowerCase().split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = ip.includes('::') ? [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t] : h;
  return groups.map((g) => g.padStart(4, '0')).join(':');
}

const MAX = 50 * 1024 * 1024;
const reports = corpusReports();
const byName = (part: string): NormalizedReport => {
  const r = reports.find((x) => x.file.includes(part));
  if (!r) throw new Error(`no corpus file ${part}`);
  return normalizeReport(decodeReport(r.body, MAX).json);
};

describe('the real corpus', () => {
  it('has the JSON reports we expect to test', () => {
    expect(reports.length).toBeGreaterThanOrEqual(24);
  });

  for (const r of reports) {
    it(`stores ${r.file} with every count and detail field intact`, () => {
      const decoded = decodeReport(r.body, MAX);
      expect(decoded.text).toBe(r.json);
      const report = normalizeReport(decoded.json);
      const source = JSON.parse(r.json) as Record<string, unknown>;
      expect(report.organization).toBe(String(source['organization-name']).trim());
      expect(report.reportId).toBe(String(source['report-id']).trim());
      expect(report.reportKey).toMatch(/^[0-9a-f]{32}$/);

      const policies = sourcePolicies(r.json);
      expect(report.policies).toHaveLength(policies.length);
      policies.forEach((src, i) => {
        const p = report.policies[i]!;
        expect(p.successfulSessions).toBe(src.successful ?? 0);
        expect(p.failedSessions).toBe(src.failed ?? 0);
        if (src.domain !== undefined) expect(p.policyDomain).toBe(src.domain.toLowerCase().replace(/\.$/, ''));
        else expect(p.flags).toContain('missing-policy-domain');
        expect(p.details).toHaveLength(src.details.length);
        src.details.forEach((d, j) => {
          const n = p.details[j]!;
          expect(n.resultType).toBe(d['result-type']);
          expect(n.failedSessionCount).toBe(d['failed-session-count']);
          expect(n.receivingMxHostname).toBe((d['receiving-mx-hostname'] as string | undefined)?.toLowerCase() ?? null);
          expect(n.receivingMxHelo).toBe(d['receiving-mx-helo'] ?? null);
          expect(n.additionalInformation).toBe(d['additional-information'] ?? null);
          expect(n.failureReasonCode).toBe(d['failure-reason-code'] ?? null);
          for (const [key, value] of [
            ['sending-mta-ip', n.sendingMtaIp],
            ['receiving-ip', n.receivingIp],
          ] as const) {
            const raw = d[key] as string | undefined;
            if (raw === undefined) expect(value).toBeNull();
            else {
              // Same address, possibly other text: compare the expanded forms.
              expect(isIP(value!)).toBe(isIP(raw));
              expect(expandIp(value!)).toBe(expandIp(raw));
            }
          }
        });
      });
    });
  }
});

describe('real-world quirks are accepted and flagged', () => {
  it('Microsoft: date-times without a zone are UTC', () => {
    const r = byName('microsoft-2.json');
    expect(r.start.toISOString()).toBe('2024-03-26T00:00:00.000Z');
    expect(r.end.toISOString()).toBe('2024-03-26T23:59:59.000Z');
    expect(r.flags).toContain('datetime-without-zone');
    expect(r.startRaw).toBe('2024-03-26T00:00:00');
  });

  it('Microsoft: sts and tlsa entries for the same sessions, TLSA records unpacked from a JSON string', () => {
    const r = byName('dmarc-report-viewer__testdata_smtp-tls-reports_microsoft.json');
    expect(r.policies.map((p) => p.policyType)).toEqual(['sts', 'tlsa']);
    const tlsa = r.policies[1]!;
    expect(tlsa.tlsaRecords).toEqual([
      '3 1 1 6007eee553e85d8df007a845d19ec343283d4e416e9a33f9ef3040c8b7c285bc',
      '3 1 1 837c773d54c2e2bd71871a3fc352be8214d5646cbae5e3091401a7274717998b',
    ]);
    expect(tlsa.flags).toEqual(expect.arrayContaining(['tlsa-json-encoded', 'overlapping-policy-entries']));
    expect(tlsa.policyStrings).toHaveLength(1); // the raw string is kept as it came
  });

  it('STS policy strings are parsed into mode, max_age and mx patterns', () => {
    const r = byName('cry-inc__dmarc-report-viewer__testdata_smtp-tls-reports_google.json');
    const p = r.policies[0]!;
    expect(p).toMatchObject({ stsVersion: 'STSv1', stsMode: 'enforce', stsMaxAge: 2592000, stsMx: ['*.foo-bar.io'] });
    expect(p.mxHosts).toEqual(['*.foo-bar.io']);
  });

  it('mx-host as a string (RFC example) and with a left-in "mx: " prefix', () => {
    const rfc = byName('parsedmarc__samples_smtp_tls_rfc8460.json');
    expect(rfc.policies[0]!.mxHosts).toEqual(['*.mail.company-y.example']);
    expect(rfc.policies[0]!.flags).toContain('mx-host-not-a-list');
    const stalwart = byName('no-contact.json');
    expect(stalwart.policies[0]!.mxHosts).toEqual(['mx.server.com']);
    expect(stalwart.policies[0]!.flags).toContain('mx-host-prefix');
    expect(stalwart.contactInfo).toBeNull();
    expect(stalwart.flags).toContain('null-contact-info');
  });

  it('IPv6 addresses in canonical form', () => {
    const rfc = byName('kravietz__tlsrpt-rs__tlsrpt_fixtures_rfc8460.json');
    expect(rfc.policies[0]!.details[0]!.sendingMtaIp).toBe('2001:db8:abcd:12::1');
  });

  it('Mail.ru: failure details that do not add up to the summary are kept, flagged', () => {
    const r = byName('parsedmarc__samples_smtp_tls_mail.ru.json');
    expect(r.policies[0]!.failedSessions).toBe(1);
    expect(r.policies[0]!.details.map((d) => d.failedSessionCount)).toEqual([1, 1]);
    expect(r.flags).toContain('failure-details-sum-mismatch');
  });

  it('Stalwart rpt03: missing domain, missing failure count and an unknown policy type are kept, flagged', () => {
    const r = byName('rpt03.json');
    expect(r.policies.map((p) => p.policyType)).toEqual(['no-policy-found', 'invalid-policy-type']);
    expect(r.policies.map((p) => p.successfulSessions)).toEqual([1, 1]);
    expect(r.flags).toEqual(
      expect.arrayContaining(['missing-policy-domain', 'missing-failure-count', 'unknown-policy-type']),
    );
  });

  it('a seven-day range is kept and flagged', () => {
    const r = byName('rpt02.json');
    expect(r.flags).toContain('multi-day-range');
    expect(r.policies[0]!.details[0]!.resultType).toBe('certificate-host-mismatch');
  });

  it('the same report in plain and gzip form gets the same identity', () => {
    const plain = byName('marcbradshaw__mail-tls-rpt__t_data_report.json');
    const gz = byName('report.json.gz.b64');
    expect(gz.reportKey).toBe(plain.reportKey);
    expect(gz.policies[0]!.successfulSessions).toBe(343);
  });
});
