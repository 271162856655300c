// The dashboard in a real browser (Debian's chromium, driven by playwright-core) against the api service as it runs:
// sign in, find the failing domain, read the diagnosis of its worst failure, open a report (a real corpus report
// too), export CSV, sign out; a domain-limited token cannot reach another domain's pages; no console errors.
// Screenshots of each page go to test-results/dashboard/.
import { mkdir, readFile } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';
import { resolve } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../dev/stack.ts';
import type { ClickHouseClient } from '../../services/common/clickhouse.ts';
import { queryRows, storeDirectly, testConfig, testDatabase } from '../helpers/env.ts';
import { configEnv, startService, untilAnswering, type RunningService } from '../helpers/services.ts';
import { dayName } from '../../services/api/ui/pages/incidents.ts';
import { writeCertificates } from '../../services/common/sts-certificates.ts';

const ADMIN = 'ui-admin-token-1';
const LIMITED = 'ui-limited-token-1';
const config = testConfig({
  API_TOKENS: JSON.stringify([
    { name: 'operator', token: ADMIN },
    { name: 'ok-owner', token: LIMITED, domains: ['ok.example'] },
  ]),
  // The evaluator runs, as in production, so the alerts page has something to show (the per-day rules too).
  ALERT_EVAL_INTERVAL_MS: '500',
  ALERT_RULES: 'failure-rate,new-result-type,enforce-failure,reporter-stopped,sts-policy-fetch-error,posture',
});
const shots = resolve(import.meta.dirname, '../../test-results/dashboard');
const day = (ago: number): string => new Date(Date.now() - ago * 86400_000).toISOString().slice(0, 10);
let ch: ClickHouseClient;
let api: RunningService;
// The alerts the alerts page shows are the scheduler's.
let scheduler: RunningService;
let base: string;
let browser: Browser;
const consoleErrors: string[] = [];

function report(org: string, domain: string, d: string, mode: string, ok: number, details: object[] = []) {
  const failed = details.reduce((a, x) => a + (x as { 'failed-session-count': number })['failed-session-count'], 0);
  return JSON.stringify({
    'organization-name': org,
    'date-range': { 'start-datetime': `${d}T00:00:00Z`, 'end-datetime': `${d}T23:59:59Z` },
    'contact-info': `tlsrpt@${org.toLowerCase().replace(/\W+/g, '')}.example`,
    'report-id': `${org}-${domain}-${d}`,
    policies: [
      {
        policy: {
          'policy-type': 'sts',
          'policy-domain': domain,
          'policy-string': [
            'version: STSv1',
            `mode: ${mode}`,
            `mx: mx1.${domain}`,
            `mx: mx2.${domain}`,
            'max_age: 86400',
          ],
          'mx-host': [`mx1.${domain}`, `mx2.${domain}`],
        },
        summary: { 'total-successful-session-count': ok, 'total-failure-session-count': failed },
        'failure-details': details,
      },
    ],
  });
}
const expired = (count: number) => ({
  'result-type': 'certificate-expired',
  'sending-mta-ip': '209.85.220.41',
  'receiving-mx-hostname': 'mx2.failing.example',
  'receiving-ip': '198.51.100.7',
  'failed-session-count': count,
});

async function newPage(): Promise<Page> {
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1440, height: 900 } });
  const page = await context.newPage();
  // Pages answered 401/403/404 on purpose log "Failed to load resource" for the document itself; any other error,
  // and any sub-resource (style sheet, icon) that failed, counts.
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource'))
      consoleErrors.push(`${page.url()}: ${m.text()}`);
  });
  page.on('response', (r) => {
    if (r.status() >= 400 && r.request().resourceType() !== 'document') consoleErrors.push(`${r.url()}: ${r.status()}`);
  });
  page.on('pageerror', (e) => consoleErrors.push(`${page.url()}: ${e.message}`));
  return page;
}

async function signIn(page: Page, token: string, path = '/ui/'): Promise<void> {
  await page.goto(`${base}${path}`);
  expect(new URL(page.url()).pathname).toBe('/ui/sign-in');
  await page.getByLabel('API token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL((u) => u.pathname !== '/ui/sign-in');
}

/** Text as a reader sees it: white space collapsed. */
const text = (s: string | null): string => (s ?? '').replace(/\s+/g, ' ');
/** How much wider than its window the page is (0: it fits; wide tables scroll inside their own box). */
const overflow = async (page: Page): Promise<number> =>
  Number(await page.evaluate('document.documentElement.scrollWidth - window.innerWidth'));
/** A screenshot of a page that fits its window, at 1440 px and on a phone's 390 px. */
async function shot(page: Page, name: string): Promise<void> {
  expect(await overflow(page), `${name} at 1440 px`).toBeLessThanOrEqual(0);
  await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  expect(await overflow(page), `${name} at 390 px`).toBeLessThanOrEqual(0);
  await page.setViewportSize({ width: 1440, height: 900 });
}

beforeAll(async () => {
  await mkdir(shots, { recursive: true });
  ch = await testDatabase(config);
  let n = 0;
  const put = (json: string) => storeDirectly(ch, gzipSync(json), `ui-${++n}`);
  for (let ago = 1; ago <= 10; ago++) {
    await put(report('Google', 'failing.example', day(ago), 'enforce', 900, ago <= 3 ? [expired(300)] : []));
    await put(report('Microsoft', 'testing.example', day(ago), 'testing', 400, ago === 2 ? [expired(12)] : []));
    await put(report('Google', 'ok.example', day(ago), 'enforce', 250));
  }
  // Real reports, as their senders wrote them: Mail.ru's (two failure details) and the RFC's example.
  const fixtures = resolve(import.meta.dirname, '../fixtures/real');
  await storeDirectly(
    ch,
    await readFile(`${fixtures}/domainaware__parsedmarc__samples_smtp_tls_mail.ru.json`),
    'ui-mailru',
  );
  await storeDirectly(ch, await readFile(`${fixtures}/kravietz__tlsrpt-rs__tlsrpt_fixtures_rfc8460.json`), 'ui-rfc');
  // Microsoft's DANE report: a TLSA record string that does not break by itself.
  await storeDirectly(
    ch,
    await readFile(`${fixtures}/sebastka__tlsrpt__test_fixtures_microsoft-tlsa-sts.json`),
    'ui-microsoft-tlsa',
  );
  const port = await freePort();
  api = startService('api', configEnv(config, { API_PORT: port, API_HOST: '127.0.0.1', LOG_LEVEL: 'warn' }));
  scheduler = startService('scheduler', configEnv(config, { SCHEDULER_METRICS_PORT: 0, LOG_LEVEL: 'warn' }));
  // localhost: a secure context for Chromium, so it keeps the Secure cookie over plain HTTP in the test.
  base = `http://localhost:${port}`;
  await untilAnswering(api, 'api up', `http://127.0.0.1:${port}/healthz`);
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
}, 180_000);

afterAll(async () => {
  await browser?.close();
  expect(await api.stop()).toBe(0);
  expect(await scheduler.stop()).toBe(0);
  await ch.command({ query: `DROP DATABASE IF EXISTS ${config.CLICKHOUSE_DATABASE}` });
  await ch.close();
});

describe('the dashboard in a browser', () => {
  it('signs in, shows the failing domain, its worst failure diagnosed, a report, a CSV export; signs out', async () => {
    const page = await newPage();
    await signIn(page, ADMIN);
    const cookies = await page.context().cookies();
    expect(cookies).toEqual([
      expect.objectContaining({ name: 'tlsrpt_session', httpOnly: true, secure: true, sameSite: 'Strict' }),
    ]);
    // Issues, the landing page: what fails now, since when, how bad; acknowledged from there.
    await expect.poll(() => new URL(page.url()).pathname).toBe('/ui/issues');
    // The scheduler derives and stores the incidents (every 500 ms here).
    await expect
      .poll(async () => {
        await page.reload();
        return page.getByRole('article').count();
      })
      .toBe(2);
    const incident = page.getByRole('article', { name: 'failing.example: certificate-expired at mx2.failing.example' });
    const told = text(await incident.textContent());
    expect(told).toMatch(new RegExp(`since ${dayName(day(3))} \\(4 days\\), still failing`));
    expect(told).toMatch(/900 failed sessions \(300 a day, 25\.0% of the domain's sessions those days\)/);
    expect(told).toMatch(/Reported by Google\. MTA-STS enforce\. Severity high; open\./);
    expect(await page.getByRole('article').count()).toBe(2);
    await shot(page, 'issues');
    await incident.getByRole('button', { name: 'Acknowledge' }).click();
    await page.waitForURL(/\/ui\/issues/);
    expect(text(await incident.textContent())).toMatch(/Severity high; acknowledged\./);
    // Another site cannot act for the signed-in operator.
    const href = await incident
      .getByRole('link', { name: 'certificate-expired at mx2.failing.example' })
      .getAttribute('href');
    const forged = await page.request.post(`${base}${href}/resolve`, {
      headers: { origin: 'https://evil.example' },
      form: { next: '/ui/issues' },
      maxRedirects: 0,
    });
    expect(forged.status()).toBe(403);
    await incident.getByRole('link', { name: 'certificate-expired at mx2.failing.example' }).click();
    await page.waitForURL(/\/ui\/incidents\/[0-9a-f]{20}\.failing\.example$/);
    expect(await page.locator('figure.chart svg').count()).toBe(1);
    expect(text(await page.getByRole('table', { name: 'Events' }).textContent())).toMatch(/acknowledged.*operator/);
    expect(
      await page
        .getByRole('table', { name: /Reports that listed it/ })
        .locator('tbody tr')
        .count(),
    ).toBe(3);
    await shot(page, 'incident');

    // Domains: the failing one is marked failing, with its reporters and MTA-STS mode.
    await page.getByRole('link', { name: 'Domains' }).click();
    await page.waitForURL(/\/ui\/domains$/);
    const row = page.getByRole('row', { name: /failing\.example/ });
    await expect
      .poll(() => row.textContent())
      // The period's figures: 7 days ending on the latest report day (yesterday), 7 reports: 3 × 300 failed,
      // 7 × 900 successful; then the latest day's rate.
      .toMatch(/failing.*900.*6,300.*12\.5%.*25\.0%.*Google.*enforce.*mx1\.failing\.example/s);
    expect(await page.getByRole('row', { name: /ok\.example/ }).textContent()).toMatch(/ok/);
    await shot(page, 'domains');

    // Its CSV export, as a download.
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('link', { name: 'CSV' }).first().click(),
    ]);
    const csv = await readFile(await download.path(), 'utf8');
    const lines = csv.trim().split('\r\n');
    expect(lines[0]).toMatch(
      /^Domain,Status,Failed sessions,Successful sessions,Failure rate,Failure rate \(latest day\),Trend,/,
    );
    expect(lines.find((l) => l.startsWith('failing.example,'))).toMatch(
      /^failing\.example,failing,900,6300,0\.125,0\.25,worst 25\.0% on \d{4}-\d\d-\d\d,/,
    );
    // All time: the first to the latest report day; then back to the latest data.
    await page.getByRole('link', { name: 'All time' }).click();
    await page.waitForURL(/\/ui\/domains\?period=all$/);
    // (Other tests' reports go back further than failing.example's ten days.)
    expect(await page.locator('input[name=from]').inputValue()).toMatch(/^\d{4}-\d\d-\d\d$/);
    expect((await page.locator('input[name=from]').inputValue()) <= day(10)).toBe(true);
    expect(await page.locator('input[name=to]').inputValue()).toBe(day(1));
    expect(await row.textContent()).toMatch(/failing.*900.*9,000/s);
    await page.getByRole('link', { name: 'Latest data' }).click();
    await page.waitForURL(/\/ui\/domains$/);

    // One domain: the chart, and the worst failure with its diagnosis and the command to check it.
    await row.getByRole('link', { name: 'failing.example' }).click();
    await page.waitForURL(/\/ui\/domains\/failing\.example/);
    expect(await page.locator('figure.chart svg').count()).toBe(1);
    // The chart fills its card.
    const svgBox = await page.locator('figure.chart svg').boundingBox();
    const cardBox = await page.locator('figure.chart').boundingBox();
    expect(svgBox!.width).toBeGreaterThan(cardBox!.width - 4);
    const worstText = text(await page.locator('.diagnosis').first().textContent());
    expect(worstText).toMatch(/Google reported 900 failed sessions at mx2\.failing\.example from 209\.85\.220\.41/);
    expect(text(await page.locator('p.when').first().textContent())).toMatch(/still failing/);
    expect(worstText).toMatch(/certificate expired/);
    expect(worstText).toMatch(
      /openssl s_client -starttls smtp -connect mx2\.failing\.example:25 -servername mx2\.failing\.example/,
    );
    expect(worstText).toMatch(/Whose side:\s+your MX host/);
    // The MX hosts: what failed at each (no live check ran here).
    expect(
      await page
        .getByRole('table', { name: 'MX hosts' })
        .getByRole('row', { name: /mx2\.failing\.example/ })
        .innerText(),
    ).toMatch(/^mx2\.failing\.example\s+900\s+\S+%\s+\d{4}-\d\d-\d\d\s+certificate-expired\s+not checked/);
    await shot(page, 'domain');

    // Its reports, then one report as a document.
    await page.getByRole('link', { name: 'Reports of failing.example' }).click();
    await page.waitForURL(/\/ui\/reports\?/);
    // The domain list's 7 days (ending on the latest report day), carried along: 7 reports.
    expect(await page.locator('tbody tr').count()).toBe(7);
    await page.locator('tbody tr').first().getByRole('link').click();
    await page.waitForURL(/\/ui\/reports\/[0-9a-f]{32}$/);
    const doc = text(await page.locator('main').textContent());
    expect(doc).toMatch(/Report from Google/);
    expect(doc).toMatch(/900 sessions succeeded and 300 failed \(25\.0% failed\)/);
    expect(doc).toMatch(
      /Google reported 300 failed sessions at mx2\.failing\.example \(198\.51\.100\.7\) from 209\.85\.220\.41: certificate expired\./,
    );
    await shot(page, 'report');

    // Sign out: the session is gone, the pages send back to sign-in.
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL(/\/ui\/sign-in/);
    expect(await page.context().cookies()).toEqual([]);
    await page.goto(`${base}/ui/domains`);
    expect(new URL(page.url()).pathname).toBe('/ui/sign-in');
    await page.context().close();
  });

  it('renders a real corpus report end to end: Mail.ru, its failure details diagnosed, the raw JSON downloadable', async () => {
    const page = await newPage();
    await signIn(page, ADMIN, '/ui/reports?domain=example.com&from=2024-02-01&to=2024-02-29');
    await page.getByRole('link', { name: 'Mail.ru' }).click();
    await page.waitForURL(/\/ui\/reports\/[0-9a-f]{32}$/);
    const doc = text(await page.locator('main').textContent());
    const [source] = await queryRows<{ n: number }>(
      ch,
      "SELECT count() AS n FROM failure_details WHERE organization = 'Mail.ru'",
    );
    expect(await page.locator('.diagnosis').count()).toBe(source!.n);
    expect(doc).toMatch(/Report from Mail\.ru/);
    expect(doc).toMatch(/What it means:/);
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('link', { name: 'Download the raw JSON' }).click(),
    ]);
    const raw = JSON.parse(await readFile(await download.path(), 'utf8')) as Record<string, unknown>;
    expect(raw['organization-name']).toBe('Mail.ru');
    await shot(page, 'corpus-report');
    // Microsoft's DANE report fits the window too.
    await page.goto(`${base}/ui/reports?domain=karlsen.fr&from=2026-08-18&to=2026-08-18`);
    await page.getByRole('link', { name: 'Microsoft Corporation' }).first().click();
    await page.waitForURL(/\/ui\/reports\/[0-9a-f]{32}$/);
    expect(text(await page.locator('main').textContent())).toMatch(/TLSA:/);
    await shot(page, 'dane-report');
    // The RFC's example: three failure details, each with its diagnosis.
    await page.goto(`${base}/ui/reports?domain=company-y.example&from=2016-04-01&to=2016-04-02`);
    await page.getByRole('link', { name: 'Company-X' }).click();
    await page.waitForURL(/\/ui\/reports\/[0-9a-f]{32}$/);
    expect(await page.locator('.diagnosis').count()).toBe(3);
    await page.context().close();
  });

  it('shows enforce readiness, alerts, reporters and rejects', async () => {
    const page = await newPage();
    await signIn(page, ADMIN, `/ui/domains/testing.example`);
    const readiness = text(await page.locator('section[aria-labelledby=readiness]').textContent());
    expect(readiness).toMatch(/Not yet safe to switch to enforce/);
    // Every page names its icon, and it is served.
    expect(await page.locator('link[rel=icon]').getAttribute('href')).toBe('/ui/favicon.svg');
    const icon = await page.request.get(`${base}/ui/favicon.svg`);
    expect([icon.status(), icon.headers()['content-type']]).toEqual([200, 'image/svg+xml']);
    // A domain no report was about (a typo) is not a domain with zeros.
    expect((await page.goto(`${base}/ui/domains/testing.exampel`))?.status()).toBe(404);
    expect(text(await page.locator('main').textContent())).toMatch(/No reports for testing\.exampel/);
    await page.goto(`${base}/ui/domains/testing.example`);
    expect(readiness).toMatch(/Microsoft\s*mx2\.failing\.example\s*certificate-expired\s*12/);
    await page.goto(`${base}/ui/alerts`);
    await expect
      .poll(async () => {
        await page.reload();
        return page.locator('main').textContent();
      })
      .toMatch(/session\(s\) to failing\.example failed under MTA-STS enforce/);
    await shot(page, 'alerts');
    await page.goto(`${base}/ui/reporters?domain=failing.example`);
    // 30 days ending on the latest report day (yesterday); to today, today is not a missing day.
    expect(await page.getByRole('row', { name: /Google/ }).textContent()).toMatch(/10 of 30/);
    await page.goto(`${base}/ui/reporters?domain=failing.example&to=${day(0)}`);
    expect(await page.getByRole('row', { name: /Google/ }).textContent()).toMatch(/10 of 29/);
    await page.goto(`${base}/ui/rejects`);
    expect(await page.locator('h1').textContent()).toBe('Rejects');
    await page.goto(`${base}/ui/forwards`);
    expect(await page.locator('h1').textContent()).toBe('Forwards');
    expect(await page.locator('main').textContent()).toContain('No report forwarded in the last 30 days.');
    await page.context().close();
  });

  it('runs a hosted MTA-STS domain: its policy, records and readiness; enforce refused, a rollback to none', async () => {
    const put = await fetch(`${base}/v1/mta-sts/testing.example`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ mode: 'testing', mx: ['mx1.testing.example', 'mx2.testing.example'], maxAge: 604800 }),
    });
    // No policy host runs here, so no certificate of mta-sts.testing.example is known: pending.
    expect(put.status).toBe(202);
    const { id, state } = (await put.json()) as { id: string; state: string };
    expect(state).toBe('pending-certificate');
    const page = await newPage();
    await signIn(page, ADMIN, '/ui/mta-sts');
    await page.getByRole('link', { name: 'testing.example' }).click();
    await page.waitForURL((u) => u.pathname === '/ui/mta-sts/testing.example');
    const main = async () => text(await page.locator('main').textContent());
    const mtaStsRow = () => page.getByRole('row', { name: /_mta-sts\.testing\.example TXT/ }).textContent();
    const mtaStsRow2 = (domain: string) =>
      page.getByRole('row', { name: new RegExp(`_mta-sts\\.${domain.replace('.', '\\.')} TXT`) }).textContent();
    expect(await main()).toContain(`policy id ${id}`);
    expect(text(await page.locator('pre').textContent())).toContain('mode: testing mx: mx1.testing.example');
    expect(await mtaStsRow()).toMatch(
      new RegExp(`id=${id}.*not yet.*once the certificate of mta-sts.testing.example is issued`),
    );
    // The policy host reports the certificate it holds: the record can go out.
    await writeCertificates(ch, [
      {
        host: 'mta-sts.testing.example',
        state: 'issued',
        valid_from: '2026-11-01 00:00:00',
        valid_until: '2099-01-30 00:00:00',
        issuer: "Let's Encrypt R11",
        reason: '',
        checked_at: '2026-11-01 00:00:05',
        version: 1,
      },
    ]);
    await page.reload();
    expect(await main()).toContain("Issued by Let's Encrypt R11, valid until 2099-01-30 00:00:00 UTC");
    expect(await mtaStsRow()).toMatch(new RegExp(`id=${id}.*not checked`));
    expect(await main()).toMatch(/Not yet safe to switch to enforce: 12 failed sessions/);
    await shot(page, 'mta-sts-domain');
    // Enforce is refused for the reason the API gives; nothing changed.
    await page.getByRole('button', { name: 'Set enforce' }).click();
    expect(await page.locator('h1').textContent()).toBe('Not changed');
    expect(await main()).toMatch(/sessions failed under the testing policy/);
    await page.getByRole('link', { name: 'Back to testing.example' }).click();
    expect(await main()).toContain('Mode testing');
    // Accepting the failures at mx2 (as the API's acknowledge does): enforced, with them kept with the change.
    await page.getByRole('checkbox', { name: /at mx2\.failing\.example \(12 failed\)/ }).check();
    await page.getByRole('button', { name: 'Set enforce' }).click();
    await page.waitForURL((u) => u.pathname === '/ui/mta-sts/testing.example');
    expect(await main()).toMatch(/Mode enforce, policy id \S+/);
    const [kept] = await queryRows<{ acknowledged: string }>(
      ch,
      "SELECT argMax(acknowledged, version) AS acknowledged FROM sts_policies WHERE domain = 'testing.example'",
    );
    expect(JSON.parse(kept!.acknowledged)).toEqual([
      expect.objectContaining({ receiving_mx_hostname: 'mx2.failing.example' }),
    ]);
    await page.getByRole('button', { name: 'Roll back to none' }).click();
    await page.waitForURL((u) => u.pathname === '/ui/mta-sts/testing.example');
    expect(await main()).toMatch(/Mode none, policy id \S+, .*served \(as mode none\) until/);
    expect(await main()).not.toContain(`policy id ${id}`); // a new id
    await page.goto(`${base}/ui/mta-sts`);
    expect(await page.getByRole('row', { name: /testing\.example/ }).textContent()).toMatch(/none/);
    // Hosting a new domain from the form: its page, pending a certificate; a bad pattern refused with the reason.
    const hostForm = page.locator('form', { has: page.getByRole('button', { name: 'Host it' }) });
    await hostForm.getByLabel('Domain').fill('new.example');
    await hostForm.getByLabel('MX patterns').fill('mx1.new.example bad..pattern');
    await hostForm.getByRole('button', { name: 'Host it' }).click();
    expect(await page.locator('h1').textContent()).toBe('Not changed');
    expect(await main()).toMatch(/MX patterns: an MX host name or \*\.domain pattern/);
    await page.goto(`${base}/ui/mta-sts`);
    await hostForm.getByLabel('Domain').fill('new.example');
    await hostForm.getByLabel('MX patterns').fill('mx1.new.example *.new.example');
    await hostForm.getByRole('button', { name: 'Host it' }).click();
    await page.waitForURL((u) => u.pathname === '/ui/mta-sts/new.example');
    expect(await main()).toMatch(/Mode testing, policy id \S+, max_age 604,800 seconds/);
    expect(await mtaStsRow2('new.example')).toMatch(/not yet/);
    await page.goto(`${base}/ui/mta-sts`);
    await shot(page, 'mta-sts');
    // Two check runs, as the scheduler stores them: mx2 lost STARTTLS in the newer one.
    const run = (at: string, mx2: 'ok' | 'critical') =>
      [
        ['mta-sts-record', 'testing.example', 'ok', '_mta-sts.testing.example announces a policy id'],
        ['mx-tls', 'mx1.testing.example', 'ok', 'mx1.testing.example: STARTTLS, TLSv1.3, certificate valid'],
        [
          'mx-tls',
          'mx2.testing.example',
          mx2,
          mx2 === 'ok' ? 'mx2.testing.example: STARTTLS, TLSv1.3' : 'mx2.testing.example does not offer STARTTLS',
        ],
      ].map(([check_name, subject, severity, summary]) => ({
        domain: 'testing.example',
        checked_at: at,
        check_name,
        subject,
        severity,
        summary,
        detail: '{}',
        policy_id: '',
        policy_text: '',
      }));
    await ch.insert({
      table: 'posture_checks',
      format: 'JSONEachRow',
      values: [...run('2026-12-06 06:00:00', 'ok'), ...run('2026-12-06 12:00:00', 'critical')],
    });
    await page.goto(`${base}/ui/mta-sts/testing.example`);
    await page.getByRole('link', { name: 'every check' }).click();
    await page.waitForURL((u) => u.pathname === '/ui/checks/testing.example');
    expect(await page.locator('h1').textContent()).toBe('Live checks: testing.example');
    expect(
      text(
        await page
          .getByRole('table', { name: /Each finding/ })
          .getByRole('row', { name: /mx2\.testing\.example critical/ })
          .innerText(),
      ),
    ).toMatch(/critical 2026-12-06 12:00:00 ok at 2026-12-06 06:00:00 1 mx2.testing.example does not offer STARTTLS/);
    expect(await page.getByRole('button', { name: 'Check now' }).count()).toBe(1);
    await shot(page, 'checks');
    // An older run, from the runs table.
    await page.getByRole('link', { name: '2026-12-06 06:00:00' }).click();
    expect(await page.getByRole('heading', { name: 'The run of 2026-12-06 06:00:00 UTC' }).count()).toBe(1);
    await page.context().close();
  });

  it('a domain-limited token sees only its domains, everywhere', async () => {
    const page = await newPage();
    await signIn(page, LIMITED);
    // Its issues: nothing fails at ok.example, and the other domains' incidents are not shown.
    expect(new URL(page.url()).pathname).toBe('/ui/issues');
    expect(text(await page.locator('main').textContent())).toMatch(/Nothing is failing now/);
    expect(await page.getByRole('article').count()).toBe(0);
    const failingIncident = await page.request.get(`${base}/ui/issues?domain=failing.example`);
    expect(failingIncident.status()).toBe(403);
    await page.goto(`${base}/ui/domains`);
    const domains = await page.locator('tbody tr td:first-child').allTextContents();
    expect(domains).toEqual(['ok.example']);
    expect(await page.getByRole('link', { name: 'Rejects' }).count()).toBe(0);
    expect(await page.getByRole('link', { name: 'MTA-STS' }).count()).toBe(0);
    expect(await page.getByRole('link', { name: 'Forwards' }).count()).toBe(0);
    for (const path of [
      '/ui/domains/failing.example',
      '/ui/reports?domain=failing.example',
      '/ui/rejects',
      '/ui/forwards',
      '/ui/mta-sts',
      '/ui/mta-sts/ok.example',
    ]) {
      const res = await page.goto(`${base}${path}`);
      expect(res?.status(), path).toBe(403);
    }
    const [failingKey] = await queryRows<{ report_key: string }>(
      ch,
      "SELECT report_key FROM policy_results WHERE policy_domain = 'failing.example' LIMIT 1",
    );
    expect((await page.goto(`${base}/ui/reports/${failingKey!.report_key}`))?.status()).toBe(404);
    const csv = await page.context().request.get(`${base}/ui/reporters?export=reporters&format=csv`);
    expect(csv.status()).toBe(200);
    expect(await csv.text()).toMatch(/^Domain,Reporter,/);
    expect(await csv.text()).toMatch(/ok\.example,Google/);
    expect(await csv.text()).not.toMatch(/failing\.example|testing\.example/);
    await page.context().close();
  });

  it('refuses a cross-site sign-in and a wrong token; no page logged a console error', async () => {
    const form = new URLSearchParams({ token: ADMIN, next: '/ui/domains' });
    const res = await fetch(`${base.replace('localhost', '127.0.0.1')}/ui/sign-in`, {
      method: 'POST',
      headers: { origin: 'https://evil.example', 'content-type': 'application/x-www-form-urlencoded' },
      body: form,
      redirect: 'manual',
    });
    expect(res.status).toBe(403);
    expect(res.headers.get('set-cookie')).toBeNull();
    const page = await newPage();
    await page.goto(`${base}/ui/sign-in`);
    await page.getByLabel('API token').fill('not-a-token');
    await page.getByRole('button', { name: 'Sign in' }).click();
    expect(await page.getByRole('alert').textContent()).toMatch(/not valid/);
    expect(await page.context().cookies()).toEqual([]);
    await shot(page, 'sign-in');
    await page.context().close();
    expect(consoleErrors).toEqual([]);
  });
});
