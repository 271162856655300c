// One domain: daily sessions with failures stacked by result type, what to fix first (with its diagnosis), enforce
// readiness of a testing-mode MTA-STS policy, failure breakdowns, and the policy as reporters saw it over time.
import { domainDaily, domainKnown, domainSummary, failureBreakdown, statusOf } from '../../queries.ts';
import { dailyFailuresByType, mxFailures, policyHistory, type PolicySeen } from '../../dashboard-queries.ts';
import { latestRun } from '../../../common/posture-store.ts';
import { mxHealth, mxHealthTable } from './mx-health.ts';
import { readinessVerdict, type ReadinessVerdict } from '../../readiness.ts';
import type { FAILURE_DIMENSIONS } from '../../params.ts';
import { dailyChart } from '../charts.ts';
import { checksNear, noteFor, noteInTime } from '../../posture-join.ts';
import type { StoredCheck } from '../../../common/posture-store.ts';
import { currentPolicy, type StsPolicy } from '../../../common/sts-policies.ts';
import { NotFound, type PageContext, pageRange, readableDomain, reportBounds } from '../context.ts';
import { diagnosisView } from '../diagnosis-view.ts';
import { domainIncidents, incidentDiagnosis, incidentTable, whatOf, whenOf } from './incidents.ts';
import { html, link, number, percent, plural, statusBadge, table, type Html, type Table, periodForm } from '../html.ts';
import type { Page } from '../layout.ts';

/** MX hosts in the table: a domain has a few; a report may name any number (each one is a sender's word). */
const MX_HOSTS_SHOWN = 20;

const BREAKDOWNS: Array<[keyof typeof FAILURE_DIMENSIONS, string]> = [
  ['result-type', 'Result type'],
  ['organization', 'Reporter'],
  ['receiving-ip', 'Receiving IP'],
  ['sending-ip', 'Sending IP'],
];

export async function domainPage(ctx: PageContext): Promise<Page> {
  const domain = readableDomain(ctx, ctx.params.domain ?? '');
  if (!(await domainKnown(ctx.db, domain))) throw new NotFound(`No reports for ${domain}: no reporter has sent one.`);
  const range = await pageRange(ctx, 30, { bounds: reportBounds(ctx, domain) });
  const [summary, daily, byType, incidents, history, readiness, hosted, mx, latest, ...breakdowns] = await Promise.all([
    domainSummary(ctx.db, domain, range),
    domainDaily(ctx.db, domain, range),
    dailyFailuresByType(ctx.db, domain, range),
    domainIncidents(ctx, domain, range),
    policyHistory(ctx.db, domain, range),
    readinessVerdict(ctx.db, domain, ctx.readinessDays, ctx.now),
    currentPolicy((sql) => ctx.db.rows(sql), domain),
    mxFailures(ctx.db, domain, range, MX_HOSTS_SHOWN),
    latestRun(ctx.db, domain),
    ...BREAKDOWNS.map(([by]) => failureBreakdown(ctx.db, domain, range, by, 10)),
  ]);
  // The live check of the domain nearest the end of the period, next to each failure it speaks to.
  const run = incidents.open.length > 0 ? (await checksNear(ctx.db, [domain], range.to)).get(domain) : undefined;
  const status = statusOf(summary.failedSessions, summary.successfulSessions, ctx.threshold);

  // Failures per day by result type; what the summaries count beyond the details is "unspecified".
  const types = [...new Set(byType.map((r) => r.result_type || '(none given)'))];
  const dayIndex = new Map(daily.days.map((d, i) => [d.day, i]));
  const failedBy = types.map((name) => ({ name, values: daily.days.map(() => 0) }));
  for (const r of byType) {
    const i = dayIndex.get(r.day);
    const t = failedBy[types.indexOf(r.result_type || '(none given)')];
    if (i !== undefined && t) t.values[i]! += Number(r.failed);
  }
  const unspecified = daily.days.map((d, i) =>
    Math.max(0, d.failedSessions - failedBy.reduce((a, t) => a + t.values[i]!, 0)),
  );
  if (unspecified.some((x) => x > 0)) failedBy.push({ name: 'unspecified', values: unspecified });
  // Days without a report are gaps on the chart, not days of zero sessions.
  const reported = daily.days.flatMap((d, i) => (d.reports > 0 ? [i] : []));
  const chart = await dailyChart(
    {
      days: reported.map((i) => daily.days[i]!.day),
      successful: reported.map((i) => daily.days[i]!.successfulSessions),
      failedBy: failedBy.map((f) => ({ name: f.name, values: reported.map((i) => f.values[i]!) })),
      range,
    },
    `Daily TLS sessions to ${domain} from ${range.from} to ${range.to}: successful, and failed by result type`,
  );

  const dailyTable: Table<(typeof daily.days)[number]> = {
    id: 'daily',
    caption: 'Sessions per day',
    rows: daily.days,
    columns: [
      { label: 'Day', value: (r) => r.day },
      {
        label: 'Successful',
        value: (r) => r.successfulSessions,
        cell: (r) => number(r.successfulSessions),
        numeric: true,
      },
      { label: 'Failed', value: (r) => r.failedSessions, cell: (r) => number(r.failedSessions), numeric: true },
      {
        label: 'Failure rate',
        value: (r) => Number(r.failureRate.toFixed(6)),
        cell: (r) => percent(r.failureRate),
        numeric: true,
      },
      { label: 'Reports', value: (r) => r.reports, numeric: true },
    ],
  };
  const breakdownTables = BREAKDOWNS.map(([by, label], i) => {
    const b = breakdowns[i]!;
    const t: Table<(typeof b.buckets)[number]> = {
      id: `by-${by}`,
      caption: `Failures by ${label[0]!.toLowerCase()}${label.slice(1)}`,
      rows: b.buckets,
      empty: 'No failure details in this period.',
      columns: [
        { label, value: (r) => r.key ?? '(not given)' },
        {
          label: 'Failed sessions',
          value: (r) => r.failedSessions,
          cell: (r) => number(r.failedSessions),
          numeric: true,
        },
        { label: 'Details', value: (r) => r.details, numeric: true },
        { label: 'Reports', value: (r) => r.reports, numeric: true },
      ],
    };
    return t;
  });
  const historyTable = policyTable(history);
  const mxTable = mxHealthTable(mxHealth(mx, summary.failedSessions, latest), latest[0]?.checked_at);

  const body = html`<h1>${domain} ${statusBadge(status)}</h1>
    ${periodForm({
      range,
      choices: { path: `/ui/domains/${encodeURIComponent(domain)}`, query: ctx.query, period: range.period },
      after: html`<a href="${link('/ui/reports', { domain, from: range.from, to: range.to })}">Reports of ${domain}</a>
        <a href="${link('/ui/reporters', { domain, from: range.from, to: range.to })}">Who reports it</a>
        ${(run?.length ?? 0) > 0 || hosted ? html`<a href="/ui/checks/${encodeURIComponent(domain)}">Live checks</a>` : ''}`,
    })}
    <div class="cards">
      <div class="card">Successful sessions<b>${number(summary.successfulSessions)}</b></div>
      <div class="card">Failed sessions<b>${number(summary.failedSessions)}</b></div>
      <div class="card">Failure rate<b>${percent(summary.failureRate)}</b></div>
      <div class="card">Reports<b>${number(summary.reports)}</b></div>
      <div class="card">Reporters<b>${number(summary.organizations)}</b></div>
    </div>
    <figure class="chart">
      <figcaption><h2>Sessions per day</h2></figcaption>
      ${chart}
    </figure>
    ${fixFirst(incidents, run, ctx.now.toISOString().slice(0, 10), ctx.query)}
    ${readinessView(readiness, history, hosted?.removed ? undefined : hosted)} ${table(mxTable, ctx.query)}
    <p class="muted">
      Reports count successful sessions per policy, not per MX host: a failure rate per host cannot be told from them.
      The share is of the domain's ${plural(summary.failedSessions, 'failed session')} in the period; the check columns
      are what the latest live check found at each
      host${latest.length > 0 ? html` (<a href="/ui/checks/${encodeURIComponent(domain)}">every check</a>)` : ''}.
    </p>
    ${breakdownTables.map((t) => table(t, ctx.query))} ${table(historyTable, ctx.query)} ${table(dailyTable, ctx.query)}`;
  return { title: domain, body, tables: [dailyTable, historyTable, mxTable, ...breakdownTables] };
}

/** The domain's open incidents, most urgent first, each with its diagnosis; then those resolved in the period. */
function fixFirst(
  incidents: Awaited<ReturnType<typeof domainIncidents>>,
  run: StoredCheck[] | undefined,
  today: string,
  query: URLSearchParams,
): Html {
  const { open, resolved } = incidents;
  const resolvedTable = incidentTable('resolved', 'Resolved in this period', resolved, today);
  return html`<section aria-labelledby="fix-first">
    <h2 id="fix-first">What to fix first</h2>
    ${
      open.length === 0
        ? html`<p class="diagnosis ok">Nothing is failing now.</p>`
        : html`<p class="muted">
            Open incidents, most urgent first: each is one problem at one host, since its first day.
          </p>`
    }
    ${open.map((i) =>
      i.kind === 'failure'
        ? html`<p class="when">
              <a href="/ui/incidents/${i.id}">${whatOf(i)}</a>: <strong>${whenOf(i, today)}</strong>.
            </p>
            ${diagnosisView(incidentDiagnosis(i), { posture: noteInTime(noteFor({ resultType: i.resultType, receivingMxHostname: i.subject }, run), i.lastDay) })}`
        : html`<p class="when">
            <a href="/ui/incidents/${i.id}">${whatOf(i)}</a>: <strong>${whenOf(i, today)}</strong>.
          </p>`,
    )}
    ${resolved.length > 0 ? table(resolvedTable, query) : ''}
  </section>`;
}

function readinessView(r: ReadinessVerdict, history: PolicySeen[], hosted: StsPolicy | undefined): Html {
  const testing = history.some((p) => p.policy_type === 'sts' && p.sts_mode === 'testing');
  if (!testing && r.testingReports === 0 && !hosted) return html``;
  // The hosted policy is what senders fetch from now on; reports show the mode they last fetched (up to max_age ago).
  const served = hosted
    ? html`<p class="posture">
        <strong>Hosted MTA-STS policy: <code>${hosted.mode}</code></strong> (id <code>${hosted.policy_id}</code>,
        changed ${hosted.changed_at} UTC, max_age ${plural(hosted.max_age, 'second')}). Reporters show the mode they
        last fetched: a sender that cached the previous policy fetches this one within its max_age.
      </p>`
    : '';
  const rows = (list: ReadinessVerdict['blocking']) =>
    html`<div class="scroll">
      <table>
        <thead>
          <tr>
            <th scope="col">Reporter</th>
            <th scope="col">Receiving MX</th>
            <th scope="col">Result type</th>
            <th scope="col" class="num">Failed sessions</th>
          </tr>
        </thead>
        <tbody>
          ${list.map(
            (w) =>
              html`<tr>
                <td>${w.organization}</td>
                <td>${w.receiving_mx_hostname ?? '(not given)'}</td>
                <td>${w.result_type}</td>
                <td class="num">${number(Number(w.failed))}</td>
              </tr>`,
          )}
        </tbody>
      </table>
    </div>`;
  const verdict =
    hosted?.mode === 'enforce'
      ? html`<p class="diagnosis ok">
            <strong>Switched to enforce</strong> on ${hosted.changed_at}
            UTC${
              r.blocking.length > 0
                ? ': these failures under the testing policy were acknowledged or seen before the switch.'
                : '.'
            }
          </p>
          ${r.blocking.length > 0 ? rows(r.blocking) : ''}`
      : r.testingReports === 0
        ? html`<p class="diagnosis">
            <strong>Not yet known:</strong> no report of the last ${plural(r.days, 'day')} saw the policy in
            <code>testing</code> mode; switching to enforce is refused until one does.
          </p>`
        : r.safe
          ? html`<p class="diagnosis ok">
              <strong>Safe to switch to enforce:</strong> no reporter saw a failure under the testing policy in the last
              ${plural(r.days, 'day')}${r.dane.length > 0 ? ' (DANE failures aside, below)' : ''}.
            </p>`
          : html`<p class="diagnosis">
                <strong>Not yet safe to switch to enforce:</strong> these sessions failed under the testing policy.
                Under <code>enforce</code> those senders would not deliver to that MX host: they would try another MX or
                retry later, and mail is delayed or bounced only if every MX fails. Switching is refused until they stop
                or are acknowledged.
              </p>
              ${rows(r.blocking)}`;
  return html`<section aria-labelledby="readiness">
    <h2 id="readiness">Enforce readiness</h2>
    ${served}
    <p>
      Under the MTA-STS policy in <code>testing</code> mode, ${r.from} to ${r.to} (the last ${plural(r.days, 'day')},
      <code>MTA_STS_READINESS_DAYS</code>): ${plural(r.testingReports, 'report')}, ${number(r.successful)} successful
      and ${plural(r.failed, 'failed session')}.
    </p>
    ${verdict}
    ${
      r.dane.length > 0
        ? html`<p>
              DANE failures seen under the policy: about the TLSA records, not the MTA-STS policy. They do not hold back
              a mode change.
            </p>
            ${rows(r.dane)}`
        : ''
    }
  </section>`;
}

/** An sts entry without a policy: the reporter could not fetch it (RFC 8460 leaves policy-string out then). */
const fetchFailed = (p: PolicySeen): boolean =>
  p.policy_type === 'sts' && !p.sts_mode && p.sts_mx.length === 0 && !p.sts_max_age;

export function policyTable(history: PolicySeen[]): Table<PolicySeen & { change: string }> {
  // A row whose type was seen before with other settings marks a change; a failed fetch is not a policy.
  const seenTypes = new Set<string>();
  const rows = history.map((p) => {
    if (fetchFailed(p)) return { ...p, change: 'fetch failed' };
    const change = seenTypes.has(p.policy_type) ? 'changed' : '';
    seenTypes.add(p.policy_type);
    return { ...p, change };
  });
  return {
    id: 'policies',
    caption: 'The policy as reporters saw it',
    rows,
    columns: [
      { label: 'Type', value: (r) => r.policy_type },
      { label: 'Mode', value: (r) => (fetchFailed(r) ? '(not fetched)' : r.sts_mode || null) },
      { label: 'max_age', value: (r) => r.sts_max_age, numeric: true },
      { label: 'MX patterns', value: (r) => r.sts_mx.join(' ') || null },
      { label: 'TLSA records', value: (r) => r.tlsa_records.join(' ') || null },
      { label: 'First seen', value: (r) => r.first_day },
      { label: 'Last seen', value: (r) => r.last_day },
      {
        label: 'Changed',
        value: (r) => r.change,
        cell: (r) => (r.change ? html`<strong>${r.change}</strong>` : ''),
      },
      { label: 'Reporters', value: (r) => r.organizations.sort().join(' ') },
      { label: 'Reports', value: (r) => r.reports, numeric: true },
    ],
  };
}
