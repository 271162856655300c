// Report forwarding's rules and mail (services/common/forwarding.ts, services/scheduler/forward.ts): own addresses and
// plain http refused with the setting named, destinations by domain pattern, and the RFC 8460 report mail around the
// original bytes, with a report's own text kept out of the mail's structure.
import { describe, expect, it } from 'vitest';
import { destinationsFor, forwardId, forwardRules } from '../../services/common/forwarding.ts';
import { reportMail } from '../../services/scheduler/forward.ts';
import { loadConfig } from '../../services/common/config.ts';
import { fileName, forwardedType } from '../../services/worker/forward-jobs.ts';

const base = {
  FORWARD_ALLOW_PRIVATE: false,
  MTA_STS_RUA: 'mailto:tlsrpt@reports.example,https://reports.example/v1/tlsrpt',
  SMTP_RECIPIENTS: ['tlsrpt@reports.example', 'tls@reports.example'],
  QUEUE_NAME: 'q',
};
const rules = (value: unknown) =>
  forwardRules({ ...base, FORWARD_RULES: typeof value === 'string' ? value : JSON.stringify(value) });

describe('FORWARD_RULES', () => {
  it('none by default; a rule without domains is for every domain', () => {
    expect(rules('')).toEqual([]);
    expect(rules([{ to: ['https://other.example/r'] }])).toEqual([{ domains: ['*'], to: ['https://other.example/r'] }]);
  });

  it('refuses this deployment’s own addresses, plain http, and what is not a rule, naming the setting', () => {
    expect(() => rules([{ to: ['https://Reports.example/v1/tlsrpt/'] }])).toThrow(
      /^FORWARD_RULES: https:\/\/Reports\.example\/v1\/tlsrpt\/ is this deployment's own address/,
    );
    expect(() => rules([{ to: ['mailto:TLS@reports.example'] }])).toThrow(/own address/);
    expect(() => rules([{ to: ['http://other.example/r'] }])).toThrow(/go over https, not http/);
    expect(
      forwardRules({ ...base, FORWARD_ALLOW_PRIVATE: true, FORWARD_RULES: '[{"to":["http://127.0.0.1:9/r"]}]' }),
    ).toHaveLength(1);
    expect(() => rules('{')).toThrow('FORWARD_RULES is not JSON');
    expect(() => rules([{ to: ['ftp://x.example'] }])).toThrow(/^FORWARD_RULES: 0\.to\.0: /);
    expect(() => rules([{ to: ['mailto:a@b.example'], extra: 1 }])).toThrow(/^FORWARD_RULES: /);
  });

  it('is checked when the configuration loads: every service refuses a rule that would loop', () => {
    expect(() =>
      loadConfig({
        MTA_STS_RUA: 'mailto:tlsrpt@reports.example',
        FORWARD_RULES: '[{"to":["mailto:tlsrpt@reports.example"]}]',
      }),
    ).toThrow(/^invalid configuration:\n {2}FORWARD_RULES: mailto:tlsrpt@reports\.example is this deployment's own/);
  });

  it('gives each destination of every matching rule once', () => {
    const r = rules([
      { domains: ['a.example', '*.b.example'], to: ['mailto:x@tool.example', 'https://tool.example/r'] },
      { domains: ['*'], to: ['mailto:x@tool.example'] },
      { domains: ['c.example'], to: ['https://c-only.example/r'] },
    ]);
    expect(destinationsFor(r, ['mx.b.example'])).toEqual(['mailto:x@tool.example', 'https://tool.example/r']);
    expect(destinationsFor(r, ['b.example'])).toEqual(['mailto:x@tool.example']);
    expect(destinationsFor(r, ['C.example'])).toEqual(['mailto:x@tool.example', 'https://c-only.example/r']);
  });
});

describe('the report mail of a forwarded report', () => {
  const job = {
    reportKey: 'k1',
    receiptId: 'r1',
    destination: 'mailto:tlsrpt@tool.example',
    policyDomain: 'a.example',
    organization: 'Evil\r\nBcc: victim@example.com',
    reportId: 'id-1',
    bodyBase64: Buffer.from([0x1f, 0x8b, 8, 0, 1, 2, 3, 250, 251]).toString('base64'),
    contentType: 'application/tlsrpt+gzip',
    filename: 'evil"\r\nname.json.gz',
  };
  const mail = reportMail(job, { from: 'reports <fwd@reports.example>', instance: 'prod-1', now: new Date(0) });

  it('is multipart/report with the original bytes as its named attachment, and stable ids', () => {
    const [head] = mail.split('\r\n\r\n');
    expect(head).toContain('Content-Type: multipart/report; report-type="tlsrpt"');
    expect(head).toContain(`Message-ID: <forward-${forwardId('k1', job.destination)}@reports.example>`);
    expect(head).toContain('tlsrpt-forwarded-by: prod-1');
    expect(head).toContain('TLS-Report-Domain: a.example');
    const attachment = mail.split('Content-Transfer-Encoding: base64\r\n')[1]!.split('\r\n\r\n');
    expect(attachment[0]).toBe('Content-Disposition: attachment; filename="evil_??name.json.gz"');
    expect(Buffer.from(attachment[1]!.split('\r\n--')[0]!.replace(/\r\n/g, ''), 'base64')).toEqual(
      Buffer.from(job.bodyBase64, 'base64'),
    );
  });

  it('keeps the reporter’s text out of the headers’ structure: no header a report can add', () => {
    const [head] = mail.split('\r\n\r\n');
    expect(head).not.toMatch(/^Bcc:/im);
    expect(head).toContain('TLS-Report-Submitter: Evil??Bcc: victim@example.com');
  });
});

describe('what a forwarded report is sent as', () => {
  const gz = Buffer.from([0x1f, 0x8b, 8, 0]).toString('base64');
  const json = Buffer.from('{"organization-name":"x"}').toString('base64');
  const about = { organization: 'Google LLC', reportId: '2026-12-01T00:00:00Z_a.example', domains: ['a.example'] };

  it("RFC 8460's types as received; any other type by the bytes (a zip's entry, a report in a mail's text)", () => {
    expect(forwardedType('application/tlsrpt+gzip; name=x', gz)).toBe('application/tlsrpt+gzip');
    expect(forwardedType('Application/TLSRPT+JSON', json)).toBe('application/tlsrpt+json');
    expect(forwardedType('application/zip', json)).toBe('application/tlsrpt+json');
    expect(forwardedType('application/octet-stream', gz)).toBe('application/tlsrpt+gzip');
    expect(forwardedType('text/plain', json)).toBe('application/tlsrpt+json');
  });

  it('keeps the file name it came with (a zip entry by its own); names one as RFC 8460 does otherwise', () => {
    const smtp = (attachmentName: string) => ({ attachmentName }) as Parameters<typeof fileName>[0]['smtp'];
    expect(fileName({ smtp: smtp('google.com!a.example!1!2!123.json.gz'), bodyBase64: gz }, about)).toBe(
      'google.com!a.example!1!2!123.json.gz',
    );
    expect(fileName({ smtp: smtp('reports.zip/r1.json'), bodyBase64: json }, about)).toBe('r1.json');
    expect(fileName({ bodyBase64: gz }, about)).toBe('Google_LLC!a.example!2026-12-01T00_00_00Z_a.example.json.gz');
    expect(fileName({ bodyBase64: json }, { ...about, domains: [] })).toMatch(/^Google_LLC!unknown!.*\.json$/);
  });
});
