// Issues (the landing page): what is wrong now, since when, where, how bad, with acknowledge and mute at hand; then
// what resolved in the period. And one incident: its timeline, diagnosis, the nearest live check, reports, events.
import type { TrackedIncident } from '../../../common/incidents/acts.ts';
import { whatOf } from '../../../common/incidents/derive.ts';
import { addDays } from '../../../common/days.ts';
import { POLICY_SIDE } from '../../../common/incidents/facts.ts';
import { loadIncidents } from '../../../common/incidents/load.ts';
import { diagnose } from '../../diagnosis.ts';
import { byUrgency, findIncident, incidentReports, pageOfIncidents, visibleDomains } from '../../incidents.ts';
import { checksNear, noteFor, noteInTime } from '../../posture-join.ts';
import type { StoredCheck } from '../../../common/posture-store.ts';
import type { RowCount } from '../../../../schemas/rows.ts';
import { dailyChart, sparkline } from '../charts.ts';
import { NotFound, type PageContext, pageRange, readableDomain, reportBounds } from '../context.ts';
import { diagnosisView } from '../diagnosis-view.ts';
import { html, link, number, percent, plural, table, type Html, type Table, periodForm } from '../html.ts';
import type { Page } from '../layout.ts';

/** Open incidents shown as cards; the rest are counted. */
const MAX_CARDS = 100;
/** Resolved incidents listed. */
const MAX_ROWS = 500;

const DAY_NAMES = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** `Mon 30 Nov`: a report day as people say it. */
export function dayName(day: string): string {
  const d = new Date(`${day}T00:00:00Z`);
  return `${DAY_NAMES[d.getUTCDay()]} ${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]}`;
}

const daysBetween = (from: string, to: string): number =>
  Math.round((Date.parse(`${to}T00:00:00Z`) - Date.parse(`${from}T00:00:00Z`)) / 86_400_000) + 1;

export { whatOf };

/** "since Mon 30 Nov (7 days), still failing", or when it ran and resolved. */
export function whenOf(i: TrackedIncident, today: string): string {
  if (i.state === 'resolved')
    return `${dayName(i.firstDay)} to ${dayName(i.lastDay)} (${plural(daysBetween(i.firstDay, i.lastDay), 'day')}), resolved ${i.resolvedDay ? dayName(i.resolvedDay) : 'by hand'}`;
  const running = `since ${dayName(i.firstDay)} (${plural(daysBetween(i.firstDay, today), 'day')})`;
  if (i.kind === 'reporter-stopped') return `${running}, no report since`;
  if (i.kind === 'posture')
    return i.lastDay >= addDays(today, -1)
      ? `${running}, still found by the live checks`
      : `${running}, last found ${dayName(i.lastDay)}; no check since found it fine`;
  // Reports of a day arrive the day after: a failure yesterday is a failure now.
  return i.lastDay >= addDays(today, -1)
    ? `${running}, still failing`
    : `${running}, last failed ${dayName(i.lastDay)}; not resolved until clean days follow`;
}

function impactOf(i: TrackedIncident): string {
  if (i.kind === 'reporter-stopped') return 'no reports from this reporter while others reported';
  if (i.kind === 'posture') return 'found by our live checks of the setup, not by reports: no sessions counted';
  return `${plural(i.failedSessions, 'failed session')} (${number(i.sessionsPerDay)} a day, ${percent(i.failingShare)} of the domain's sessions those days)`;
}

function actions(i: TrackedIncident, back: string): Html {
  const act = (name: string, label: string, extra: Html | string = '') =>
    html`<form method="post" action="/ui/incidents/${i.id}/${name}" class="inline">
      <input type="hidden" name="next" value="${back}" />${extra}<button type="submit">${label}</button>
    </form>`;
  const forms: Html[] = [];
  if (i.state === 'open' || i.state === 'muted') forms.push(act('acknowledge', 'Acknowledge'));
  if (i.state === 'open' || i.state === 'acknowledged')
    forms.push(
      act(
        'mute',
        'Mute',
        html`<label
          >for
          <select name="days">
            <option value="1">1 day</option>
            <option value="7">7 days</option>
            <option value="30">30 days</option>
          </select></label
        > `,
      ),
    );
  if (i.state === 'muted') forms.push(act('unmute', 'Unmute'));
  if (i.state !== 'resolved') forms.push(act('resolve', 'Resolve'));
  else forms.push(act('reopen', 'Reopen'));
  return html`<div class="actions">${forms}</div>`;
}

function card(i: TrackedIncident, today: string, back: string): Html {
  const shares = i.daily.map((d) => ({ day: d.day, rate: d.sessions === 0 ? 0 : d.failedSessions / d.sessions }));
  return html`<article class="incident severity-${i.severity}" aria-label="${i.domain}: ${whatOf(i)}">
    <h3>
      <a href="/ui/incidents/${i.id}">${whatOf(i)}</a> ·
      <a href="${link(`/ui/domains/${i.domain}`)}">${i.domain}</a>
    </h3>
    <p>
      <strong>${whenOf(i, today)}.</strong> ${impactOf(i)}.
      ${i.kind === 'failure' && i.reporters.length > 0 ? `Reported by ${i.reporters.join(', ')}.` : ''}
      ${i.mode ? html`MTA-STS <code>${i.mode}</code>.` : ''} Severity <b>${i.severity}</b>;
      ${i.state}${i.mutedUntil ? ` until ${i.mutedUntil} UTC` : ''}.
    </p>
    ${
      i.kind === 'failure'
        ? sparkline(
            shares,
            { from: i.firstDay, to: i.lastDay },
            `Failing share per day: ${shares.map((s) => `${s.day} ${percent(s.rate)}`).join(', ')}`,
          )
        : ''
    }
    ${actions(i, back)}
  </article>`;
}

/** Whether the scheduler has never stored a domain's incidents: "nothing is failing" would not be true then. */
async function neverDerived(ctx: PageContext): Promise<boolean> {
  const [row] = await ctx.db.rows<RowCount>('SELECT count() AS n FROM incident_domains');
  return Number(row?.n ?? 0) === 0;
}

/** What is wrong now, as the scheduler last derived it, and what resolved in the period. */
export async function issuesPage(ctx: PageContext): Promise<Page> {
  const domainParam = ctx.query.get('domain');
  const domain = domainParam ? readableDomain(ctx, domainParam) : undefined;
  const windowDays = ctx.incidents.windowDays;
  const range = await pageRange(ctx, 30, {
    maxDays: windowDays,
    allTimeDays: windowDays,
    bounds: reportBounds(ctx, domain),
  });
  const scope = visibleDomains(ctx.principal, domain);
  const [openPage, resolvedPage] = await Promise.all([
    pageOfIncidents(
      ctx.db,
      scope,
      range,
      { states: ['open', 'acknowledged', 'muted'] },
      { limit: MAX_CARDS, offset: 0, detail: true },
      ctx.now,
    ),
    pageOfIncidents(ctx.db, scope, range, { states: ['resolved'] }, { limit: MAX_ROWS, offset: 0 }, ctx.now),
  ]);
  const open = openPage.incidents;
  const resolved = resolvedPage.incidents;
  const today = ctx.now.toISOString().slice(0, 10);
  const back = link('/ui/issues', {
    domain,
    from: ctx.query.get('from') ?? undefined,
    to: ctx.query.get('to') ?? undefined,
    period: ctx.query.get('period') ?? undefined,
  });
  const resolvedTable = incidentTable(
    'resolved',
    resolvedPage.total > resolved.length
      ? `Resolved in this period (the latest ${number(resolved.length)} of ${number(resolvedPage.total)})`
      : 'Resolved in this period',
    resolved,
    today,
  );
  const body = html`<h1>Issues${domain ? html` of ${domain}` : ''}</h1>
    ${periodForm({
      range,
      field: { name: 'domain', label: 'Domain', value: domain },
      choices: { path: '/ui/issues', query: ctx.query, period: range.period },
    })}
    <section aria-labelledby="open">
      <h2 id="open">Open (${number(openPage.total)})</h2>
      ${
        open.length === 0
          ? (await neverDerived(ctx))
            ? html`<p class="diagnosis">
                No incidents yet: the scheduler derives them from the reports (<code>npm start</code> runs it) and has
                not stored any so far.
              </p>`
            : html`<p class="diagnosis ok">Nothing is failing now.</p>`
          : open.map((i) => card(i, today, back))
      }
      ${
        openPage.total > open.length
          ? html`<p class="muted">
              And ${number(openPage.total - open.length)} more: choose a domain above, or see GET /v1/incidents.
            </p>`
          : ''
      }
    </section>
    ${table(resolvedTable, ctx.query)}`;
  return { title: 'Issues', body, tables: [resolvedTable] };
}

export function incidentTable(
  id: string,
  caption: string,
  list: TrackedIncident[],
  today: string,
): Table<TrackedIncident> {
  return {
    id,
    caption,
    rows: list,
    empty: 'None.',
    columns: [
      { label: 'Domain', value: (r) => r.domain, cell: (r) => html`<a href="/ui/domains/${r.domain}">${r.domain}</a>` },
      { label: 'What', value: (r) => whatOf(r), cell: (r) => html`<a href="/ui/incidents/${r.id}">${whatOf(r)}</a>` },
      { label: 'When', value: (r) => whenOf(r, today) },
      { label: 'First day', value: (r) => r.firstDay },
      { label: 'Last day', value: (r) => r.lastDay },
      {
        label: 'Failed sessions',
        value: (r) => r.failedSessions,
        cell: (r) => number(r.failedSessions),
        numeric: true,
      },
      { label: 'Severity', value: (r) => r.severity },
    ],
  };
}

/** A domain's incidents for its page: open ones, then those resolved in the range. */
export async function domainIncidents(ctx: PageContext, domain: string, range: { from: string; to: string }) {
  const all = await loadIncidents(ctx.db, [domain], range.to, ctx.incidents, ctx.now);
  const inRange = all.filter(
    (i) => i.firstDay <= range.to && (i.state !== 'resolved' || (i.resolvedDay ?? i.lastDay) >= range.from),
  );
  return {
    open: inRange.filter((i) => i.state !== 'resolved').sort(byUrgency),
    resolved: inRange.filter((i) => i.state === 'resolved').sort(byUrgency),
  };
}

/** The diagnosis of an incident, from what it is about. */
export function incidentDiagnosis(i: TrackedIncident) {
  const policySide = POLICY_SIDE.includes(i.resultType);
  const host = policySide ? null : i.subject || null;
  return diagnose(
    {
      resultType: i.resultType,
      failedSessionCount: i.failedSessions,
      receivingMxHostname: host && !/^[\d.:a-f]+$/i.test(host) ? host : null,
      receivingIp: host && /^[\d.:a-f]+$/i.test(host) ? host : null,
      sendingMtaIp: null,
      sendingIps: { count: i.sendingIps.count, top: i.sendingIps.top.map((t) => t.ip) },
      failureReasonCode: null,
      additionalInformation: null,
    },
    {
      policyDomain: i.domain,
      organization: i.reporters.length === 1 ? i.reporters[0]! : `${i.reporters.length} reporters`,
    },
  );
}

export async function incidentPage(ctx: PageContext): Promise<Page> {
  const id = ctx.params.id ?? '';
  const i = await findIncident(ctx.db, ctx.principal, id, ctx.incidents, ctx.now);
  if (!i) throw new NotFound(`no incident ${id}`);
  const today = ctx.now.toISOString().slice(0, 10);
  const [reports, checks] = await Promise.all([
    incidentReports(ctx.db, i),
    i.kind === 'failure'
      ? checksNear(ctx.db, [i.domain], i.lastDay)
      : Promise.resolve(new Map<string, StoredCheck[]>()),
  ]);
  const chart =
    i.kind === 'failure'
      ? await dailyChart(
          {
            days: i.daily.map((d) => d.day),
            successful: i.daily.map((d) => d.sessions - d.failedSessions),
            failedBy: [{ name: i.resultType, values: i.daily.map((d) => d.failedSessions) }],
            range: { from: i.firstDay, to: i.lastDay },
          },
          `Sessions of ${i.domain} on the days of this incident: the other sessions, and those that failed this way`,
        )
      : '';
  const posture =
    i.kind === 'failure'
      ? noteFor({ resultType: i.resultType, receivingMxHostname: i.subject }, checks.get(i.domain))
      : undefined;
  const eventTable: Table<TrackedIncident['events'][number]> = {
    id: 'events',
    caption: 'Events',
    rows: i.events,
    columns: [
      { label: 'Event', value: (r) => r.event },
      { label: 'Day', value: (r) => r.day },
      { label: 'At (UTC)', value: (r) => r.at },
      { label: 'By', value: (r) => r.actor },
      { label: 'Why', value: (r) => r.reason },
    ],
  };
  const reportTable: Table<(typeof reports)[number]> = {
    id: 'reports',
    caption: 'Reports that listed it (newest first)',
    rows: reports,
    empty: 'No report lists it (a stopped reporter sends none).',
    columns: [
      { label: 'Day', value: (r) => r.day },
      { label: 'Reporter', value: (r) => r.organization },
      {
        label: 'Failed sessions',
        value: (r) => r.failedSessions,
        cell: (r) => number(r.failedSessions),
        numeric: true,
      },
      { label: 'Report', value: (r) => r.reportKey, cell: (r) => html`<a href="/ui/reports/${r.reportKey}">open</a>` },
    ],
  };
  const body = html`<h1>${whatOf(i)} · <a href="/ui/domains/${i.domain}">${i.domain}</a></h1>
    <p>
      <strong>${whenOf(i, today)}.</strong> ${impactOf(i)}. Severity <b>${i.severity}</b>;
      ${i.state}${i.mutedUntil ? ` until ${i.mutedUntil} UTC` : ''}.
    </p>
    <ul>
      ${i.kind === 'failure' ? html`<li>Reported by ${i.reporters.join(', ') || 'nobody named'}</li>` : ''}
      ${
        i.kind === 'failure'
          ? html`<li>
              Sending IPs:
              ${i.sendingIps.count === 0 ? 'none named' : `${number(i.sendingIps.count)} (most: ${i.sendingIps.top.map((t) => `${t.ip}, ${number(t.failedSessions)}`).join('; ')})`}
            </li>`
          : ''
      }
      ${i.mode ? html`<li>MTA-STS mode when it failed: <code>${i.mode}</code></li>` : ''}
      ${i.previousId ? html`<li>It came back: <a href="/ui/incidents/${i.previousId}">the incident before</a></li>` : ''}
    </ul>
    ${actions(i, `/ui/incidents/${i.id}`)}
    ${
      chart
        ? html`<figure class="chart">
            <figcaption><h2>Timeline</h2></figcaption>
            ${chart}
          </figure>`
        : ''
    }
    ${
      i.kind === 'posture'
        ? html`<section>
            <h2>What the live check found</h2>
            <p>${i.finding ?? whatOf(i)}</p>
            <p>
              The ${i.resultType} check of ${i.subject} found it on ${plural(i.daily.length, 'day')}, the last on
              ${dayName(i.lastDay)}; it resolves on the day a check finds it fine.
            </p>
          </section>`
        : ''
    }
    ${
      i.kind === 'failure'
        ? html`<section>
            <h2>Diagnosis</h2>
            ${diagnosisView(incidentDiagnosis(i), { posture: noteInTime(posture, i.lastDay) })}
          </section>`
        : ''
    }
    ${table(reportTable, ctx.query)} ${table(eventTable, ctx.query)}`;
  return { title: `${i.domain}: ${whatOf(i)}`, body, tables: [reportTable, eventTable] };
}
