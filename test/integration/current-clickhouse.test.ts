// Every query the API, the alert evaluator, replay-rejects and docs/analysts-sql.md's analysts run, on ClickHouse 18.16 (the
// suite's server) and on current ClickHouse (chdb, in process), over the same rows: every migration applies on both
// and every answer is the same. The rows include duplicate deliveries, a report re-sent with other figures, a mail
// and an HTTPS copy of one report and rejects; merges have not necessarily run.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClickHouseClient } from '../../services/common/clickhouse.ts';
import { listAlerts } from '../../services/api/alerts.ts';
import { listForwards } from '../../services/api/forwards.ts';
import { evaluateAlerts, type ReserveSeq } from '../../services/scheduler/alert-evaluation.ts';
import { evaluateIncidents } from '../../services/scheduler/incident-evaluation.ts';
import { RULES } from '../../services/scheduler/rules/index.ts';
import type { RuleName } from '../../services/scheduler/rules/rule-kit.ts';
import { FAILURE_DIMENSIONS, domainParam } from '../../services/api/params.ts';
import {
  createDb,
  domainDaily,
  domainSummary,
  failureBreakdown,
  getReport,
  listDomains,
  listRejects,
  listReports,
  type Db,
} from '../../services/api/queries.ts';
import type { Principal } from '../../services/api/auth.ts';
import { processReportJob } from '../../services/worker/process-job.ts';
import { rejectDates, rejectPageSql, rejectRowsSql } from '../../deploy/scripts/replay-rejects-sql.ts';
import { emptyTableRows, type ReprocessedReportRow, type TableRows } from '../../schemas/rows.ts';
import { NOT_COUNTED } from '../../services/worker/batch-writer.ts';
import { openChdb, type Chdb } from '../helpers/chdb.ts';
import type { PageContext } from '../../services/api/ui/context.ts';
import type { Page } from '../../services/api/ui/layout.ts';
import { domainPage } from '../../services/api/ui/pages/domain.ts';
import { domainsPage } from '../../services/api/ui/pages/domains.ts';
import { issuesPage } from '../../services/api/ui/pages/incidents.ts';
import { alertsPage, rejectsPage, reportersPage } from '../../services/api/ui/pages/others.ts';
import { reportPage, reportsPage } from '../../services/api/ui/pages/reports.ts';
import { corpusReports } from '../helpers/corpus.ts';
import { mtaStsDomainPage, mtaStsPage } from '../../services/api/ui/pages/mta-sts.ts';
import { checksPage } from '../../services/api/ui/pages/checks.ts';
import { forwardsPage } from '../../services/api/ui/pages/forwards.ts';
import { queryRows, testConfig, testDatabase, testWriter } from '../helpers/env.ts';

const config = testConfig();
let ch: ClickHouseClient;
let old: Db;
let current: Chdb;
let dir: string;
const all: Principal = { name: 'all', domains: undefined };
type PageFn = (ctx: PageContext) => Promise<Page>;
const wide = { from: '2016-01-01', to: '2026-12-31' };
const now = new Date('2026-11-20T12:00:00Z');

/** The rows of one delivery, processed at a given time. */
function rows(body: Buffer | string, receiptId: string, processedAt: number, mail?: 'pass' | 'none'): TableRows {
  const job = {
    v: 1,
    receiptId,
    receivedAt: new Date(processedAt - 60_000).toISOString(),
    channel: mail ? 'smtp' : 'https',
    bodyBase64: Buffer.from(body).toString('base64'),
    ...(mail
      ? { smtp: { envelopeFrom: 'reports@mail.example', dkim: { result: mail, submitterAligned: mail === 'pass' } } }
      : {}),
  };
  return processReportJob(job, receiptId, { maxDecompressedBytes: 1 << 24 }, new Date(processedAt)).rows;
}

const recent = (
  domain: string,
  day: string,
  ok: number,
  failed: number,
  mode = 'enforce',
  type = 'certificate-expired',
) =>
  JSON.stringify({
    'organization-name': 'Recent Org',
    'date-range': { 'start-datetime': `${day}T00:00:00Z`, 'end-datetime': `${day}T23:59:59Z` },
    'contact-info': 'x@recent.example',
    'report-id': `recent-${domain}-${day}`,
    policies: [
      {
        policy: {
          'policy-type': 'sts',
          'policy-domain': domain,
          'policy-string': ['version: STSv1', `mode: ${mode}`, `mx: mx.${domain}`, 'max_age: 86400'],
        },
        summary: { 'total-successful-session-count': ok, 'total-failure-session-count': failed },
        'failure-details': failed
          ? [{ 'result-type': type, 'failed-session-count': failed, 'failure-reason-code': 'x' }]
          : [],
      },
    ],
  });

/** The same rows in both: deliveries, duplicates, a re-sent report, a mail copy, rejects, recent days for alerts. */
function dataset(): TableRows[] {
  let t = Date.parse('2026-11-19T00:00:00Z');
  const out: TableRows[] = [];
  const corpus = corpusReports();
  corpus.forEach((r, i) => out.push(rows(r.body, `c-${i}`, (t += 1000))));
  // Duplicates: the first five again, over HTTPS and by mail.
  corpus.slice(0, 5).forEach((r, i) => out.push(rows(r.body, `dup-${i}`, (t += 1000), i % 2 ? 'pass' : 'none')));
  // A report re-sent under its identity with other figures, over HTTPS: a conflict, kept and not counted.
  const first = JSON.parse(corpus[0]!.json) as { policies: Array<{ summary: Record<string, number> }> };
  first.policies[0]!.summary['total-successful-session-count'] = 777;
  out.push(rows(JSON.stringify(first), 'resent', (t += 1000)));
  // And one only POSTed before, re-sent by a DKIM-aligned mail: it outranks the POSTed copy and is counted instead (a
  // marked report).
  const second = JSON.parse(corpus[5]!.json) as { policies: Array<{ summary: Record<string, number> }> };
  second.policies[0]!.summary['total-successful-session-count'] = 4242;
  out.push(rows(JSON.stringify(second), 'resent-mail', (t += 1000), 'pass'));
  out.push(rows('not json', 'reject-1', (t += 1000)));
  out.push(rows(Buffer.from([0x1f, 0x8b, 1, 2]), 'reject-2', (t += 1000)));
  // A reject by mail: the Rejects page finds its contact in the receipt's envelope sender.
  out.push(rows('not json either', 'reject-3', (t += 1000), 'none'));
  // daily.example: seven days, then silence (reporter-stopped), failures on the last (failure-rate, enforce-failure).
  for (let d = 9; d <= 18; d++) {
    const day = `2026-11-${String(d).padStart(2, '0')}`;
    if (d < 16) out.push(rows(recent('daily.example', day, 1000, d === 15 ? 300 : 0), `daily-${d}`, (t += 1000)));
    out.push(
      rows(
        recent('testing.example', day, 50, 50, 'testing', d > 16 ? 'sts-policy-fetch-error' : 'validation-failure'),
        `testing-${d}`,
        (t += 1000),
      ),
    );
  }
  return out;
}

beforeAll(async () => {
  ch = await testDatabase(config);
  old = createDb(ch, { timeoutSeconds: 30, maxRows: 100_000 });
  dir = await mkdtemp(join(tmpdir(), 'chdb-'));
  current = await openChdb(join(dir, 'session'), config.CLICKHOUSE_DATABASE);
  const writer = testWriter(config, ch, { maxRows: 100_000, maxWaitMs: 5 });
  for (const r of dataset()) {
    // The worker's decision on 18.16, its outcome written alike to chdb: a copy not counted keeps only these tables.
    const outcome = await writer.write(r);
    if (outcome === 'stored') await current.write(r);
    else {
      const kept = emptyTableRows();
      for (const t of NOT_COUNTED) (kept[t] as object[]) = r[t];
      kept.receipts = r.receipts.map((x) => ({ ...x, outcome: outcome === 'conflict' ? 'conflict' : 'stored' }));
      await current.write(kept);
    }
  }
  await writer.close();
  // And its marks of the reports stored again with other content.
  await current.write({
    ...emptyTableRows(),
    reprocessed_reports: await queryRows<ReprocessedReportRow>(
      ch,
      'SELECT policy_domain, toString(day) AS day, report_key FROM reprocessed_reports',
    ),
  });
}, 120_000);

afterAll(async () => {
  current.close();
  await rm(dir, { recursive: true, force: true });
  await ch.command({ query: `DROP DATABASE IF EXISTS ${config.CLICKHOUSE_DATABASE}` });
  await ch.close();
});

/** The same call on both servers, answers equal. */
async function same<T>(call: (db: Db) => Promise<T>): Promise<T> {
  const [a, b] = [await call(old), await call(current.db)];
  expect(b).toEqual(a);
  return a;
}

/** A dashboard page rendered over `db` for a token that sees every domain (ECharts' numbered classes made alike). */
async function render(db: Db, page: PageFn, path: string, params: Record<string, string> = {}): Promise<string> {
  const out = await page({
    db,
    principal: all,
    query: new URL(path, 'http://x').searchParams,
    params,
    threshold: 0.05,
    readinessDays: 14,
    incidents: { resolveDays: 3, stoppedAfterDays: 3, regularShare: 0.6, windowDays: 120 },
    now,
    publish: { rua: 'mailto:tlsrpt@reports.example', hostTarget: 'policy.reports.example' },
    postureDomains: [],
  });
  // ECharts numbers each chart's style classes by instance.
  return out.body.toString().replace(/zr\d+-cls-\d+/g, 'zr-cls');
}

/** The same page on both servers, alike; its HTML. */
async function both(page: PageFn, path: string, params?: Record<string, string>): Promise<string> {
  const [a, b] = [await render(old, page, path, params), await render(current.db, page, path, params)];
  expect(b, path).toEqual(a);
  return a;
}

describe(`ClickHouse 18.16 and current ClickHouse give the same answers`, () => {
  it('runs a current engine', () => expect(Number(current.version.split('.')[0])).toBeGreaterThanOrEqual(24));

  it('the API: domains, and per domain its summary, daily series and every failure breakdown', async () => {
    const { domains } = await same((db) => listDomains(db, all, wide, 0.05));
    expect(domains.length).toBeGreaterThan(10);
    // Pages by name and a prefix search, the same on both.
    const first = await same((db) => listDomains(db, all, wide, 0.05, { limit: 3 }));
    await same((db) => listDomains(db, all, wide, 0.05, { limit: 3, cursor: { domain: first.domains[2]!.domain } }));
    await same((db) => listDomains(db, all, wide, 0.05, { limit: 100, prefix: 'd' }));
    for (const { domain, latestDay } of domains) {
      const range = { from: new Date(Date.parse(latestDay) - 5 * 86400_000).toISOString().slice(0, 10), to: latestDay };
      await same((db) => domainSummary(db, domain, range));
      await same((db) => domainDaily(db, domain, range));
      for (const by of Object.keys(FAILURE_DIMENSIONS) as Array<keyof typeof FAILURE_DIMENSIONS>)
        await same((db) => failureBreakdown(db, domain, range, by, 3));
    }
  });

  it('the API: report pages, every report in full (also for a limited token), rejects', async () => {
    const keys: string[] = [];
    let cursor: { day: string; key: string } | undefined;
    do {
      const page = await same((db) => listReports(db, all, wide, { limit: 7, cursor }));
      keys.push(...page.reports.map((r) => r.reportKey));
      cursor = page.next ? (JSON.parse(Buffer.from(page.next, 'base64url').toString()) as typeof cursor) : undefined;
    } while (cursor);
    expect(keys.length).toBeGreaterThan(20);
    const limited: Principal = { name: 'l', domains: new Set(['daily.example', 'random.net']) };
    await same((db) => listReports(db, limited, wide, { limit: 100, domain: 'daily.example' }));
    for (const key of keys) {
      await same((db) => getReport(db, all, key, { detailLimit: 2 }));
      await same((db) => getReport(db, limited, key, { detailLimit: 100 }));
    }
    const rejects = await same((db) => listRejects(db, wide, { limit: 10 }));
    expect(rejects.rejects).toHaveLength(3);
  });

  it('the alert evaluator finds and numbers the same alerts, and a poller reads them the same', async () => {
    const cfg = {
      ...config,
      ALERT_RULES: Object.keys(RULES) as RuleName[],
      ALERT_LOOKBACK_DAYS: 30,
      ALERT_MIN_SESSIONS: 100,
    };
    const counter = (): ReserveSeq => {
      let n = 0;
      return async (count) => ((n += count), n - count + 1);
    };
    const [seqOld, seqCurrent] = [counter(), counter()];
    const a = await evaluateAlerts(old, ch, cfg, seqOld, now);
    const b = await evaluateAlerts(current.db, current.client, cfg, seqCurrent, now);
    expect(b).toEqual(a);
    expect(new Set(a.map((x) => x.rule))).toEqual(
      new Set(['failure-rate', 'enforce-failure', 'new-result-type', 'reporter-stopped', 'sts-policy-fetch-error']),
    );
    await same((db) => listAlerts(db, all, 0, 1000));
    expect(await evaluateAlerts(current.db, current.client, cfg, seqCurrent, now)).toEqual([]);
  });

  it('the forwards list: each delivery in its newest state, by state, within the days asked', async () => {
    const at = (hoursAgo: number): string =>
      new Date(Date.now() - hoursAgo * 3600_000).toISOString().slice(0, 19).replace('T', ' ');
    const row = (id: string, state: string, hoursAgo: number, version: number) => ({
      forward_id: id.repeat(32),
      report_key: 'f'.repeat(32),
      receipt_id: `receipt-${id}`,
      destination: 'https://collector.example/…',
      state,
      attempts: version,
      error: state === 'delivered' ? '' : `collector.example answered 503 (${version})`,
      at: at(hoursAgo),
      version,
    });
    const rows = [
      // Retried, then gave up; delivered at once; failed, then sent again by hand and delivered; failed 40 days ago.
      ...[row('a', 'retrying', 5, 1), row('a', 'failed', 4, 2)],
      row('b', 'delivered', 3, 1),
      ...[row('c', 'failed', 6, 1), row('c', 'delivered', 2, 2)],
      row('d', 'failed', 40 * 24, 1),
    ];
    await ch.insert({ table: 'forward_deliveries', values: rows, format: 'JSONEachRow' });
    await current.client.insert({ table: 'forward_deliveries', values: rows, format: 'JSONEachRow' });
    const ids = async (state?: 'failed' | 'delivered' | 'retrying', days = 30) =>
      (await same((db) => listForwards(db, { state, days, limit: 100 }))).forwards.map((f) => f.id[0]);
    expect(await ids()).toEqual(['c', 'b', 'a']);
    expect(await ids('failed')).toEqual(['a']);
    expect(await ids('delivered')).toEqual(['c', 'b']);
    expect(await ids('retrying')).toEqual([]);
    expect(await ids('failed', 60)).toEqual(['a', 'd']);
    const [a] = (await same((db) => listForwards(db, { state: 'failed', days: 30, limit: 1 }))).forwards;
    expect(a).toMatchObject({ state: 'failed', attempts: 2, error: 'collector.example answered 503 (2)' });
    // The dashboard's Forwards page alike on both, with Send again for the failed one only.
    const html = await both(forwardsPage, '/ui/forwards?state=failed');
    expect(html.match(/Send again/g)).toHaveLength(1);
    expect(html).toContain(`action="/ui/forwards/${'a'.repeat(32)}/retry"`);
  });

  it('replay-rejects pages and rows', async () => {
    const dates = rejectDates('2016-01-01', '2026-12-31');
    const page = await same((db) =>
      db.rows<{ receipt_id: string }>(rejectPageSql('', ['not-json', 'bad-gzip'], dates)),
    );
    expect(page.map((r) => r.receipt_id)).toEqual(['reject-1', 'reject-2', 'reject-3']);
    await same((db) => db.rows(rejectRowsSql(page.map((r) => r.receipt_id))));
  });

  it('the dashboard: every page over rejects, twins and re-sent reports', async () => {
    const range = 'from=2025-11-21&to=2026-11-20';
    const { domains } = await listDomains(old, all, wide, 0.05);
    const { reports } = await listReports(old, all, wide, { limit: 1000 });
    await both(domainsPage, `/ui/domains?${range}`);
    // The pages of domains a URL can name (the corpus has one that is no domain name).
    for (const { domain, latestDay } of domains.filter((d) => domainParam.safeParse(d.domain).success)) {
      const from = new Date(Date.parse(latestDay) - 300 * 86400_000).toISOString().slice(0, 10);
      await both(domainPage, `/ui/domains/x?from=${from}&to=${latestDay}`, { domain });
    }
    await both(reportsPage, `/ui/reports?${range}`);
    const pages = [];
    for (const { reportKey } of reports) pages.push(await both(reportPage, '/ui/reports/x', { key: reportKey }));
    // The report POSTed again with other figures shows that copy as a conflict, counted nowhere; the one mailed again
    // shows the POSTed copy it replaced.
    const conflicted = pages.filter((p) => p.includes('are counted nowhere'));
    expect(conflicted).toHaveLength(2);
    expect(conflicted.some((p) => /other figures: not counted<\/td>(?:(?!<\/tr>).)*<td>resent<\/td>/s.test(p))).toBe(
      true,
    );
    expect(conflicted.some((p) => /other figures: not counted<\/td>(?:(?!<\/tr>).)*<td>c-5<\/td>/s.test(p))).toBe(true);
    await both(alertsPage, `/ui/alerts?${range}`);
    // Before the scheduler stored any incident, the page does not claim that nothing fails.
    expect(await render(old, issuesPage, '/ui/issues?from=2026-08-01&to=2026-11-20')).toMatch(/No incidents yet/);
    // The incidents the scheduler stores, derived and stored alike on both.
    const counter = (): ReserveSeq => {
      let n = 0;
      return async (count) => ((n += count), n - count + 1);
    };
    const evaluated = await evaluateIncidents(old, ch, config, counter(), now);
    const evaluatedCurrent = await evaluateIncidents(current.db, current.client, config, counter(), now);
    expect(evaluatedCurrent.incidents).toEqual(evaluated.incidents);
    expect(evaluated.incidents.length).toBeGreaterThan(0);
    const issues = await both(issuesPage, '/ui/issues?from=2026-08-01&to=2026-11-20');
    expect(issues).toMatch(/class="incident severity-/);
    await both(reportersPage, `/ui/reporters?${range}`);
    const rejectsHtml = await both(rejectsPage, '/ui/rejects?from=2016-01-01&to=2026-12-31');
    // Each reject listed, the mail's with its envelope sender as the contact.
    for (const id of ['reject-1', 'reject-2', 'reject-3']) expect(rejectsHtml).toContain(id);
    expect(rejectsHtml).toContain('reports@mail.example');
  });

  it('the MTA-STS pages and the checks page: hosted policies, certificate states, check runs', async () => {
    const policy = {
      domain: 'testing.example',
      mode: 'testing',
      mx: ['mx.testing.example'],
      max_age: 86400,
      policy_id: '20261119abc',
      changed_at: '2026-11-19 08:00:00',
      serve_until: '1970-01-01 00:00:00',
      removed: 0,
      changed_by: 'operator',
      acknowledged: '[]',
      version: 1,
    };
    const certificates = ['pending', 'issued'].map((state, i) => ({
      host: 'mta-sts.testing.example',
      state,
      valid_from: i ? '2026-11-19 08:01:00' : '1970-01-01 00:00:00',
      valid_until: i ? '2027-02-17 08:01:00' : '1970-01-01 00:00:00',
      issuer: i ? 'R11' : '',
      reason: i ? '' : 'being ordered from the ACME CA',
      checked_at: `2026-11-19 08:0${i}:00`,
      version: i + 1,
    }));
    const checks = ['2026-11-19 06:00:00', '2026-11-19 12:00:00', '2026-11-20 00:00:00'].flatMap((at, i) =>
      [
        ['mta-sts-record', 'testing.example', 'ok'],
        ['mx-tls', 'mx.testing.example', i === 1 ? 'critical' : 'ok'],
      ].map(([check_name, subject, severity]) => ({
        domain: 'testing.example',
        checked_at: at,
        check_name,
        subject,
        severity,
        summary: `${subject} ${severity}`,
        detail: '{}',
        policy_id: '',
        policy_text: '',
      })),
    );
    for (const client of [ch, current.client]) {
      await client.insert({ table: 'sts_policies', values: [policy], format: 'JSONEachRow' });
      await client.insert({ table: 'sts_certificates', values: certificates, format: 'JSONEachRow' });
      await client.insert({ table: 'posture_checks', values: checks, format: 'JSONEachRow' });
    }
    expect(await both(mtaStsPage, '/ui/mta-sts')).toContain('badge-ok">issued<');
    const domain = { domain: 'testing.example' };
    expect(await both(mtaStsDomainPage, '/ui/mta-sts/x', domain)).toContain('Issued by R11');
    const checksHtml = await both(checksPage, '/ui/checks/x', domain);
    expect(checksHtml).toContain('Each finding over the last 3 runs');
    await both(checksPage, '/ui/checks/x?run=2026-11-19+12%3A00%3A00', domain);
  });

  it('the analyst queries of docs/analysts-sql.md', async () => {
    const section = await readFile(resolve(import.meta.dirname, '../../docs/analysts-sql.md'), 'utf8');
    const queries = [...section.matchAll(/```sql\n([\s\S]*?)```/g)].map((m) => m[1]!.trim());
    expect(queries.length).toBeGreaterThanOrEqual(10);
    for (const sql of queries) {
      const sorted = async (db: Db) => (await db.rows<object>(sql)).map((r) => JSON.stringify(r)).sort();
      const [a, b] = [await sorted(old), await sorted(current.db)];
      expect(b, sql).toEqual(a);
    }
  });
});
