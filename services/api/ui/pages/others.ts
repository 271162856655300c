// Alerts, reporters and rejects: what the rules found, who reports each domain, and what senders got wrong.
import { gunzipSync } from 'node:zlib';
import { listRejects } from '../../queries.ts';
import { recentAlerts, reporterQuirks, reporters } from '../../dashboard-queries.ts';
import { explainFlag } from '../../flags.ts';
import { cursorParam, parseParams } from '../../params.ts';
import { quoteString } from '../../../common/clickhouse-compat.ts';
import { z } from 'zod';
import { Forbidden, type PageContext, pageRange, readableDomain, reportBounds } from '../context.ts';
import { html, link, table, type Table, periodForm } from '../html.ts';
import type { Page } from '../layout.ts';
import type { RejectRow, Stored } from '../../../../schemas/rows.ts';

export async function alertsPage(ctx: PageContext): Promise<Page> {
  const rows = await recentAlerts(ctx.db, ctx.principal, 200);
  type Row = (typeof rows)[number];
  const alerts: Table<Row> = {
    id: 'alerts',
    caption: 'The newest alerts',
    empty: 'No alerts.',
    rows,
    columns: [
      {
        label: 'Severity',
        value: (r) => r.severity,
        cell: (r) =>
          html`<span
            class="badge badge-${r.severity === 'critical' ? 'failing' : r.severity === 'warning' ? 'degraded' : 'unknown'}"
            >${r.severity}</span
          >`,
      },
      { label: 'Day', value: (r) => r.day },
      { label: 'Alert', value: (r) => r.title },
      {
        label: 'Evidence',
        value: (r) => r.policy_domain,
        cell: (r) =>
          html`<a href="${link(`/ui/domains/${encodeURIComponent(r.policy_domain)}`, { from: r.day, to: r.day })}"
              >${r.policy_domain} on ${r.day}</a
            >
            · <a href="${link('/ui/reports', { domain: r.policy_domain, from: r.day, to: r.day })}">its reports</a>`,
      },
      { label: 'Rule', value: (r) => r.rule },
      { label: 'Found', value: (r) => r.created_at },
    ],
  };
  return {
    title: 'Alerts',
    body: html`<h1>Alerts</h1>
      <p class="muted">What the alert rules found, newest first. Each links to the domain's day and its reports.</p>
      ${table(alerts, ctx.query)}`,
    tables: [alerts],
  };
}

export async function reportersPage(ctx: PageContext): Promise<Page> {
  const domainValue = ctx.query.get('domain') || undefined;
  const domain = domainValue ? readableDomain(ctx, domainValue) : undefined;
  const range = await pageRange(ctx, 30, { bounds: reportBounds(ctx, domain) });
  const rows = await reporters(ctx.db, ctx.principal, range, domain);
  const organizations = [...new Set(rows.map((r) => r.organization))];
  const quirks = await reporterQuirks(ctx.db, ctx.principal, organizations, range, domain);
  // Per domain and reporter: what that domain's reports from it carried.
  const quirksOf = new Map<string, string[]>();
  const keyOf = (d: string, o: string): string => JSON.stringify([d, o]);
  for (const q of quirks) {
    const key = keyOf(q.policy_domain, q.organization);
    quirksOf.set(key, [...(quirksOf.get(key) ?? []), `${q.flag} (${q.reports})`]);
  }
  const spanDays = expectedDays(range, ctx.now);
  type Row = (typeof rows)[number];
  const t: Table<Row> = {
    id: 'reporters',
    caption: `Who reports${domain ? ` ${domain}` : ' each domain'}, ${range.from} to ${range.to}`,
    rows,
    columns: [
      {
        label: 'Domain',
        value: (r) => r.policy_domain,
        cell: (r) => html`<a href="/ui/domains/${encodeURIComponent(r.policy_domain)}">${r.policy_domain}</a>`,
      },
      { label: 'Reporter', value: (r) => r.organization },
      {
        label: 'Days with a report',
        value: (r) => Number(r.days),
        cell: (r) => `${r.days} of ${spanDays}`,
        numeric: true,
      },
      { label: 'First seen', value: (r) => r.first_day },
      { label: 'Last seen', value: (r) => r.last_day },
      {
        label: 'Quirks flagged',
        value: (r) => (quirksOf.get(keyOf(r.policy_domain, r.organization)) ?? []).join('; '),
        cell: (r) =>
          html`${(quirksOf.get(keyOf(r.policy_domain, r.organization)) ?? []).map((x) => {
            const flag = x.replace(/ \(\d+\)$/, '');
            return html`<abbr title="${explainFlag(flag).meaning}">${x}</abbr> `;
          })}`,
      },
    ],
  };
  return {
    title: 'Reporters',
    body: html`<h1>Reporters</h1>
      ${periodForm({
        action: '/ui/reporters',
        range,
        field: { name: 'domain', label: 'Domain', value: domain },
        choices: { path: '/ui/reporters', query: ctx.query, period: range.period },
      })}
      ${table(t, ctx.query)}`,
    tables: [t],
  };
}

/**
 * The days of the range a daily reporter could have reported by `now`: today's reports arrive tomorrow (a report
 * covers a whole UTC day), so today is not a missing day.
 */
export function expectedDays(range: { from: string; to: string }, now: Date): number {
  const yesterday = Date.parse(`${now.toISOString().slice(0, 10)}T00:00:00Z`) - 86400_000;
  const last = Math.min(Date.parse(`${range.to}T00:00:00Z`), yesterday);
  return Math.max(0, (last - Date.parse(`${range.from}T00:00:00Z`)) / 86400_000 + 1);
}

/** The contact-info of a rejected report, where its body is JSON (or gzip of JSON) that names one. */
export function contactOf(rawBase64: string): string | undefined {
  let body = Buffer.from(rawBase64, 'base64');
  try {
    if (body[0] === 0x1f && body[1] === 0x8b) body = gunzipSync(body, { maxOutputLength: 1 << 20 });
  } catch {
    return undefined;
  }
  const m = /"contact-info"\s*:\s*"([^"\\]{1,200})"/.exec(body.toString('utf8', 0, 1 << 20));
  return m?.[1];
}

export async function rejectsPage(ctx: PageContext): Promise<Page> {
  if (ctx.principal.domains) throw new Forbidden('rejects are for operators (a token not limited to some domains)');
  const range = await pageRange(ctx, 7, { maxDays: 100 * 366 });
  const { cursor } = parseParams(
    z.object({
      cursor: cursorParam(
        z.object({
          at: z.string().regex(/^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$/),
          id: z.string().regex(/^[A-Za-z0-9-]{1,200}$/),
        }),
      ).optional(),
    }),
    { cursor: ctx.query.get('cursor') || undefined },
  );
  const page = await listRejects(ctx.db, range, { limit: 50, cursor });
  const ids = page.rejects.map((r) => quoteString(r.receiptId));
  const sources =
    ids.length === 0
      ? []
      : // Aliases that are no column's name: ClickHouse resolves a column named in WHERE to a same-named
        // aggregate alias (Code 184).
        await ctx.db.rows<Stored<RejectRow, 'receipt_id'> & { head: string; sender: string }>(
          `SELECT receipt_id, any(substring(raw_base64, 1, 65536)) AS head, '' AS sender FROM rejects
           WHERE receipt_id IN (${ids.join(', ')}) GROUP BY receipt_id
           UNION ALL
           SELECT receipt_id, '' AS head, any(envelope_from) AS sender FROM receipts
           WHERE receipt_id IN (${ids.join(', ')}) AND envelope_from != '' GROUP BY receipt_id`,
        );
  const contact = new Map<string, string>();
  for (const s of sources) {
    const c = s.sender || contactOf(s.head.slice(0, s.head.length - (s.head.length % 4)));
    if (c && !contact.has(s.receipt_id)) contact.set(s.receipt_id, c);
  }
  type Row = (typeof page.rejects)[number];
  const note = (r: Row): string =>
    `Hello,\n\nYour SMTP TLS report (RFC 8460) received on ${r.receivedAt} UTC over ${r.channel} could not be read: ` +
    `${r.reason}${r.detail ? ` (${r.detail})` : ''}. Please check your reporting software against RFC 8460 section 4 ` +
    `and send reports as application/tlsrpt+gzip JSON.\n\nReceipt ${r.receiptId}.`;
  const t: Table<Row> = {
    id: 'rejects',
    caption: `Rejected reports, ${range.from} to ${range.to}, newest first`,
    empty: 'No rejected reports in this period.',
    rows: page.rejects,
    columns: [
      { label: 'Received', value: (r) => r.receivedAt },
      { label: 'Channel', value: (r) => r.channel },
      { label: 'Reason', value: (r) => r.reason, cell: (r) => html`<code>${r.reason}</code>` },
      { label: 'Detail', value: (r) => r.detail },
      { label: 'From', value: (r) => r.remoteAddress },
      { label: 'Bytes', value: (r) => r.bytes, numeric: true },
      { label: 'Contact', value: (r) => contact.get(r.receiptId) ?? null },
      {
        label: 'Note to the reporter',
        value: (r) => note(r),
        cell: (r) => {
          const to = contact.get(r.receiptId);
          const mailto = to && /^(mailto:)?[^\s@]+@[^\s@]+$/.test(to) ? to.replace(/^mailto:/, '') : undefined;
          return html`<details>
            <summary>Note</summary>
            <pre>${note(r)}</pre>
            ${
              mailto
                ? html`<a
                    href="mailto:${encodeURIComponent(mailto)}?subject=${encodeURIComponent('Your SMTP TLS report could not be read')}&amp;body=${encodeURIComponent(note(r))}"
                    >Write to ${mailto}</a
                  >`
                : ''
            }
          </details>`;
        },
      },
      { label: 'Receipt', value: (r) => r.receiptId },
    ],
  };
  const next = page.next ? link('/ui/rejects', { from: range.from, to: range.to, cursor: page.next }) : undefined;
  return {
    title: 'Rejects',
    body: html`<h1>Rejects</h1>
      <p class="muted">Reports we could not store, with why; each has a note ready to send to the reporter.</p>
      ${periodForm({ action: '/ui/rejects', range })} ${table(t, ctx.query)}
      <p class="pager">${next ? html`<a href="${next}" rel="next">Older</a>` : ''}</p>`,
    tables: [t],
  };
}
