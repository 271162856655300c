// The report list and one report as a readable document: who reported which days through which channel, each
// policy's counts in words, each failure detail as a sentence with its diagnosis, the flags explained, the raw JSON.
import { z } from 'zod';
import { getReport, listReports } from '../../queries.ts';
import { quoteString } from '../../../common/clickhouse-compat.ts';
import { explainFlag } from '../../flags.ts';
import { cursorParam, dateParam, parseParams, reportKeyParam } from '../../params.ts';
import type { RenderedDiagnosis } from '../../diagnosis.ts';
import { NotFound, type PageContext, pageRange, readableDomain, reportBounds } from '../context.ts';
import { diagnosisView } from '../diagnosis-view.ts';
import { html, link, number, plural, table, type Html, type Table, periodForm } from '../html.ts';
import type { Page } from '../layout.ts';

export async function reportsPage(ctx: PageContext): Promise<Page> {
  const domainValue = ctx.query.get('domain') || undefined;
  const domain = domainValue ? readableDomain(ctx, domainValue) : undefined;
  const range = await pageRange(ctx, 30, { maxDays: 100 * 366, bounds: reportBounds(ctx, domain) });
  const { cursor } = parseParams(
    z.object({ cursor: cursorParam(z.object({ day: dateParam, key: reportKeyParam })).optional() }),
    { cursor: ctx.query.get('cursor') || undefined },
  );
  const list = await listReports(ctx.db, ctx.principal, range, { domain, limit: 50, cursor });
  type Row = (typeof list.reports)[number];
  const reports: Table<Row> = {
    id: 'reports',
    caption: `Reports${domain ? ` covering ${domain}` : ''}, ${range.from} to ${range.to}, newest first`,
    rows: list.reports,
    columns: [
      { label: 'Day', value: (r) => r.day },
      {
        label: 'Reporter',
        value: (r) => r.organization,
        cell: (r) => html`<a href="/ui/reports/${r.reportKey}">${r.organization || '(no name)'}</a>`,
      },
      { label: 'Report id', value: (r) => r.reportId },
      { label: 'Policies', value: (r) => r.policies, numeric: true },
      { label: 'Channel', value: (r) => r.channel },
      { label: 'DKIM', value: (r) => r.dkim || null },
      { label: 'Flags', value: (r) => r.flags.join(' ') },
      { label: 'Key', value: (r) => r.reportKey },
    ],
  };
  const next = list.next
    ? link('/ui/reports', { domain, from: range.from, to: range.to, cursor: list.next })
    : undefined;
  const body = html`<h1>Reports</h1>
    ${periodForm({
      action: '/ui/reports',
      range,
      field: { name: 'domain', label: 'Domain', value: domain },
      choices: { path: '/ui/reports', query: ctx.query, period: range.period },
    })}
    ${table(reports, ctx.query)}
    <p class="pager">${next ? html`<a href="${next}" rel="next">Older reports</a>` : ''}</p>`;
  return { title: 'Reports', body, tables: [reports] };
}

/**
 * A delivery's DKIM verdict with its reason and signer: "fail: no key (d=example.com)", "pass (d=example.com,
 * aligned)". A pass needs no reason; a verdict's reason that only repeats it is left out.
 */
export function dkimVerdict(d: Record<string, unknown>): string {
  const result = str(d.dkim_result);
  if (!result) return 'not signed / not mail';
  const reason = str(d.dkim_reason).trim();
  const why = result !== 'pass' && reason && reason !== result ? `: ${reason}` : '';
  const by = str(d.dkim_domain) ? ` (d=${str(d.dkim_domain)}${Number(d.dkim_aligned) ? ', aligned' : ''})` : '';
  return `${result}${why}${by}`;
}

type Report = NonNullable<Awaited<ReturnType<typeof getReport>>>;
const str = (v: unknown): string =>
  typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'boolean' ? String(v) : '';
const list = (v: unknown): string[] => (Array.isArray(v) ? v.map(str) : []);

export async function loadReport(ctx: PageContext, detailLimit = 500): Promise<Report> {
  const key = parseParams(z.object({ key: reportKeyParam }), { key: ctx.params.key ?? '' }).key;
  const report = await getReport(ctx.db, ctx.principal, key, { detailLimit });
  if (!report) throw new NotFound(`no report ${key}`);
  return report;
}

/** A policy's counts and settings in sentences, each ended by one period. */
export function policySentences(ok: number, failed: number, p: Record<string, unknown>): string {
  const share = ok + failed > 0 ? ` (${((100 * failed) / (ok + failed)).toFixed(1)}% failed)` : '';
  const settings = [
    str(p.sts_mode) ? `MTA-STS mode ${str(p.sts_mode)}` : '',
    p.sts_max_age ? `max_age ${str(p.sts_max_age)}` : '',
    list(p.sts_mx).length ? `mx ${list(p.sts_mx).join(', ')}` : '',
  ].filter(Boolean);
  const hosts = list(p.mx_hosts).length ? `MX hosts ${list(p.mx_hosts).join(', ')}` : '';
  const second = [settings.join(', '), hosts].filter(Boolean).join('; ');
  const first = `${plural(ok, 'session')} succeeded and ${number(failed)} failed${share}.`;
  return second ? `${first} ${second.charAt(0).toUpperCase()}${second.slice(1)}.` : first;
}

function flagList(flags: string[]): Html {
  if (flags.length === 0) return html``;
  return html`<dl class="flags">
    ${flags.map((f) => {
      const e = explainFlag(f);
      return html`<dt><code>${f}</code></dt>
        <dd>
          ${e.meaning}${e.impact === 'sender' ? ' (for the sender to fix; the data was kept)' : e.impact === 'check' ? ' (worth a look)' : ''}
        </dd>`;
    })}
  </dl>`;
}

/** How far each origin is trusted (services/worker/trust.ts), in words. */
const TRUST_LABELS: Record<string, string> = {
  'operator-choice': "an operator's choice",
  'mail-dkim-aligned': 'mail signed by the reporter (DKIM)',
  'mail-without-aligned-dkim': "mail without the reporter's DKIM signature",
  'https-post': 'HTTPS POST (anyone can send one)',
};

/** A forwarding of the report to one destination, as its newest record says (services/scheduler/forward.ts). */
export interface ForwardShown {
  destination: string;
  state: string;
  attempts: number;
  error: string;
  last: string;
}

export async function reportPage(ctx: PageContext): Promise<Page> {
  const r = await loadReport(ctx);
  const rep = r.report;
  const org = str(rep.organization) || 'An unnamed reporter';
  const key = str(rep.report_key);
  const forwards: Table<ForwardShown> = {
    id: 'forwards',
    caption: 'Forwarded to',
    empty: 'Not forwarded (no FORWARD_RULES destination for its domains, or it arrived forwarded).',
    rows: await ctx.db.rows<ForwardShown>(
      `SELECT destination, argMax(state, version) AS state, argMax(attempts, version) AS attempts,
              argMax(error, version) AS error, toString(max(at)) AS last
       FROM forward_deliveries WHERE report_key = ${quoteString(key)} GROUP BY forward_id, destination
       ORDER BY destination`,
    ),
    columns: [
      { label: 'Destination', value: (f) => f.destination },
      { label: 'State', value: (f) => f.state },
      { label: 'Attempts', value: (f) => Number(f.attempts), numeric: true },
      { label: 'Last (UTC)', value: (f) => f.last },
      { label: 'Last error', value: (f) => f.error },
    ],
  };
  const receipts: Table<Record<string, unknown>> = {
    id: 'deliveries',
    caption: 'Deliveries of this report',
    rows: r.receipts,
    columns: [
      { label: 'Received', value: (d) => str(d.received_at) },
      { label: 'Channel', value: (d) => str(d.channel) },
      { label: 'From', value: (d) => str(d.envelope_from) || str(d.remote_address) },
      {
        label: 'DKIM',
        value: (d) => dkimVerdict(d),
      },
      { label: 'Attachment', value: (d) => str(d.attachment_name) || null },
      { label: 'Receipt', value: (d) => str(d.receipt_id) },
    ],
  };
  type CopyRow = (typeof r.copies)[number];
  const STATE: Record<CopyRow['state'], string> = {
    counted: 'counted',
    'same-figures': 'same figures (counted once)',
    conflict: 'other figures: not counted',
  };
  const copies: Table<CopyRow> = {
    id: 'copies',
    caption: 'Copies of this report received, best authenticated first',
    rows: r.copies,
    columns: [
      { label: 'State', value: (c) => STATE[c.state] },
      { label: 'Origin', value: (c) => TRUST_LABELS[c.trust] ?? c.trust },
      { label: 'Received', value: (c) => c.receivedAt },
      { label: 'Channel', value: (c) => c.channel },
      { label: 'Successful sessions', value: (c) => c.successfulSessions, numeric: true },
      { label: 'Failed sessions', value: (c) => c.failedSessions, numeric: true },
      { label: 'Receipt', value: (c) => c.receiptId },
    ],
  };
  const conflictNote =
    r.conflicts > 0
      ? html`<p class="warn" role="status">
          ${number(r.conflicts)} other cop${r.conflicts === 1 ? 'y' : 'ies'} of this report, with other figures, came
          from an origin no better authenticated than the counted one (an HTTPS POST can be sent by anyone). Their
          figures are counted nowhere; see the copies below. An operator can count one instead:
          <code>POST /v1/reports/${key}/copies/&lt;receipt&gt;/choose</code>.
        </p>`
      : '';
  const policies = r.policies.map((policy) => {
    const p = policy as typeof policy & Record<string, unknown>;
    const ok = Number(p.successful_sessions ?? 0);
    const failed = Number(p.failed_sessions ?? 0);
    const details = p.failureDetails as Array<
      Record<string, unknown> & { diagnosis: RenderedDiagnosis; posture?: { sentence: string; severity: string } }
    >;
    return html`<section class="policy" aria-label="Policy ${str(p.policy_type)} for ${str(p.policy_domain)}">
      <h3>
        ${str(p.policy_type) || 'policy'} policy for
        <a href="/ui/domains/${encodeURIComponent(str(p.policy_domain))}">${str(p.policy_domain)}</a>
      </h3>
      <p>${policySentences(ok, failed, p)}</p>
      ${list(p.policy_strings).length ? html`<pre>${list(p.policy_strings).join('\n')}</pre>` : ''}
      ${list(p.tlsa_records).length ? html`<p>TLSA: <code>${list(p.tlsa_records).join(' ')}</code></p>` : ''}
      ${flagList(list(p.flags))}
      ${details.map((d) =>
        diagnosisView(d.diagnosis, {
          additionalInformation: str(d.additional_information) || null,
          posture: d.posture,
        }),
      )}
    </section>`;
  });
  // The report's delivery is one of its receipts: the first with its verdict and signer says why.
  const reasonOf = (d: Record<string, unknown>): string =>
    str(r.receipts.find((x) => x.dkim_result === d.dkim_result && x.dkim_domain === d.dkim_domain)?.dkim_reason);
  const rawText = r.raw === null ? '' : JSON.stringify(r.raw, null, 2);
  const body = html`<h1>Report from ${org}</h1>
    <p>
      ${org} reported on ${str(rep.start_time)} to ${str(rep.end_time)} (UTC), report id
      <code>${str(rep.report_id)}</code>${
        str(rep.contact_info) ? html`, contact <code>${str(rep.contact_info)}</code>` : ''
      }.
      It reached us through
      ${str(rep.channel) || 'an unknown channel'}${
        str(rep.dkim_result) ? `, DKIM ${dkimVerdict({ ...rep, dkim_reason: reasonOf(rep) })}` : ''
      }.
    </p>
    ${conflictNote}
    ${
      list(rep.flags).length
        ? html`<h2>What the pipeline noticed</h2>
            ${flagList(list(rep.flags))}`
        : ''
    }
    <h2>Policies</h2>
    ${policies}
    ${r.failureDetailsNext ? html`<p class="muted">More failure details than shown here: see the JSON API.</p>` : ''}
    ${table(receipts, ctx.query)} ${table(copies, ctx.query)} ${table(forwards, ctx.query)}
    <section>
      <h2>The report as sent</h2>
      <p><a href="/ui/reports/${key}/raw.json" download="tlsrpt-${key}.json">Download the raw JSON</a></p>
      ${r.rawOmitted ? html`<p class="muted">Not shown: ${r.rawOmitted}.</p>` : rawText.length <= 200_000 ? html`<pre class="json">${rawText}</pre>` : html`<p class="muted">Too long to show here; download it.</p>`}
    </section>`;
  return { title: `Report from ${org}`, body, tables: [receipts, copies, forwards] };
}
