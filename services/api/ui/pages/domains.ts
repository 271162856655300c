// The domain list: every policy domain the principal may read, with its status, failure rate, a trend, reporters
// and the MTA-STS policy reporters last saw. Pages of 50 by name; a name prefix narrows it.
import { z } from 'zod';
import { listDomains, statusOf } from '../../queries.ts';
import { domainTrends } from '../../dashboard-queries.ts';
import { cursorParam, parseParams } from '../../params.ts';
import { sparkline } from '../charts.ts';
import { type PageContext, pageRange, reportBounds } from '../context.ts';
import { html, link, number, percent, statusBadge, table, type Table, periodForm } from '../html.ts';
import type { Page } from '../layout.ts';

const PAGE = 50;

export async function domainsPage(ctx: PageContext): Promise<Page> {
  const range = await pageRange(ctx, 7, { bounds: reportBounds(ctx) });
  const p = parseParams(
    z.object({
      prefix: z
        .string()
        .max(253)
        .transform((s) => s.trim().toLowerCase())
        .pipe(z.string().regex(/^[a-z0-9_.-]*$/, 'the start of a domain name'))
        .optional(),
      cursor: cursorParam(z.object({ domain: z.string().max(253) })).optional(),
    }),
    { prefix: ctx.query.get('q') || undefined, cursor: ctx.query.get('cursor') || undefined },
  );
  const list = await listDomains(ctx.db, ctx.principal, range, ctx.threshold, {
    limit: PAGE,
    prefix: p.prefix,
    cursor: p.cursor,
  });
  const trends = await domainTrends(
    ctx.db,
    list.domains.map((d) => d.domain),
    range,
  );
  type Row = (typeof list.domains)[number];
  const trendOf = (r: Row) => trends.get(r.domain);
  // Each row's daily failure rates, once (its trend cell, CSV value and label all read them).
  const ratesOf = new Map(
    list.domains.map((r) => [
      r.domain,
      (trendOf(r)?.daily ?? []).map(([day, ok, failed]) => ({
        day,
        rate: ok + failed === 0 ? 0 : failed / (ok + failed),
      })),
    ]),
  );
  const rates = (r: Row) => ratesOf.get(r.domain) ?? [];
  // The period's figures, as the domain page counts them for the same period (each report's sessions once).
  const period = (r: Row) => {
    const [ok, failed] = (trendOf(r)?.daily ?? []).reduce(([a, b], [, o, f]) => [a + o, b + f], [0, 0]);
    return { ok, failed, rate: ok + failed === 0 ? 0 : failed / (ok + failed) };
  };
  const worst = (r: Row): string => {
    const points = rates(r);
    const top = points.reduce((best, p) => (p.rate > best.rate ? p : best), points[0]!);
    return points.length === 0 ? '' : `worst ${percent(top.rate)} on ${top.day}`;
  };
  const domains: Table<Row> = {
    id: 'domains',
    caption: `Policy domains, ${range.from} to ${range.to}`,
    empty: p.prefix
      ? `No domain starting with "${p.prefix}" has reports in this period.`
      : 'No reports in this period.',
    rows: list.domains,
    columns: [
      {
        label: 'Domain',
        value: (r) => r.domain,
        cell: (r) =>
          html`<a href="${link(`/ui/domains/${encodeURIComponent(r.domain)}`, { from: range.from, to: range.to })}"
            >${r.domain}</a
          >`,
      },
      {
        label: 'Status',
        value: (r) => statusOf(period(r).failed, period(r).ok, ctx.threshold),
        cell: (r) => statusBadge(statusOf(period(r).failed, period(r).ok, ctx.threshold)),
      },
      {
        label: 'Failed sessions',
        value: (r) => period(r).failed,
        cell: (r) => number(period(r).failed),
        numeric: true,
      },
      {
        label: 'Successful sessions',
        value: (r) => period(r).ok,
        cell: (r) => number(period(r).ok),
        numeric: true,
      },
      {
        label: 'Failure rate',
        value: (r) => Number(period(r).rate.toFixed(6)),
        cell: (r) => percent(period(r).rate),
        numeric: true,
      },
      {
        label: 'Failure rate (latest day)',
        value: (r) => Number(r.failureRate.toFixed(6)),
        cell: (r) => percent(r.failureRate),
        numeric: true,
      },
      {
        label: 'Trend',
        value: worst,
        cell: (r) =>
          sparkline(
            rates(r),
            range,
            `daily failure rate: ${rates(r)
              .map((p) => `${p.day} ${percent(p.rate)}`)
              .join(', ')}`,
          ),
      },
      { label: 'Reporters', value: (r) => (trendOf(r)?.organizations ?? []).sort().join(' ') },
      { label: 'MTA-STS mode', value: (r) => trendOf(r)?.sts_mode || null },
      { label: 'MX patterns', value: (r) => (trendOf(r)?.sts_mx ?? []).join(' ') || null },
      { label: 'Latest day', value: (r) => r.latestDay },
    ],
  };
  const next = list.next
    ? link('/ui/domains', { q: p.prefix, from: range.from, to: range.to, cursor: list.next })
    : undefined;
  const body = html`<h1>Domains</h1>
    ${periodForm({
      action: '/ui/domains',
      range,
      field: { name: 'q', label: 'Domain name starts with', value: p.prefix },
      search: true,
      choices: { path: '/ui/domains', query: ctx.query, period: range.period },
    })}
    <p class="muted">
      Status, sessions and failure rate are the period's, as on each domain's page: ok (no failed session), degraded
      (failures below ${percent(ctx.threshold)}), failing (above); the latest day's rate is shown beside them.
    </p>
    ${table(domains, ctx.query)}
    <p class="pager">
      ${p.cursor ? html`<a href="${link('/ui/domains', { q: p.prefix, from: range.from, to: range.to })}">First page</a>` : ''}
      ${next ? html`<a href="${next}" rel="next">Next page</a>` : ''}
    </p>`;
  return { title: 'Domains', body, tables: [domains] };
}
