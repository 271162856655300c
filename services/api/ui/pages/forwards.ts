// Report forwards for operators (FORWARD_RULES): each delivery's newest state over the last 30 days, with the
// destination's answer, and "Send again" for one that gave up (POST /ui/forwards/:id/retry).
import { z } from 'zod';
import { FORWARD_STATES, listForwards } from '../../forwards.ts';
import { parseParams } from '../../params.ts';
import { Forbidden, type PageContext } from '../context.ts';
import { html, link, table, type Table } from '../html.ts';
import type { Page } from '../layout.ts';

type Forward = Awaited<ReturnType<typeof listForwards>>['forwards'][number];

export async function forwardsPage(ctx: PageContext): Promise<Page> {
  if (ctx.principal.domains) throw new Forbidden('forwards are for operators (a token not limited to some domains)');
  const { state } = parseParams(z.object({ state: z.enum(FORWARD_STATES).optional() }), {
    state: ctx.query.get('state') || undefined,
  });
  const { forwards } = await listForwards(ctx.db, { state, days: 30, limit: 500 });
  const here = link('/ui/forwards', { state });
  const t: Table<Forward> = {
    id: 'forwards',
    caption: `${state ? `${state[0]!.toUpperCase()}${state.slice(1)} forwards` : 'Forwards'}, the last 30 days, newest first`,
    empty: state ? `No ${state} forward in the last 30 days.` : 'No report forwarded in the last 30 days.',
    rows: forwards,
    columns: [
      { label: 'Last (UTC)', value: (f) => f.at },
      {
        label: 'Report',
        value: (f) => f.reportKey,
        cell: (f) => html`<a href="/ui/reports/${f.reportKey}"><code>${f.reportKey.slice(0, 12)}…</code></a>`,
      },
      { label: 'Destination', value: (f) => f.destination },
      { label: 'State', value: (f) => f.state },
      { label: 'Attempts', value: (f) => f.attempts, numeric: true },
      { label: 'Last error', value: (f) => f.error },
      {
        label: 'Action',
        value: () => null,
        cell: (f) =>
          f.state === 'failed'
            ? html`<form method="post" action="/ui/forwards/${f.id}/retry" class="inline">
                <input type="hidden" name="next" value="${here}" /><button type="submit">Send again</button>
              </form>`
            : '',
      },
    ],
  };
  const choice = (s: string | undefined, label: string) =>
    s === state ? html`<strong>${label}</strong>` : html`<a href="${link('/ui/forwards', { state: s })}">${label}</a>`;
  return {
    title: 'Forwards',
    body: html`<h1>Forwards</h1>
      <p class="muted">
        Reports sent on to other destinations (FORWARD_RULES), exactly as received. One that gave up keeps its report 30
        days: send it again once the destination takes it.
      </p>
      <p>
        ${choice(undefined, 'All')} · ${choice('failed', 'Failed')} · ${choice('retrying', 'Retrying')} ·
        ${choice('delivered', 'Delivered')}
      </p>
      ${table(t, ctx.query)}`,
    tables: [t],
  };
}
