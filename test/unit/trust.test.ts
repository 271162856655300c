// The order of a report's copies (services/worker/trust.ts): trust first, then the first received (the latest for
// operators' choices), then the normalizer; one number, exact in JavaScript, the same as migration 0010 computes.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { copyVersion, decideCopy, trustOf } from '../../services/worker/trust.ts';
import { normalizeReport } from '../../services/worker/normalize.ts';
import { figuresDigest } from '../../services/worker/rows.ts';

const t0 = Date.parse('2026-11-02T10:00:00Z');
const dkim = (result: 'pass' | 'fail' | 'none', submitterAligned: boolean) => ({
  smtp: { dkim: { result, submitterAligned } } as never,
});

describe('trust of a copy', () => {
  it('an operator’s choice > a DKIM-aligned mail > other mail > HTTPS', () => {
    expect(trustOf({ chosen: { by: 'op', copy: 'x' }, smtp: undefined })).toBe(4);
    expect(trustOf({ ...dkim('pass', true), chosen: undefined })).toBe(3);
    expect(trustOf({ ...dkim('pass', false), chosen: undefined })).toBe(2);
    expect(trustOf({ ...dkim('fail', true), chosen: undefined })).toBe(2);
    expect(trustOf({ ...dkim('none', false), chosen: undefined })).toBe(2);
    expect(trustOf({ smtp: undefined, chosen: undefined })).toBe(1);
  });

  it('orders by trust, then the first received (operators: the latest), then the normalizer', () => {
    const v = (trust: 1 | 2 | 3 | 4, at: number, n = 1) => copyVersion(trust, at, n);
    expect(v(3, t0 + 86_400_000)).toBeGreaterThan(v(2, t0));
    expect(v(2, t0 + 86_400_000)).toBeGreaterThan(v(1, t0));
    expect(v(1, t0)).toBeGreaterThan(v(1, t0 + 1));
    expect(v(4, t0 + 1)).toBeGreaterThan(v(4, t0));
    expect(v(4, 0)).toBeGreaterThan(v(3, 0));
    expect(v(2, t0, 2)).toBeGreaterThan(v(2, t0, 1));
    expect(v(2, t0 - 1, 1)).toBeGreaterThan(v(2, t0, 200));
    for (const trust of [1, 2, 3, 4] as const) expect(Number.isSafeInteger(v(trust, 2 ** 42 + 5, 255))).toBe(true);
  });

  it('is what migration 0010 computes for the copies stored before it', () => {
    const sql = readFileSync(resolve(import.meta.dirname, '../../schemas/clickhouse/0010_report_copies.sql'), 'utf8');
    const m = /trust \* (\d+) \+ \((\d+) - toUInt64\(received_at\) \* 1000\) \* (\d+) \+ normalizer_version/.exec(sql);
    expect(m).not.toBeNull();
    const [mul, span, norm] = [Number(m![1]), Number(m![2]), Number(m![3])];
    const at = Math.floor(t0 / 1000) * 1000;
    for (const trust of [1, 2, 3] as const)
      expect(trust * mul + (span - at) * norm + 1).toBe(copyVersion(trust, at, 1));
  });

  it('decides: the best copy is stored, its figures again are a duplicate, other figures a conflict', () => {
    const mail = { version: copyVersion(3, t0, 1), sha: 'aaa', text: 'a1' };
    const post = { version: copyVersion(1, t0 - 5000, 1), sha: 'bbb', text: 'b1' };
    expect(decideCopy(mail, [post])).toBe('store');
    expect(decideCopy(post, [mail])).toBe('conflict');
    expect(decideCopy(post, [])).toBe('store');
    // The same figures in another text, or the same text (a copy recorded before 0010 has its text's hash as figures).
    expect(decideCopy({ version: copyVersion(1, t0, 1), sha: 'aaa', text: 'a2' }, [mail])).toBe('duplicate');
    expect(decideCopy({ version: copyVersion(1, t0, 1), sha: 'new', text: 'a1' }, [mail])).toBe('duplicate');
    // Its own record among the known copies changes nothing.
    expect(decideCopy(mail, [mail, post])).toBe('store');
    // Equal rank, other figures: the smaller hash, so every processing decides alike.
    const twin = { version: mail.version, sha: '000', text: 'z' };
    expect(decideCopy(mail, [twin])).toBe('conflict');
    expect(decideCopy(twin, [mail])).toBe('store');
  });

  it('a digest of the figures: the same for another text of them, other for other figures, boundaries included', () => {
    const report = (detail: Record<string, unknown>, ok = 10) =>
      normalizeReport({
        'organization-name': 'Org',
        'date-range': { 'start-datetime': '2026-11-02T00:00:00Z', 'end-datetime': '2026-11-02T23:59:59Z' },
        'contact-info': 'x@org.example',
        'report-id': 'r1',
        policies: [
          {
            policy: { 'policy-type': 'sts', 'policy-domain': 'd.example', 'policy-string': ['version: STSv1'] },
            summary: { 'total-successful-session-count': ok, 'total-failure-session-count': 1 },
            'failure-details': [{ 'result-type': 'certificate-expired', 'failed-session-count': 1, ...detail }],
          },
        ],
      });
    const base = figuresDigest(report({ 'receiving-mx-hostname': 'mx1', 'receiving-mx-helo': 'helo' }));
    // Another text of the same figures: keys in another order, other white space.
    const reordered = normalizeReport(
      JSON.parse(
        JSON.stringify({
          policies: [
            {
              'failure-details': [
                {
                  'receiving-mx-helo': 'helo',
                  'failed-session-count': 1,
                  'receiving-mx-hostname': 'mx1',
                  'result-type': 'certificate-expired',
                },
              ],
              summary: { 'total-failure-session-count': 1, 'total-successful-session-count': 10 },
              policy: { 'policy-string': ['version: STSv1'], 'policy-domain': 'd.example', 'policy-type': 'sts' },
            },
          ],
          'report-id': 'r1',
          'contact-info': 'x@org.example',
          'date-range': { 'end-datetime': '2026-11-02T23:59:59Z', 'start-datetime': '2026-11-02T00:00:00Z' },
          'organization-name': 'Org',
        }),
      ) as unknown,
    );
    expect(figuresDigest(reordered)).toBe(base);
    expect(figuresDigest(report({ 'receiving-mx-hostname': 'mx1', 'receiving-mx-helo': 'helo' }, 11))).not.toBe(base);
    // A value that carries what would be a boundary does not pass for two fields.
    expect(figuresDigest(report({ 'receiving-mx-hostname': 'mx1|4:helo', 'receiving-mx-helo': null }))).not.toBe(
      figuresDigest(report({ 'receiving-mx-hostname': 'mx1', 'receiving-mx-helo': 'helo' })),
    );
  });
});
