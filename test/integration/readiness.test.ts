/* eslint-disable @typescript-eslint/no-unsafe-assignment -- expect.stringMatching() is typed any */
// Enforce readiness has one truth (services/api/readiness.ts): the dashboard's domain page and the API's
// testing → enforce check read the same MTA_STS_READINESS_DAYS and list the same blockers; DANE failures (which
// Microsoft lists under its sts policy too) are shown apart and never block an MTA-STS mode change.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb } from '../../services/api/queries.ts';
import { adoptPolicy, findPolicy, NoPolicyKnown, PolicyConflict, putPolicy } from '../../services/api/mta-sts.ts';
import { stsAction, type StsAction } from '../../services/api/ui/mta-sts-actions.ts';
import { toClickHouseDateTime } from '../../services/common/sql.ts';
import { domainPage } from '../../services/api/ui/pages/domain.ts';
import { mtaStsDomainPage, mtaStsPage, recordStates, type RecordState } from '../../services/api/ui/pages/mta-sts.ts';
import type { PageContext } from '../../services/api/ui/context.ts';
import { policyText, type StsPolicy } from '../../services/common/sts-policies.ts';
import { addDays } from '../../services/common/days.ts';
import {
  certificateView,
  EPOCH,
  writeCertificates,
  type CertificateRow,
  type CertificateState,
} from '../../services/common/sts-certificates.ts';
import { openStore, report, type Store } from '../helpers/incident-scenario.ts';

const NOW = new Date();
const ago = (n: number): string => addDays(NOW.toISOString().slice(0, 10), -n);
const DOMAIN = 'ready.example';
let store: Store;

beforeAll(async () => {
  store = await openStore();
  const testing = (type: 'sts' | 'tlsa', failures: Array<{ rt: string; mx: string; n: number }>) => ({
    type,
    mode: 'testing',
    ok: 100,
    failures,
  });
  await store.write(
    [
      report('Google', DOMAIN, ago(2), [
        testing('sts', [{ rt: 'certificate-expired', mx: 'mx2.ready.example', n: 9 }]),
      ]),
      // Microsoft's twins: a DANE failure under its tlsa policy and, the same sessions, under its sts policy.
      report('Microsoft Corporation', DOMAIN, ago(3), [
        testing('sts', [{ rt: 'tlsa-invalid', mx: 'mx1.ready.example', n: 5 }]),
        testing('tlsa', [{ rt: 'tlsa-invalid', mx: 'mx1.ready.example', n: 5 }]),
      ]),
      // Before the last 14 days: not a reason to wait now.
      report('Google', DOMAIN, ago(20), [
        testing('sts', [{ rt: 'starttls-not-supported', mx: 'mx3.ready.example', n: 4 }]),
      ]),
    ],
    true,
  );
});
afterAll(() => store.close());

describe('enforce readiness', () => {
  it('the domain page and the API refuse for the same reasons, DANE failures apart', async () => {
    const db = createDb(store.ch, { timeoutSeconds: 30, maxRows: 1_000_000 });
    const readinessText = async (): Promise<string> => {
      const page = await domainPage({
        db,
        principal: { name: 'admin', domains: undefined },
        query: new URLSearchParams(`from=${ago(29)}&to=${ago(0)}`),
        params: { domain: DOMAIN },
        threshold: 0.05,
        readinessDays: 14,
        publish: { rua: 'mailto:tlsrpt@reports.example', hostTarget: 'policy.reports.example' },
        postureDomains: [],
        incidents: { resolveDays: 3, stoppedAfterDays: 3, regularShare: 0.6, windowDays: 120 },
        now: NOW,
      });
      const section = /<section aria-labelledby="readiness">([\s\S]*?)<\/section>/.exec(page.body.toString())![1]!;
      return section.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ');
    };
    const text = await readinessText();
    expect(text).not.toMatch(/Hosted MTA-STS policy/);
    expect(text).toMatch(/Not yet safe to switch to enforce/);
    expect(text).toMatch(/the last 14 days/);
    const [blocking, dane] = text.split('DANE failures seen under the policy');
    expect(blocking).toMatch(/Google mx2\.ready\.example certificate-expired 9/);
    expect(blocking).not.toMatch(/tlsa-invalid|mx3/);
    expect(dane).toMatch(/Microsoft Corporation mx1\.ready\.example tlsa-invalid 5/);

    const enforce = { mode: 'enforce' as const, mx: ['*.ready.example'], maxAge: 604800 };
    const refused = await putPolicy(db, store.ch, {
      domain: DOMAIN,
      input: enforce,
      by: 'test',
      readinessDays: 14,
      now: NOW,
    }).catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(PolicyConflict);
    expect((refused as PolicyConflict).detail).toEqual([
      {
        organization: 'Google',
        receivingMx: 'mx2.ready.example',
        resultType: 'certificate-expired',
        failedSessions: 9,
      },
    ]);
    // Acknowledging what the page lists is enough: the DANE failure does not hold it back.
    const accepted = await putPolicy(db, store.ch, {
      domain: DOMAIN,
      input: { ...enforce, acknowledge: { mx: ['mx2.ready.example'], organizations: [] } },
      by: 'test',
      readinessDays: 14,
      now: NOW,
    });
    expect(accepted.changed).toBe(true);
    // The page now shows the hosted policy's mode, not the testing mode reporters last fetched.
    const after = await readinessText();
    expect(after).toMatch(
      new RegExp(
        `Hosted MTA-STS policy: enforce \\(id ${accepted.policy.policy_id}\\s*, changed [0-9: -]+ UTC, max_age`,
      ),
    );
    expect(after).toMatch(
      /Switched to enforce on [0-9: -]+ UTC: these failures .* acknowledged .* Google mx2\.ready\.example certificate-expired 9/,
    );
    expect(after).not.toMatch(/Not yet safe/);
  });
});

describe('adopting a policy a domain publishes already', () => {
  const enforce = (ok = 300) => [{ type: 'sts' as const, mode: 'enforce', ok, failures: [] }];
  const adopt = (domain: string, extra: { mx?: string[]; maxAge?: number } = {}) =>
    adoptPolicy(createDb(store.ch, { timeoutSeconds: 30, maxRows: 1_000_000 }), store.ch, {
      domain,
      ...extra,
      by: 'operator',
      readinessDays: 14,
      now: NOW,
    });
  const refusal = (p: Promise<unknown>) =>
    p.then(
      () => 'adopted',
      (err: unknown) =>
        err instanceof PolicyConflict || err instanceof NoPolicyKnown ? err.message : `unexpected: ${String(err)}`,
    );

  it('hosts a domain on enforce at enforce, with the MX patterns its live check fetched and a new id', async () => {
    await store.write([report('Google', 'onenforce.example', ago(1), enforce())], true);
    await store.ch.insert({
      table: 'posture_checks',
      format: 'JSONEachRow',
      values: [
        {
          domain: 'onenforce.example',
          checked_at: toClickHouseDateTime(new Date(NOW.getTime() - 3600_000)),
          check_name: 'policy',
          subject: 'onenforce.example',
          severity: 'ok',
          summary: 'mta-sts.onenforce.example serves mode enforce',
          detail: '{}',
          policy_id: '20260101T000000',
          policy_text:
            'version: STSv1\nmode: enforce\nmx: mx1.onenforce.example\nmx: *.backup.onenforce.example\nmax_age: 1209600\n',
        },
      ],
    });
    // PUT to enforce wants testing first; adopting does not (the domain is on enforce already).
    const put = await refusal(
      putPolicy(createDb(store.ch, { timeoutSeconds: 30, maxRows: 1_000_000 }), store.ch, {
        domain: 'onenforce.example',
        input: { mode: 'enforce', mx: ['mx1.onenforce.example'], maxAge: 604800 },
        by: 'operator',
        readinessDays: 14,
        now: NOW,
      }),
    );
    expect(put).toMatch(/publish mode testing first, or adopt/);
    const { policy, adopted, readiness } = await adopt('onenforce.example');
    expect([policy.mode, policy.mx, policy.max_age]).toEqual([
      'enforce',
      ['mx1.onenforce.example', '*.backup.onenforce.example'],
      1209600,
    ]);
    expect(adopted).toMatchObject({ from: 'live check', mode: 'enforce', id: '20260101T000000' });
    expect(policy.policy_id).not.toBe('20260101T000000');
    // The readiness over the same days comes with it: no report saw it in testing mode.
    expect([readiness.testingReports, readiness.days]).toEqual([0, 14]);
    expect(await refusal(adopt('onenforce.example'))).toMatch(/hosted already/);
  });

  it('from reports alone only with the MX patterns given; nothing known, nothing adopted', async () => {
    await store.write([report('Google', 'reported.example', ago(2), enforce())], true);
    expect(await refusal(adopt('reported.example'))).toMatch(/only reports saw .* give its MX patterns/);
    const { policy, adopted } = await adopt('reported.example', { mx: ['mx.reported.example'] });
    expect([policy.mode, policy.mx, adopted.from]).toEqual(['enforce', ['mx.reported.example'], 'reports']);
    expect(await refusal(adopt('unknown.example'))).toMatch(/nothing to adopt/);
  });
});

describe("the dashboard's MTA-STS pages", () => {
  const PUBLISH = { rua: 'mailto:tlsrpt@reports.example', hostTarget: 'policy.reports.example' };
  const ctx = (params: Record<string, string>, domains?: Set<string>): PageContext => ({
    db: createDb(store.ch, { timeoutSeconds: 30, maxRows: 1_000_000 }),
    principal: { name: domains ? 'tenant' : 'admin', domains },
    query: new URLSearchParams(),
    params,
    threshold: 0.05,
    readinessDays: 14,
    publish: PUBLISH,
    postureDomains: [],
    incidents: { resolveDays: 3, stoppedAfterDays: 3, regularShare: 0.6, windowDays: 120 },
    now: NOW,
  });
  const text = (body: { toString(): string }) =>
    body
      .toString()
      .replace(/<[^>]+>/g, ' ')
      .replace(/\s+/g, ' ');

  it('lists hosted domains; a domain: its policy as served, each record against the live check, readiness', async () => {
    const db = createDb(store.ch, { timeoutSeconds: 30, maxRows: 1_000_000 });
    const { policy } = await putPolicy(db, store.ch, {
      domain: 'pages.example',
      input: { mode: 'testing', mx: ['mx1.pages.example', '*.pages.example'], maxAge: 604800 },
      by: 'operator',
      readinessDays: 14,
      now: NOW,
    });
    await store.write(
      [
        report('Google', 'pages.example', ago(1), [
          {
            type: 'sts',
            mode: 'testing',
            ok: 50,
            failures: [{ rt: 'certificate-expired', mx: 'mx1.pages.example', n: 3 }],
          },
        ]),
      ],
      true,
    );
    const check = (check_name: string, severity: string, summary: string, detail: object, policy_text = '') => ({
      domain: 'pages.example',
      checked_at: toClickHouseDateTime(new Date(NOW.getTime() - 600_000)),
      check_name,
      subject: 'pages.example',
      severity,
      summary,
      detail: JSON.stringify(detail),
      policy_id: '',
      policy_text,
    });
    await store.ch.insert({
      table: 'posture_checks',
      format: 'JSONEachRow',
      values: [
        // The record still names the previous id; the reports go to us; the host serves exactly this policy.
        check('mta-sts-record', 'ok', '_mta-sts.pages.example announces policy id OLD1', { id: 'OLD1' }),
        check('tlsrpt-record', 'ok', '_smtp._tls.pages.example sends reports to ...', {
          rua: ['mailto:tlsrpt@reports.example', 'https://other.example/r'],
        }),
        check('policy', 'ok', 'mta-sts.pages.example serves mode testing', {}, policyText(policy)),
      ],
    });

    const list = await mtaStsPage(ctx({}));
    expect(list.tables![0]!.rows.map((p: StsPolicy) => p.domain)).toContain('pages.example');
    expect(list.body.toString()).toContain('href="/ui/mta-sts/pages.example"');

    // No certificate of mta-sts.pages.example reported yet: _mta-sts waits, the other two can go out.
    const early = await mtaStsDomainPage(ctx({ domain: 'pages.example' }));
    expect((early.tables![0]!.rows as RecordState[]).map((r) => r.state)).toEqual([
      'not yet',
      'published',
      'published',
    ]);
    expect(text(early.body)).toContain('Certificate of mta-sts.pages.example unknown no policy host has reported');
    const certificate = (state: CertificateState, at: number, validUntil = EPOCH): CertificateRow => ({
      host: 'mta-sts.pages.example',
      state,
      valid_from: EPOCH,
      valid_until: validUntil,
      issuer: state === 'issued' ? 'Pebble Intermediate CA' : '',
      reason: state === 'pending' ? 'being ordered from the ACME CA' : '',
      checked_at: toClickHouseDateTime(new Date(NOW.getTime() - at)),
      version: NOW.getTime() - at,
    });
    await writeCertificates(store.ch, [certificate('pending', 60_000)]);
    const pending = await mtaStsDomainPage(ctx({ domain: 'pages.example' }));
    expect(text(pending.body)).toMatch(
      /pending being ordered from the ACME CA\. Senders that fetch the policy now fail TLS/,
    );
    expect((await mtaStsPage(ctx({}))).body.toString()).toContain('badge-unknown">pending<');
    await writeCertificates(store.ch, [
      certificate('issued', 30_000, toClickHouseDateTime(new Date(NOW.getTime() + 90 * 86400_000))),
    ]);

    const page = await mtaStsDomainPage(ctx({ domain: 'pages.example' }));
    expect(text(page.body)).toContain('Issued by Pebble Intermediate CA, valid until');
    expect(page.tables![1]!.rows.map((r: CertificateRow) => r.state)).toEqual(['issued', 'pending']);
    const records = page.tables![0]!.rows as RecordState[];
    expect(records.map((r) => [r.name, r.state])).toEqual([
      ['_mta-sts.pages.example TXT', 'wrong'],
      ['_smtp._tls.pages.example TXT', 'published'],
      ['mta-sts.pages.example', 'published'],
    ]);
    expect(records[0]!.record).toBe(`_mta-sts.pages.example. IN TXT "v=STSv1; id=${policy.policy_id}"`);
    expect(records[0]!.change).toContain(`set id=${policy.policy_id}`);
    expect(records[2]!.record).toBe('mta-sts.pages.example. IN CNAME policy.reports.example.');
    const shown = text(page.body);
    expect(page.body.toString()).toContain(policyText(policy).replace(/\r\n/g, '\n').trim().split('\n')[0]!);
    expect(shown).toContain('mx: *.pages.example');
    expect(shown).toMatch(/Not yet safe to switch to enforce: 3 failed sessions .* mx1\.pages\.example \(Google, 3\)/);
    expect(shown).toContain('Set enforce');
    expect(shown).not.toContain('Set testing'); // the mode it has

    // Without a live check every record is "not checked"; the policy host's answer decides its row, not its status.
    const served = check('policy', 'ok', 'serves mode enforce', {}, 'version: STSv1\r\nmode: enforce\r\n');
    const issued = certificateView('mta-sts.pages.example', certificate('issued', 0, '2099-01-01 00:00:00'), NOW);
    expect(recordStates(policy, PUBLISH, [], issued).map((r) => r.state)).toEqual([
      'not checked',
      'not checked',
      'not checked',
    ]);
    expect(recordStates(policy, PUBLISH, [served], issued)[2]!.state).toBe('wrong');

    // Operators only, like the API's /v1/mta-sts.
    await expect(mtaStsPage(ctx({}, new Set(['pages.example'])))).rejects.toThrow(/operators/);
    await expect(mtaStsDomainPage(ctx({ domain: 'nothosted.example' }))).rejects.toThrow(/not hosted/);
  });
});

describe("the dashboard's MTA-STS forms", () => {
  it('host, change, set the mode and stop hosting a domain with the API’s checks; what a person typed never throws', async () => {
    const deps = {
      db: createDb(store.ch, { timeoutSeconds: 30, maxRows: 1_000_000 }),
      clickhouse: store.ch,
      readinessDays: 14,
      by: 'operator',
      now: NOW,
    };
    const act = (action: StsAction, domain: string, fields: Record<string, string | string[]>) =>
      stsAction(action, domain, fields, deps);
    expect(
      await act('policy', 'Forms.Example.', {
        mode: 'testing',
        mx: 'mx1.forms.example,\n*.forms.example',
        maxAge: '86400',
      }),
    ).toEqual({ to: '/ui/mta-sts/forms.example' });
    const hosted = await findPolicy(store.ch, 'forms.example');
    expect([hosted?.mode, hosted?.mx, hosted?.max_age]).toEqual([
      'testing',
      ['mx1.forms.example', '*.forms.example'],
      86400,
    ]);
    // Refusals as the API's, each with the reason and the way back.
    expect(await act('policy', 'forms.example', { mx: 'mx 1..forms', maxAge: '86400' })).toMatchObject({
      status: 400,
      message: expect.stringMatching(/^MX patterns: an MX host name or \*\.domain pattern/),
      back: '/ui/mta-sts/forms.example',
    });
    expect(await act('policy', 'not a domain', { mx: 'mx.example' })).toMatchObject({
      status: 400,
      back: '/ui/mta-sts',
    });
    expect(await act('policy', 'forms.example', { maxAge: '60' })).toMatchObject({ status: 400 });
    expect(await act('mode', 'forms.example', { mode: 'enforce' })).toMatchObject({
      status: 409,
      message: expect.stringMatching(/publish mode testing first/),
    });
    expect(await act('mode', 'unhosted.example', { mode: 'none' })).toMatchObject({ status: 404 });
    expect(await act('adopt', 'forms.example', {})).toMatchObject({
      status: 409,
      message: expect.stringMatching(/hosted already/),
    });
    expect(await act('adopt', 'unknown.example', {})).toMatchObject({ status: 404 });
    // The MX patterns changed: the mode stays, the id is new.
    await act('policy', 'forms.example', { mx: 'mx2.forms.example', maxAge: '86400' });
    const changed = await findPolicy(store.ch, 'forms.example');
    expect([changed?.mode, changed?.mx]).toEqual(['testing', ['mx2.forms.example']]);
    expect(changed?.policy_id).not.toBe(hosted?.policy_id);
    expect(await act('remove', 'forms.example', {})).toMatchObject({
      status: 409,
      message: expect.stringMatching(/mode none first/),
    });
    expect(await act('mode', 'forms.example', { mode: 'none' })).toEqual({ to: '/ui/mta-sts/forms.example' });
    expect(await act('remove', 'forms.example', {})).toMatchObject({
      status: 409,
      message: expect.stringMatching(/may hold the previous policy until/),
    });
    // Once the previous max_age has passed.
    const later = await stsAction(
      'remove',
      'forms.example',
      {},
      { ...deps, now: new Date(NOW.getTime() + 2 * 86400_000) },
    );
    expect(later).toEqual({ to: '/ui/mta-sts' });
    expect(await findPolicy(store.ch, 'forms.example')).toBeUndefined();
  });
});
