// Crafted bad and odd reports: what is meaningful is kept and flagged; what is not gets a precise reason.
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { ReportRejectedError } from '../../services/common/errors.ts';
import { decodeReport } from '../../services/worker/decode.ts';
import { normalizeReport } from '../../services/worker/normalize.ts';
import { processReportJob } from '../../services/worker/process-job.ts';

const base = () => ({
  'organization-name': 'Example Sender',
  'date-range': { 'start-datetime': '2025-01-01T00:00:00Z', 'end-datetime': '2025-01-01T23:59:59Z' },
  'contact-info': 'mailto:tls@example.net',
  'report-id': 'r-1',
  policies: [
    {
      policy: {
        'policy-type': 'sts',
        'policy-domain': 'Example.COM.',
        'policy-string': ['version: STSv1', 'mode: testing', 'mx: mx.example.com', 'max_age: 86400'],
      },
      summary: { 'total-successful-session-count': 10, 'total-failure-session-count': 2 },
      'failure-details': [
        {
          'result-type': 'certificate-expired',
          'sending-mta-ip': '192.0.2.1',
          'receiving-mx-hostname': 'mx.example.com',
          'failed-session-count': 2,
        },
      ],
    },
  ],
});

function rejectReason(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof ReportRejectedError) return err.reason;
    throw err;
  }
  throw new Error('was not rejected');
}

const MAX = 1024 * 1024;
const normalizeJson = (v: unknown) => normalizeReport(decodeReport(Buffer.from(JSON.stringify(v)), MAX).json);

describe('rejected, with a machine-readable reason', () => {
  const cases: Array<[string, () => unknown, string]> = [
    ['empty body', () => decodeReport(Buffer.alloc(0), MAX), 'empty-body'],
    ['truncated gzip', () => decodeReport(gzipSync(JSON.stringify(base())).subarray(0, 40), MAX), 'bad-gzip'],
    ['gzip of garbage', () => decodeReport(Buffer.from([0x1f, 0x8b, 1, 2, 3, 4, 5, 6, 7]), MAX), 'bad-gzip'],
    ['gzip bomb', () => decodeReport(gzipSync(Buffer.alloc(4 * MAX)), MAX), 'decompressed-too-large'],
    ['gzip of non-JSON', () => decodeReport(gzipSync('hello, world'), MAX), 'not-json'],
    ['zip archive', () => decodeReport(Buffer.from('PK\x03\x04rest'), MAX), 'unsupported-archive'],
    ['JSON array', () => normalizeJson([base()]), 'not-an-object'],
    ['JSON string', () => normalizeJson('report'), 'not-an-object'],
    ['no organization', () => normalizeJson({ ...base(), 'organization-name': undefined }), 'missing-organization'],
    ['blank organization', () => normalizeJson({ ...base(), 'organization-name': '  ' }), 'missing-organization'],
    ['no report-id', () => normalizeJson({ ...base(), 'report-id': undefined }), 'missing-report-id'],
    ['no date-range', () => normalizeJson({ ...base(), 'date-range': undefined }), 'missing-date-range'],
    [
      'date not a date',
      () =>
        normalizeJson({
          ...base(),
          'date-range': { 'start-datetime': 'yesterday', 'end-datetime': '2025-01-01T23:59:59Z' },
        }),
      'invalid-date-range',
    ],
    [
      '31 February',
      () =>
        normalizeJson({
          ...base(),
          'date-range': { 'start-datetime': '2025-02-31T00:00:00Z', 'end-datetime': '2025-03-01T00:00:00Z' },
        }),
      'invalid-date-range',
    ],
    ['no policies', () => normalizeJson({ ...base(), policies: undefined }), 'missing-policies'],
    // Hostile shapes (issue 12): each was stored, crashed a reader or multiplied into rows before.
    [
      'a 100,000-deep array',
      () => normalizeReport(JSON.parse('['.repeat(100_000) + ']'.repeat(100_000))),
      'not-an-object',
    ],
    [
      'a 100,000-deep array under __proto__',
      () =>
        normalizeReport(
          decodeReport(
            Buffer.from(
              JSON.stringify(base()).replace(/}$/, `,"__proto__":${'['.repeat(100_000)}${']'.repeat(100_000)}}`),
            ),
            4 * MAX,
          ).json,
        ),
      'json-too-deep',
    ],
    [
      'a 100-deep object under an unknown key of a failure detail',
      () => {
        const r = base() as unknown as { policies: Array<{ 'failure-details': Array<Record<string, unknown>> }> };
        r.policies[0]!['failure-details'][0]!.x = JSON.parse('{"a":'.repeat(100) + '1' + '}'.repeat(100));
        return normalizeReport(r);
      },
      'json-too-deep',
    ],
    [
      'a deep array with a lone surrogate (the reviver recurses)',
      () => decodeReport(Buffer.from(`{"x":"\\uD800","y":${'['.repeat(100_000)}${']'.repeat(100_000)}}`), 4 * MAX),
      'json-too-deep',
    ],
    [
      'a 2,000-character organization',
      () => normalizeJson({ ...base(), 'organization-name': 'o'.repeat(2000) }),
      'field-too-long',
    ],
    [
      'a 2,000-character report-id',
      () => normalizeJson({ ...base(), 'report-id': 'r'.repeat(2000) }),
      'field-too-long',
    ],
    [
      'a 2,000-character policy domain',
      () => {
        const r = base();
        r.policies[0]!.policy['policy-domain'] = `${'d'.repeat(2000)}.example`;
        return normalizeJson(r);
      },
      'field-too-long',
    ],
    [
      'a date after 2105 (ClickHouse 18.16 wrote it as 0000-00-00)',
      () =>
        normalizeJson({
          ...base(),
          'date-range': { 'start-datetime': '2106-01-01T00:00:00Z', 'end-datetime': '2106-01-01T23:59:59Z' },
        }),
      'invalid-date-range',
    ],
    [
      '1970-01-01 (shown as the zero date)',
      () =>
        normalizeJson({
          ...base(),
          'date-range': { 'start-datetime': '1970-01-01T00:00:00Z', 'end-datetime': '1970-01-01T23:59:59Z' },
        }),
      'invalid-date-range',
    ],
    [
      '10,001 policies',
      () => normalizeReport({ ...base(), policies: Array.from({ length: 10_001 }, () => base().policies[0]) }),
      'too-many-policies',
    ],
    [
      '100,001 failure details',
      () => {
        const r = base();
        const d = r.policies[0]!['failure-details'][0]!;
        r.policies[0]!['failure-details'] = Array.from({ length: 100_001 }, () => d);
        return normalizeReport(r);
      },
      'too-many-failure-details',
    ],
    ['policies a string', () => normalizeJson({ ...base(), policies: 'none' }), 'missing-policies'],
  ];
  for (const [name, fn, reason] of cases) it(name, () => expect(rejectReason(fn)).toBe(reason));

  const countCase = (count: unknown) => {
    const r = base();
    (r.policies[0]!.summary as Record<string, unknown>)['total-successful-session-count'] = count;
    return () => normalizeJson(r);
  };
  it('negative count', () => expect(rejectReason(countCase(-1))).toBe('invalid-count'));
  it('fractional count', () => expect(rejectReason(countCase(1.5))).toBe('invalid-count'));
  it('count above 2^53', () =>
    expect(
      rejectReason(() =>
        normalizeReport(
          JSON.parse(
            JSON.stringify(base()).replace(
              '"total-successful-session-count":10',
              '"total-successful-session-count":9007199254740993',
            ),
          ),
        ),
      ),
    ).toBe('invalid-count'));
  it('count as a word', () => expect(rejectReason(countCase('ten'))).toBe('invalid-count'));
  it('a count above 2^32 - 1: sums of 2,000 such could wrap UInt64 before', () => {
    expect(rejectReason(countCase(2 ** 32))).toBe('invalid-count');
    expect(countCase(2 ** 32 - 1)().policies[0]!.successfulSessions).toBe(2 ** 32 - 1);
  });
  it('a summary without either count', () => {
    const r = base();
    r.policies[0]!.summary = {} as never;
    expect(rejectReason(() => normalizeJson(r))).toBe('invalid-policy');
  });
  it('rejections carry a human-readable detail naming the field', () => {
    try {
      normalizeJson(countCase(-5)());
    } catch (err) {
      expect((err as ReportRejectedError).detail).toContain('policies[0].summary.total-successful-session-count');
    }
  });
});

describe('accepted, normalized and flagged', () => {
  it('domains lower-case, without trailing dot; IDNs as A-labels', () => {
    const r = base();
    r.policies[0]!.policy['policy-domain'] = 'Bücher.Example.';
    const n = normalizeJson(r);
    expect(n.policies[0]!.policyDomain).toBe('xn--bcher-kva.example');
    expect(n.flags).toContain('idn-converted');
  });

  it('times with offsets are converted to UTC', () => {
    const n = normalizeJson({
      ...base(),
      'date-range': { 'start-datetime': '2025-01-01T02:00:00+02:00', 'end-datetime': '2025-01-02T01:59:59+0200' },
    });
    expect(n.start.toISOString()).toBe('2025-01-01T00:00:00.000Z');
    expect(n.end.toISOString()).toBe('2025-01-01T23:59:59.000Z');
  });

  it('end before start is flagged, not rejected', () => {
    const n = normalizeJson({
      ...base(),
      'date-range': { 'start-datetime': '2025-01-02T00:00:00Z', 'end-datetime': '2025-01-01T00:00:00Z' },
    });
    expect(n.flags).toContain('end-before-start');
  });

  it('unknown keys are kept at every level', () => {
    const r = base() as Record<string, unknown> & ReturnType<typeof base>;
    r['x-vendor'] = { a: 1 };
    (r.policies[0]!['failure-details'][0] as Record<string, unknown>)['x-detail'] = 'kept';
    const n = normalizeJson(r);
    expect(n.extra).toEqual({ 'x-vendor': { a: 1 } });
    expect(n.policies[0]!.details[0]!.extra).toEqual({ 'x-detail': 'kept' });
    expect(n.flags).toContain('unknown-keys');
  });

  it('draft-era key names map to their RFC names', () => {
    const r = base();
    r.policies[0]!['failure-details'] = [
      {
        'result-type': 'validation-failure',
        'receiving-mx-host-name': 'MX.example.com',
        'additional-info-uri': 'https://x',
        'failure-error-code': 'E1',
        'failed-session-count': 2,
      } as never,
    ];
    const d = normalizeJson(r).policies[0]!.details[0]!;
    expect(d).toMatchObject({
      receivingMxHostname: 'mx.example.com',
      additionalInformation: 'https://x',
      failureReasonCode: 'E1',
    });
    expect(d.extra).toEqual({});
  });

  it('a lone policy object instead of a list', () => {
    const r = { ...base(), policies: base().policies[0] };
    const n = normalizeJson(r);
    expect(n.policies).toHaveLength(1);
    expect(n.flags).toContain('policies-not-a-list');
  });

  it('numeric strings as counts, unknown result types kept as they came', () => {
    const r = base();
    (r.policies[0]!.summary as Record<string, unknown>)['total-successful-session-count'] = '10';
    r.policies[0]!['failure-details'][0]!['result-type'] = 'x-new-failure';
    const n = normalizeJson(r);
    expect(n.policies[0]!.successfulSessions).toBe(10);
    expect(n.policies[0]!.details[0]!.resultType).toBe('x-new-failure');
    expect(n.flags).toEqual(expect.arrayContaining(['count-as-string', 'unknown-result-type']));
  });

  it('invalid UTF-8 and a BOM are accepted, flagged', () => {
    const text = JSON.stringify({ ...base(), 'organization-name': 'Org X' });
    const bytes = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(text.replace('Org X', 'Org \u0001X'))]);
    bytes[bytes.indexOf(0x01)] = 0xff; // not UTF-8
    const decoded = decodeReport(bytes, MAX);
    expect(decoded.flags).toEqual(expect.arrayContaining(['utf8-bom', 'invalid-utf8']));
    expect(normalizeReport(decoded.json).organization).toBe('Org \ufffdX');
  });

  it('a lone surrogate escape (which ClickHouse would refuse, with its whole batch) becomes U+FFFD, flagged', () => {
    const text = JSON.stringify(base()).replace('Example Sender', 'Example \\ud800Sender');
    const decoded = decodeReport(Buffer.from(text), MAX);
    expect(decoded.flags).toContain('lone-surrogate');
    expect(normalizeReport(decoded.json).organization).toBe('Example \ufffdSender');
    // A valid pair is kept as it is, and takes the fast path.
    const emoji = decodeReport(
      Buffer.from(JSON.stringify(base()).replace('Example Sender', 'Example \\ud83d\\ude00')),
      MAX,
    );
    expect(emoji.flags).not.toContain('lone-surrogate');
    expect(normalizeReport(emoji.json).organization).toBe('Example 😀');
  });

  it('gzip followed by trailing garbage is read, as gzip(1) reads it, and flagged', () => {
    const text = JSON.stringify(base());
    const d = decodeReport(Buffer.concat([gzipSync(text), Buffer.from('\r\n-- trailing junk')]), MAX);
    expect(d.text).toBe(text);
    expect(d.flags).toContain('gzip-trailing-garbage');
    // Two members then junk: both members.
    const two = decodeReport(
      Buffer.concat([gzipSync(text.slice(0, 50)), gzipSync(text.slice(50)), Buffer.from('x')]),
      MAX,
    );
    expect(two.text).toBe(text);
    // A member cut short is still corrupt, whatever follows.
    expect(
      rejectReason(() => decodeReport(Buffer.concat([gzipSync(text).subarray(0, 40), Buffer.from('junk')]), MAX)),
    ).toBe('bad-gzip');
  });

  it('a key named __proto__ is kept as data, not taken as a prototype', () => {
    const parsed = JSON.parse(JSON.stringify(base()).replace(/}$/, ',"__proto__":{"polluted":true}}')) as unknown;
    const n = normalizeReport(parsed);
    expect(Object.getPrototypeOf(n.extra)).toBe(Object.prototype);
    expect(JSON.stringify(n.extra)).toBe('{"__proto__":{"polluted":true}}');
  });

  it('gzip inside gzip', () => {
    const decoded = decodeReport(gzipSync(gzipSync(JSON.stringify(base()))), MAX);
    expect(decoded.flags).toContain('double-gzip');
  });

  it('the report identity ignores how the time was written', () => {
    const a = normalizeJson(base());
    const b = normalizeJson({
      ...base(),
      'date-range': { 'start-datetime': '2025-01-01T00:00:00', 'end-datetime': '2025-01-01 23:59:59Z' },
    });
    expect(b.reportKey).toBe(a.reportKey);
    const c = normalizeJson({ ...base(), 'report-id': 'r-2' });
    expect(c.reportKey).not.toBe(a.reportKey);
  });
});

describe('processReportJob', () => {
  const job = (body: Buffer) => ({
    v: 1,
    receiptId: 'rcpt-1',
    receivedAt: '2025-01-02T03:04:05.000Z',
    channel: 'https',
    bodyBase64: body.toString('base64'),
  });

  it('a good report becomes rows in every table', () => {
    const res = processReportJob(job(gzipSync(JSON.stringify(base()))), 'j', { maxDecompressedBytes: MAX });
    expect(res.outcome).toBe('stored');
    expect(res.rows.reports).toHaveLength(1);
    expect(res.rows.policy_results[0]).toMatchObject({
      policy_domain: 'example.com',
      successful_sessions: 10,
      failed_sessions: 2,
      sts_mode: 'testing',
      day: '2025-01-01',
    });
    expect(res.rows.failure_details[0]).toMatchObject({
      result_type: 'certificate-expired',
      sending_mta_ip: '192.0.2.1',
      receiving_ip: null,
    });
    expect(res.rows.receipts[0]).toMatchObject({
      outcome: 'stored',
      received_at: '2025-01-02 03:04:05',
      channel: 'https',
    });
    expect(res.rows.rejects).toHaveLength(0);
  });

  it('a bad report becomes a reject row with its raw bytes and a receipt', () => {
    const body = Buffer.from('not json at all');
    const res = processReportJob(job(body), 'j', { maxDecompressedBytes: MAX });
    expect(res.outcome).toBe('rejected');
    expect(res.rows.rejects[0]).toMatchObject({
      reason: 'not-json',
      raw_base64: body.toString('base64'),
      receipt_id: 'rcpt-1',
    });
    expect(res.rows.receipts[0]).toMatchObject({ outcome: 'rejected', reject_reason: 'not-json' });
    expect(res.rows.reports).toHaveLength(0);
  });

  it('a job that is not ours is rejected as bad-job-payload', () => {
    const res = processReportJob({ hello: 'world' }, 'job-9', { maxDecompressedBytes: MAX });
    expect(res.outcome).toBe('rejected');
    expect(res.rows.rejects[0]).toMatchObject({ reason: 'bad-job-payload', receipt_id: 'job-9' });
  });
});
