// A report a forger can copy: Google's report-ids are predictable (`<date>T00:00:00Z_<domain>`), so anyone can POST a
// report under the identity of the one Google will mail.
export const googleLikeReport = (domain: string, ok: number, failed: number): string =>
  JSON.stringify({
    'organization-name': 'Google Inc.',
    'date-range': { 'start-datetime': '2026-11-02T00:00:00Z', 'end-datetime': '2026-11-02T23:59:59Z' },
    'contact-info': 'smtp-tls-reporting@google.com',
    'report-id': `2026-11-02T00:00:00Z_${domain}`,
    policies: [
      {
        policy: { 'policy-type': 'sts', 'policy-domain': domain, 'policy-string': ['version: STSv1', 'mode: enforce'] },
        summary: { 'total-successful-session-count': ok, 'total-failure-session-count': failed },
        'failure-details': failed
          ? [{ 'result-type': 'certificate-expired', 'failed-session-count': failed, 'receiving-mx-hostname': 'mx2' }]
          : [],
      },
    ],
  });
