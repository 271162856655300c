// The dashboard's building blocks that need no server: escaping, CSV export, flag explanations, the sign-in checks.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { FLAG_EXPLANATIONS, explainFlag } from '../../services/api/flags.ts';
import { html, tableCsv, tableJson, type Table } from '../../services/api/ui/html.ts';
import { contactOf, expectedDays } from '../../services/api/ui/pages/others.ts';
import { policySentences } from '../../services/api/ui/pages/reports.ts';
import { policyTable } from '../../services/api/ui/pages/domain.ts';
import type { PolicySeen } from '../../services/api/dashboard-queries.ts';
import { sameOrigin } from '../../services/api/ui/sessions.ts';
import { dailyChart, sparkline } from '../../services/api/ui/charts.ts';

const req = (headers: Record<string, string>): IncomingMessage => ({ headers }) as unknown as IncomingMessage;

describe('html', () => {
  it('escapes every value from a report, nested or not', () => {
    const hostile = `<script>alert(1)</script>"' onload=x &amp;`;
    const out = html`<p title="${hostile}">${hostile}${[hostile, html`<b>${hostile}</b>`]}</p>`.text;
    expect(out).not.toMatch(/<script>|" onload/);
    expect(out.match(/&lt;script&gt;/g)).toHaveLength(4);
    expect(out).toContain('&quot;&#39; onload=x &amp;amp;');
  });
});

describe('table export', () => {
  const t: Table<{ name: string; n: number | null }> = {
    id: 'x',
    caption: 'X',
    rows: [
      { name: '=HYPERLINK("http://evil")', n: 1 },
      { name: 'a,b "c"\nd', n: null },
      { name: '-1+1', n: 2 },
    ],
    columns: [
      { label: 'Name', value: (r) => r.name },
      { label: 'Count', value: (r) => r.n },
    ],
  };
  it('CSV quotes what needs quoting and defuses spreadsheet formulas', () => {
    expect(tableCsv(t)).toBe('Name,Count\r\n"\'=HYPERLINK(""http://evil"")",1\r\n"a,b ""c""\nd",\r\n\'-1+1,2\r\n');
  });
  it('JSON keeps the values as they are, keyed by column', () => {
    expect(tableJson(t)).toEqual([
      { Name: '=HYPERLINK("http://evil")', Count: 1 },
      { Name: 'a,b "c"\nd', Count: null },
      { Name: '-1+1', Count: 2 },
    ]);
  });
});

describe('flag explanations', () => {
  it('every flag the pipeline raises is explained (a new flag without an entry fails here)', () => {
    const files: string[] = [];
    const walk = (dir: string): void => {
      for (const f of readdirSync(dir)) {
        const p = join(dir, f);
        if (statSync(p).isDirectory()) walk(p);
        else if (p.endsWith('.ts')) files.push(p);
      }
    };
    walk(resolve(import.meta.dirname, '../../services'));
    const raised = new Set<string>();
    for (const f of files) {
      for (const m of readFileSync(f, 'utf8').matchAll(/[fF]lags\.(?:add|push)\(\s*'([a-z0-9-]+)'/g)) raised.add(m[1]!);
    }
    expect(raised.size).toBeGreaterThan(40);
    const missing = [...raised].filter((f) => !Object.hasOwn(FLAG_EXPLANATIONS, f));
    expect(missing).toEqual([]);
  });
  it('explains the families and says so for a flag it does not know', () => {
    expect(explainFlag('dkim-fail').meaning).toMatch(/DKIM verdict was "fail"/);
    expect(explainFlag('mx-host-not-a-list').meaning).toMatch(/mx-host was a single value/);
    expect(explainFlag('__proto__').meaning).toMatch(/does not describe/);
  });
});

describe('rejects', () => {
  it("finds a rejected report's contact-info in JSON or gzip, and nothing in other bytes", () => {
    const json = '{"contact-info":"tls@example.net","policies":7}';
    expect(contactOf(Buffer.from(json).toString('base64'))).toBe('tls@example.net');
    expect(contactOf(gzipSync(json).toString('base64'))).toBe('tls@example.net');
    expect(contactOf(Buffer.from([0x1f, 0x8b, 1, 2, 3]).toString('base64'))).toBeUndefined();
    expect(contactOf('')).toBeUndefined();
  });
});

describe('sign-in checks', () => {
  it('takes a form POST only from its own origin', () => {
    expect(sameOrigin(req({ host: 'dash.example:8080', origin: 'https://dash.example:8080' }))).toBe(true);
    expect(sameOrigin(req({ host: 'dash.example:8080', origin: 'https://evil.example' }))).toBe(false);
    expect(sameOrigin(req({ host: 'dash.example', origin: 'null' }))).toBe(false);
    expect(sameOrigin(req({ host: 'dash.example', origin: '::' }))).toBe(false);
    expect(sameOrigin(req({ host: 'dash.example', 'sec-fetch-site': 'cross-site' }))).toBe(false);
    expect(sameOrigin(req({ host: 'dash.example', 'sec-fetch-site': 'same-origin' }))).toBe(true);
  });
});

describe('charts', () => {
  it('draws every series of the daily chart as SVG, names escaped', async () => {
    const svg = (
      await dailyChart(
        {
          days: ['2026-11-01', '2026-11-02'],
          successful: [10, 20],
          failedBy: [{ name: '<b>certificate-expired</b>', values: [3, 0] }],
        },
        'Daily sessions',
      )
    ).text;
    expect(svg).toMatch(/^<svg/);
    expect(svg).toContain('successful');
    expect(svg).not.toContain('<b>');
  });

  it('draws days on a calendar: a day without reports is a shaded gap, not a skipped column', async () => {
    const svg = (
      await dailyChart(
        { days: ['2026-11-01', '2026-11-03'], successful: [10, 20], failedBy: [{ name: 'x', values: [1, 2] }] },
        'Daily sessions',
      )
    ).text;
    expect(svg).toContain('11-02');
    expect(svg).toContain('no reports');
    const ranged = (
      await dailyChart(
        { days: ['2026-11-03'], successful: [5], failedBy: [], range: { from: '2026-11-01', to: '2026-11-04' } },
        'Daily sessions',
      )
    ).text;
    expect(ranged).toContain('11-01');
    expect(ranged).toContain('11-04');
    // Over more than a year, whole dates: 01-05 would name two days.
    const long = (
      await dailyChart(
        {
          days: ['2025-01-05', '2026-01-05'],
          successful: [1, 2],
          failedBy: [],
          range: { from: '2025-01-01', to: '2026-01-10' },
        },
        'Daily sessions',
      )
    ).text;
    expect(long).toMatch(/>2025-\d\d-\d\d</);
    expect(long).toContain('no reports');
  });

  it('places sparkline points by date: a gap breaks the line and a lone day is a dot', () => {
    const points = [
      { day: '2026-11-01', rate: 0 },
      { day: '2026-11-02', rate: 0.5 },
      { day: '2026-11-04', rate: 1 },
    ];
    const svg = sparkline(points, { from: '2026-11-01', to: '2026-11-05' }, 'rates').text;
    expect(svg).toMatch(/<polyline[^>]+points="2\.0,22\.0 25\.0,12\.0"/);
    expect(svg).toMatch(/<circle cx="71\.0" cy="2\.0"/);
    expect(svg.match(/<polyline/g)).toHaveLength(1);
  });
});

describe("a report page's policy sentences", () => {
  it('end each sentence with one period, with or without the policy settings', () => {
    expect(policySentences(0, 3, {})).toBe('0 sessions succeeded and 3 failed (100.0% failed).');
    expect(policySentences(1200, 0, { sts_mode: 'enforce', sts_max_age: 86400, sts_mx: ['*.example.com'] })).toBe(
      '1,200 sessions succeeded and 0 failed (0.0% failed). MTA-STS mode enforce, max_age 86400, mx *.example.com.',
    );
    expect(policySentences(0, 0, { mx_hosts: ['mx1.example.com'] })).toBe(
      '0 sessions succeeded and 0 failed. MX hosts mx1.example.com.',
    );
  });
});

describe("a domain's policy history", () => {
  const seen = (over: Partial<PolicySeen>): PolicySeen => ({
    policy_type: 'sts',
    sts_mode: 'enforce',
    sts_max_age: 86400,
    sts_mx: ['*.example.com'],
    tlsa_records: [],
    first_day: '2026-11-01',
    last_day: '2026-11-30',
    organizations: ['Google'],
    reports: 30,
    ...over,
  });

  it('shows the days reporters could not fetch the policy as "fetch failed", not as a changed empty policy', () => {
    const t = policyTable([
      seen({}),
      seen({ sts_mode: '', sts_max_age: null, sts_mx: [], first_day: '2026-11-10', last_day: '2026-11-12' }),
      seen({ sts_mode: 'testing', first_day: '2026-12-01', last_day: '2026-12-05' }),
    ]);
    const change = t.columns.find((c) => c.label === 'Changed')!;
    const mode = t.columns.find((c) => c.label === 'Mode')!;
    expect(t.rows.map((r) => [mode.value(r), change.value(r)])).toEqual([
      ['enforce', ''],
      ['(not fetched)', 'fetch failed'],
      ['testing', 'changed'],
    ]);
  });
});

describe("a reporter's expected days", () => {
  it('leave out today, whose reports cannot have arrived yet, and the days after it', () => {
    const now = new Date('2026-12-06T15:00:00Z');
    expect(expectedDays({ from: '2026-11-07', to: '2026-12-06' }, now)).toBe(29);
    expect(expectedDays({ from: '2026-11-01', to: '2026-11-30' }, now)).toBe(30);
    expect(expectedDays({ from: '2026-12-06', to: '2026-12-06' }, now)).toBe(0);
  });
});
