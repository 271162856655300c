// Dashboard pages over a small store, as the server renders them. The reporters page: the quirks flagged belong to
// (domain, reporter), from that domain's reports only (Microsoft's sts+tlsa twins are flagged
// overlapping-policy-entries on the domain they were sent for, not on every domain Microsoft reports). The domain list
// and the domain page: the same period's figures and the same status.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb } from '../../services/api/queries.ts';
import { reportersPage } from '../../services/api/ui/pages/others.ts';
import { domainsPage } from '../../services/api/ui/pages/domains.ts';
import { domainPage } from '../../services/api/ui/pages/domain.ts';
import type { PageContext } from '../../services/api/ui/context.ts';
import { openStore, report, type Policy, type Store } from '../helpers/incident-scenario.ts';

const DAY = '2026-11-20';
let store: Store;

beforeAll(async () => {
  store = await openStore();
  const ok = (type: 'sts' | 'tlsa'): Policy => ({ type, mode: 'enforce', ok: 10, failures: [] });
  await store.write(
    [
      report('Microsoft Corporation', 'twins.example', DAY, [ok('sts'), ok('tlsa')]),
      report('Microsoft Corporation', 'single.example', DAY, [ok('sts')]),
      // Failing the day before, clean on the latest day.
      report('Google', 'mended.example', '2026-11-19', [
        {
          type: 'sts',
          mode: 'enforce',
          ok: 10,
          failures: [{ rt: 'certificate-expired', mx: 'mx.mended.example', n: 10 }],
        },
      ]),
      report('Google', 'mended.example', DAY, [ok('sts')]),
    ],
    true,
  );
});
afterAll(() => store.close());

const context = (query: string, params: Record<string, string> = {}): PageContext => ({
  db: createDb(store.ch, { timeoutSeconds: 30, maxRows: 1_000_000 }),
  principal: { name: 'admin', domains: undefined },
  query: new URLSearchParams(query),
  params,
  threshold: 0.05,
  readinessDays: 14,
  publish: { rua: 'mailto:tlsrpt@reports.example', hostTarget: 'policy.reports.example' },
  postureDomains: [],
  incidents: { resolveDays: 3, stoppedAfterDays: 3, regularShare: 0.6, windowDays: 120 },
  now: new Date(`${DAY}T12:00:00Z`),
});

describe('the reporters page', () => {
  it("shows a quirk on the domain whose reports carried it, not on the reporter's other domains", async () => {
    const page = await reportersPage(context(`from=${DAY}&to=${DAY}`));
    const t = page.tables![0]!;
    const quirks = t.columns.find((c) => c.label === 'Quirks flagged')!;
    const rows = (t.rows as Array<{ policy_domain: string }>).map((r) => [r.policy_domain, quirks.value(r as never)]);
    expect(rows).toEqual([
      ['mended.example', ''],
      ['single.example', ''],
      ['twins.example', 'overlapping-policy-entries (1)'],
    ]);
  });
});

describe('the domain list and the domain page', () => {
  it("show the period's figures and the same status for the same period", async () => {
    const period = 'from=2026-11-19&to=2026-11-20';
    const list = await domainsPage(context(period));
    const t = list.tables![0]!;
    const cell = (label: string, r: unknown) => t.columns.find((c) => c.label === label)!.value(r);
    const mended = (t.rows as Array<{ domain: string }>).find((r) => r.domain === 'mended.example')!;
    // Two days: 10 failed of 30 (the latest day alone was clean).
    expect([cell('Status', mended), cell('Failed sessions', mended), cell('Successful sessions', mended)]).toEqual([
      'failing',
      10,
      20,
    ]);
    expect(cell('Failure rate (latest day)', mended)).toBe(0);
    const page = await domainPage(context(period, { domain: 'mended.example' }));
    expect(page.body.toString()).toMatch(/<h1>mended\.example <span class="badge badge-failing">/);
  });

  it("says when the live check beside a failure ran, relative to the failure's last day", async () => {
    await store.ch.insert({
      table: 'posture_checks',
      format: 'JSONEachRow',
      values: [
        {
          domain: 'mended.example',
          checked_at: '2026-11-21 04:00:00',
          check_name: 'mx-tls',
          subject: 'mx.mended.example',
          severity: 'ok',
          summary: 'mx.mended.example: STARTTLS, TLSv1.3, trusted, expires in 80 days',
          detail: '{}',
          policy_id: '',
          policy_text: '',
        },
      ],
    });
    const page = await domainPage(context('from=2026-11-19&to=2026-11-21', { domain: 'mended.example' }));
    const text = page.body
      .toString()
      .replace(/<[^>]+>/g, ' ')
      .replace(/\s+/g, ' ');
    expect(text).toMatch(/found this in order: mx\.mended\.example: STARTTLS[^(]*\(2 days after its last failure\)/);
  });
});

describe('the period of a page without typed dates', () => {
  // Weeks after the store's last report: a quiet install, or the real corpus read today.
  const later = (query: string, params: Record<string, string> = {}): PageContext => ({
    ...context(query, params),
    now: new Date('2026-12-06T12:00:00Z'),
  });
  const caption = (p: { tables?: Array<{ caption: string }> }): string => p.tables![0]!.caption;

  it('ends on the latest report day, and "all time" spans the first to the latest', async () => {
    const list = await domainsPage(later(''));
    expect(list.body.toString()).toContain('value="2026-11-14"');
    expect((list.tables![0]!.rows as Array<{ domain: string }>).map((r) => r.domain)).toEqual([
      'mended.example',
      'single.example',
      'twins.example',
    ]);
    const all = await reportersPage(later('period=all'));
    expect(caption(all)).toBe('Who reports each domain, 2026-11-19 to 2026-11-20');
    const one = await reportersPage(later('period=all&domain=twins.example'));
    expect(caption(one)).toBe('Who reports twins.example, 2026-11-20 to 2026-11-20');
    const page = await domainPage(later('', { domain: 'mended.example' }));
    expect(page.tables!.find((t) => t.id === 'daily')!.rows.map((r) => (r as { day: string }).day)).toContain(
      '2026-11-20',
    );
  });

  it("offers the latest data and all time, keeping the page's other fields", async () => {
    const page = await reportersPage(later('period=all&domain=twins.example&from=&cursor=x'));
    const links = [...page.body.toString().matchAll(/<a href="([^"]+)"\s*([^>]*)>\s*(Latest data|All time)/g)];
    expect(links.map((m) => [m[3], m[1], m[2]!.trim()])).toEqual([
      ['Latest data', '/ui/reporters?domain=twins.example', ''],
      ['All time', '/ui/reporters?domain=twins.example&amp;period=all', 'aria-current="true" class="current"'],
    ]);
  });

  it('ends today with typed dates or for a principal without reports', async () => {
    const typed = await reportersPage(later('from=2026-11-01'));
    expect(caption(typed)).toBe('Who reports each domain, 2026-11-01 to 2026-12-06');
    const none = await reportersPage({
      ...later(''),
      principal: { name: 'none', domains: new Set(['other.example']) },
    });
    expect(caption(none)).toBe('Who reports each domain, 2026-11-07 to 2026-12-06');
  });
});

describe("the domain page's MX hosts", () => {
  beforeAll(async () => {
    await store.write(
      [
        // MX hosts: Microsoft's sts+tlsa twins list the same 5 sessions twice (counted once).
        report('Microsoft Corporation', 'mx.example', DAY, [
          { type: 'sts', mode: 'enforce', ok: 100, failures: [{ rt: 'tlsa-invalid', mx: 'mx1.mx.example', n: 5 }] },
          { type: 'tlsa', mode: 'enforce', ok: 100, failures: [{ rt: 'tlsa-invalid', mx: 'mx1.mx.example', n: 5 }] },
        ]),
        report('Google', 'mx.example', '2026-11-18', [
          {
            type: 'sts',
            mode: 'enforce',
            ok: 50,
            failures: [{ rt: 'certificate-expired', mx: 'mx1.mx.example', n: 3 }],
          },
        ]),
        report('Google', 'mx.example', DAY, [
          {
            type: 'sts',
            mode: 'enforce',
            ok: 50,
            failures: [{ rt: 'starttls-not-supported', mx: 'mx2.mx.example', n: 2 }],
          },
        ]),
      ],
      true,
    );
    const mxCheck = (subject: string, severity: string, detail: object) => ({
      domain: 'mx.example',
      checked_at: '2026-11-20 06:00:00',
      check_name: 'mx-tls',
      subject,
      severity,
      summary: `${subject}: ${severity}`,
      detail: JSON.stringify(detail),
      policy_id: '',
      policy_text: '',
    });
    await store.ch.insert({
      table: 'posture_checks',
      format: 'JSONEachRow',
      values: [
        mxCheck('mx1.mx.example', 'critical', {
          starttls: true,
          tlsVersion: 'TLSv1.3',
          validTo: '2027-01-10T00:00:00.000Z',
          daysToExpiry: 51,
          issuer: "Let's Encrypt R11",
          tlsa: ['3 1 1 ab'],
          tlsaMatch: false,
        }),
        mxCheck('mx3.mx.example', 'ok', { starttls: true, tlsVersion: 'TLSv1.2' }),
      ],
    });
  });

  it('each host the failures or the latest check name: failed sessions once, share, last day, what the check found', async () => {
    const page = await domainPage(context('from=2026-11-18&to=2026-11-20', { domain: 'mx.example' }));
    const t = page.tables!.find((x) => x.id === 'mx-hosts')!;
    const rows = (t.rows as unknown[]).map((r) => t.columns.map((c) => c.value(r as never)));
    expect(t.columns.map((c) => c.label)).toEqual([
      'MX host',
      'Failed sessions',
      'Share of failures',
      'Last failure',
      'Failed most as',
      'Check of 2026-11-20 06:00:00 UTC',
      'STARTTLS',
      'TLS',
      'Certificate expires',
      'Issuer',
      'TLSA',
    ]);
    expect(rows).toEqual([
      [
        'mx1.mx.example',
        8,
        0.8,
        DAY,
        'tlsa-invalid',
        'critical',
        'yes',
        'TLSv1.3',
        '2027-01-10 (51 days)',
        "Let's Encrypt R11",
        '1 record(s), none matches',
      ],
      ['mx2.mx.example', 2, 0.2, DAY, 'starttls-not-supported', 'not checked', '', '', '', '', ''],
      ['mx3.mx.example', 0, 0, '', '', 'ok', 'yes', 'TLSv1.2', '', '', 'none'],
    ]);
    expect(page.body.toString()).toContain('a failure rate per host cannot be told from them');
  });
});
