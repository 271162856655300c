import { describe, expect, it } from 'vitest';
import { quoteIdentifier, sqlInteger } from '../../services/common/sql.ts';
import { quoteString } from '../../services/common/clickhouse-compat.ts';
import { encodeTsv, encodeTsvPieces } from '../../services/common/tsv.ts';
import { retryDelayMs } from '../../services/common/queue.ts';
import { ConnectionLimiter, RateLimiter } from '../../services/common/source-limits.ts';
import { classifyBody, isReportPath } from '../../services/http-receiver/app.ts';
import {
  normalizeDomain,
  normalizeIp,
  parseReportTime,
  parseStsPolicy,
  parseTlsaPolicy,
} from '../../services/worker/normalize-values.ts';

describe('parseReportTime', () => {
  it.each([
    ['2024-03-26T00:00:00Z', '2024-03-26T00:00:00.000Z', []],
    ['2024-03-26T00:00:00', '2024-03-26T00:00:00.000Z', ['datetime-without-zone']],
    ['2024-03-26 23:59:59Z', '2024-03-26T23:59:59.000Z', []],
    ['2024-03-26', '2024-03-26T00:00:00.000Z', ['date-without-time']],
    ['2024-03-26T01:00:00-01:30', '2024-03-26T02:30:00.000Z', []],
    ['2016-12-31T23:59:60Z', '2016-12-31T23:59:59.000Z', ['leap-second']],
    ['2024-03-26T00:00:00.123Z', '2024-03-26T00:00:00.000Z', []],
  ])('%s', (raw, iso, flags) => {
    const t = parseReportTime(raw);
    expect(t?.value.toISOString()).toBe(iso);
    expect(t?.flags).toEqual(flags);
  });
  it.each([
    '',
    'tomorrow',
    '2024-13-01T00:00:00Z',
    '2024-02-30T00:00:00Z',
    '2024-01-01T24:00:00Z',
    '1969-12-31T23:59:59Z',
    '2200-01-01T00:00:00Z',
  ])('rejects %j', (raw) => expect(parseReportTime(raw)).toBeUndefined());
  it('Unix seconds', () => expect(parseReportTime(1711411200)?.value.toISOString()).toBe('2024-03-26T00:00:00.000Z'));
});

describe('normalizeDomain and normalizeIp', () => {
  it.each([
    ['Example.COM.', 'example.com'],
    [' mx1.Example.net ', 'mx1.example.net'],
    ['*.Mail.Example', '*.mail.example'],
    ['münchen.de', 'xn--mnchen-3ya.de'],
  ])('%j → %j', (raw, value) => expect(normalizeDomain(raw).value).toBe(value));
  it('flags what is not a domain, keeping it', () => {
    expect(normalizeDomain('not a domain!')).toEqual({ value: 'not a domain!', flags: ['invalid-domain'] });
  });
  it.each([
    ['2001:DB8:abcd:0012::1', '2001:db8:abcd:12::1'],
    ['2001:db8:0:0:0:0:0:1', '2001:db8::1'],
    ['[2001:db8::1]', '2001:db8::1'],
    ['::ffff:192.0.2.1', '192.0.2.1'],
    [' 192.0.2.7 ', '192.0.2.7'],
  ])('%j → %j', (raw, value) => expect(normalizeIp(raw).value).toBe(value));
  it('flags what is not an address', () => expect(normalizeIp('mx.example.com').flags).toEqual(['invalid-ip']));
});

describe('policy strings', () => {
  it('STS with trailing CR, no space after colon, and several mx', () => {
    const p = parseStsPolicy([
      'version: STSv1\r',
      'mode:enforce',
      'mx: MX1.example.com',
      'mx: *.example.net',
      'max_age: 604800',
    ]);
    expect(p.value).toEqual({
      version: 'STSv1',
      mode: 'enforce',
      maxAge: 604800,
      mx: ['mx1.example.com', '*.example.net'],
    });
    expect(p.flags).toEqual([]);
  });
  it('STS oddities are flagged', () => {
    expect(parseStsPolicy(['mode: sometimes', 'max_age: soon', 'garbage']).flags.sort()).toEqual([
      'sts-invalid-max-age',
      'sts-policy-unparsed-line',
      'sts-unknown-mode',
    ]);
  });
  it('TLSA: one per string, several separated by ";", and JSON-encoded', () => {
    expect(parseTlsaPolicy(['3 1 1 ABCD', '2 0 1 ef01; 3 1 2 0A0B']).value).toEqual([
      '3 1 1 abcd',
      '2 0 1 ef01',
      '3 1 2 0a0b',
    ]);
    const json = parseTlsaPolicy(['["3 1 1 AA","3 1 1 BB"]']);
    expect(json).toEqual({ value: ['3 1 1 aa', '3 1 1 bb'], flags: ['tlsa-json-encoded'] });
  });
});

describe('quoteString (the one SQL quoting helper)', () => {
  it('escapes quotes, backslashes and control characters', () => {
    expect(quoteString("it's")).toBe("'it\\'s'");
    expect(quoteString('a\\b')).toBe("'a\\\\b'");
    expect(quoteString('x\ny\0')).toBe("'x\\ny\\0'");
  });
  it('identifiers must be plain names', () => {
    expect(quoteIdentifier('policy_results')).toBe('`policy_results`');
    expect(() => quoteIdentifier('x`; DROP TABLE y')).toThrow();
  });
  it('integers must be safe', () => {
    expect(sqlInteger(42)).toBe('42');
    expect(() => sqlInteger(1.5)).toThrow();
    expect(() => sqlInteger(Number.NaN)).toThrow();
  });
});

describe('HTTP body classification', () => {
  const gz = Buffer.from([0x1f, 0x8b, 8, 0]);
  const json = Buffer.from('{"a":1}');
  it.each([
    ['application/tlsrpt+gzip', '', gz, 'gzip'],
    ['application/tlsrpt+json', '', json, 'json'],
    ['application/tlsrpt+json; charset=utf-8', '', json, 'json'],
    ['application/octet-stream', '', gz, 'gzip'],
    ['application/tlsrpt+json', 'gzip', gz, 'gzip'],
    ['', '', json, 'json'],
    ['text/plain', '', json, undefined],
    ['image/png', '', Buffer.from('PNG'), undefined],
    ['application/tlsrpt+json', 'br', json, undefined],
  ])('%j %j', (type, encoding, body, kind) => expect(classifyBody(type, encoding, body)).toBe(kind));
  it('report paths: the configured one and anything below it', () => {
    expect(isReportPath('/v1/tlsrpt', '/v1/tlsrpt')).toBe(true);
    expect(isReportPath('/v1/tlsrpt/example.com', '/v1/tlsrpt')).toBe(true);
    expect(isReportPath('/v1/tlsrptx', '/v1/tlsrpt')).toBe(false);
  });
});

describe('retry delays', () => {
  it('double from one second and stop at a minute', () => {
    expect(retryDelayMs(1, () => 0.5)).toBe(1_000);
    expect(retryDelayMs(3, () => 0.5)).toBe(4_000);
    expect(retryDelayMs(30, () => 0.5)).toBe(60_000);
  });
});

describe('per-source limits', () => {
  it('connections: at most N open per address, released on close', () => {
    const l = new ConnectionLimiter(2);
    expect([l.acquire('a'), l.acquire('a'), l.acquire('a'), l.acquire('b')]).toEqual([true, true, false, true]);
    l.release('a');
    expect(l.acquire('a')).toBe(true);
  });
  it('rate: N per address per minute, a new minute starts afresh', () => {
    let t = 60_000 * 1000;
    const r = new RateLimiter(2, () => t);
    expect([r.allow('a'), r.allow('a'), r.allow('a'), r.allow('b')]).toEqual([true, true, false, true]);
    t += 60_000;
    expect(r.allow('a')).toBe(true);
    expect(r.retryAfterSeconds()).toBe(60);
  });
});

describe('encodeTsv (rows → TabSeparated)', () => {
  it('escapes strings as ClickHouse reads them back, NULL as \\N, arrays as quoted lists', () => {
    const text = encodeTsv(
      ['s', 'n', 'nil', 'arr', 'empty'],
      [{ s: "a\tb\nc\\d'e\r\0", n: 42, nil: null, arr: ["it's", 'x,y]', ''], empty: '' }],
    ).toString();
    expect(text).toBe("a\\tb\\nc\\\\d\\'e\\r\\0\t42\t\\N\t['it\\'s','x,y]','']\t\n");
  });
  it('escapes short and long values alike (tested by a loop and by a regular expression)', () => {
    const raw = "a\tb\nc\\d'e\r\0f\bg\fh\u0001\u000bi";
    const escaped = "a\\tb\\nc\\\\d\\'e\\r\\0f\\bg\\fh\u0001\u000bi";
    for (const pad of ['', 'x'.repeat(300)]) {
      expect(encodeTsv(['s'], [{ s: `${pad}${raw}` }]).toString()).toBe(`${pad}${escaped}\n`);
      expect(encodeTsv(['s'], [{ s: `${pad}\u0001\u000b plain` }]).toString()).toBe(`${pad}\u0001\u000b plain\n`);
    }
  });
  it('a literal \\N string stays a string; long inputs come out whole, in UTF-8', () => {
    const many = Array.from({ length: 5000 }, (_, i) => ({ s: `é${'x'.repeat(i % 50)}`, n: i }));
    const lines = encodeTsv(['s', 'n'], many).toString('utf8').split('\n');
    expect(lines).toHaveLength(5001);
    expect(lines[4999]).toBe(`é${'x'.repeat(4999 % 50)}\t4999`);
    expect(encodeTsv(['s'], [{ s: '\\N' }]).toString()).toBe('\\\\N\n');
  });
  it('comes in pieces of about 64 KB that each end a line', () => {
    const rows = Array.from({ length: 3000 }, (_, i) => ({ s: `${i}:${'y'.repeat(100)}` }));
    const pieces = encodeTsvPieces(['s'], rows);
    expect(pieces.length).toBeGreaterThan(3);
    for (const p of pieces) {
      expect(p.at(-1)).toBe(0x0a);
      expect(p.length).toBeLessThan(65_536 + 200);
    }
    expect(Buffer.concat(pieces).equals(encodeTsv(['s'], rows))).toBe(true);
    expect(encodeTsvPieces(['s'], [])).toEqual([]);
  });
  it('writes any text as its UTF-8 bytes, a line longer than a third of a piece as a piece of its own', () => {
    // Latin-1, two-byte, surrogate pairs, a lone surrogate (U+FFFD in UTF-8), and lines around the piece bounds.
    const texts = ['plain', 'café', 'a — b', '😀 x', 'lone \ud800 end', 'z'.repeat(21_845), 'ü'.repeat(21_846)];
    const rows = Array.from({ length: 4_000 }, (_, i) => ({ s: `${i} ${texts[i % texts.length]!}`, n: i }));
    rows.push({ s: `big ${'€'.repeat(3_000_000)}`, n: -1 });
    const pieces = encodeTsvPieces(['s', 'n'], rows);
    const expected = Buffer.from(rows.map((r) => `${r.s}\t${r.n}\n`).join(''), 'utf8');
    expect(Buffer.concat(pieces).equals(expected)).toBe(true);
    for (const p of pieces) {
      expect(p.at(-1)).toBe(0x0a);
      // A shared piece stays within 64 KB; a piece above that is one line alone.
      if (p.length > 65_536) expect(p.indexOf(0x0a)).toBe(p.length - 1);
    }
    expect(pieces.at(-1)!.length).toBe(Buffer.byteLength(`big ${'€'.repeat(3_000_000)}\t-1\n`));
  });
  it('refuses what would shift or poison a batch', () => {
    expect(() => encodeTsv(['a', 'b'], [{ a: 'x' }])).toThrow(/column b/);
    expect(() => encodeTsv(['n'], [{ n: 2 ** 53 }])).toThrow(/safe integer/);
    expect(() => encodeTsv(['n'], [{ n: Number.NaN }])).toThrow(/safe integer/);
    expect(() => encodeTsv(['o'], [{ o: { nested: true } }])).toThrow(/no TabSeparated form/);
  });
});
