// Server-rendered HTML: a tagged template that escapes every value (report fields are hostile text), the page shell,
// and tables that can also be exported as CSV or JSON.
const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Markup that is already safe (built by `html` or `raw` on our own constants). */
export class Html {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

export const escapeHtml = (s: string): string => s.replace(/[&<>"']/g, (c) => ESCAPES[c]!);
export const raw = (text: string): Html => new Html(text);

type Value = Html | string | number | boolean | null | undefined | Value[];

function render(v: Value): string {
  if (v instanceof Html) return v.text;
  if (Array.isArray(v)) return v.map(render).join('');
  if (v === null || v === undefined || v === false) return '';
  return escapeHtml(String(v));
}

export function html(strings: TemplateStringsArray, ...values: Value[]): Html {
  let out = strings[0] ?? '';
  values.forEach((v, i) => (out += render(v) + (strings[i + 1] ?? '')));
  return new Html(out);
}

/** `/ui/x?a=1` with the given query (undefined and '' left out). */
export function link(path: string, query: Record<string, string | number | undefined> = {}): string {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== '') qs.set(k, String(v));
  const s = qs.toString();
  return s ? `${path}?${s}` : path;
}

export interface Column<T> {
  label: string;
  /** The value exported in CSV and JSON. */
  value: (row: T) => string | number | null;
  /** The cell as shown, when it is more than the value (a link, a badge). */
  cell?: (row: T) => Html | string | number;
  numeric?: boolean;
}

export interface Table<T> {
  /** Names the table in export links (`?export=<id>&format=csv`). */
  id: string;
  caption: string;
  columns: Column<T>[];
  rows: T[];
  empty?: string;
}

/** A table with its caption and export links (the current page's query plus export and format). */
export function table<T>(t: Table<T>, query: URLSearchParams): Html {
  const exportLink = (format: string): string => {
    const q = new URLSearchParams(query);
    q.set('export', t.id);
    q.set('format', format);
    return `?${q.toString()}`;
  };
  if (t.rows.length === 0) {
    return html`<section class="table">
      <h2>${t.caption}</h2>
      <p class="empty">${t.empty ?? 'Nothing in this period.'}</p>
    </section>`;
  }
  return html`<section class="table" aria-labelledby="t-${t.id}">
    <div class="table-head">
      <h2 id="t-${t.id}">${t.caption}</h2>
      <p class="exports">
        Export: <a href="${exportLink('csv')}" download>CSV</a> <a href="${exportLink('json')}" download>JSON</a>
      </p>
    </div>
    <div class="scroll">
      <table aria-labelledby="t-${t.id}">
        <thead>
          <tr>
            ${t.columns.map((c) => html`<th scope="col" ${c.numeric ? raw(' class="num"') : ''}>${c.label}</th>`)}
          </tr>
        </thead>
        <tbody>
          ${t.rows.map(
            (r) =>
              html`<tr>
                ${t.columns.map(
                  (c) =>
                    html`<td${c.numeric ? raw(' class="num"') : ''}>${c.cell ? c.cell(r) : (c.value(r) ?? '')}</td>`,
                )}
              </tr>`,
          )}
        </tbody>
      </table>
    </div>
  </section>`;
}

/** A CSV field: quoted when needed; a leading = + - @ is prefixed with ' so spreadsheets do not run it as a formula. */
function csvField(v: string | number | null): string {
  if (v === null) return '';
  let s = String(v);
  if (typeof v === 'string' && /^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function tableCsv<T>(t: Table<T>): string {
  const lines = [t.columns.map((c) => csvField(c.label)).join(',')];
  for (const r of t.rows) lines.push(t.columns.map((c) => csvField(c.value(r))).join(','));
  return lines.join('\r\n') + '\r\n';
}

export function tableJson<T>(t: Table<T>): unknown[] {
  return t.rows.map((r) => Object.fromEntries(t.columns.map((c) => [c.label, c.value(r)])));
}

/** How a page's period was chosen: typed dates, the latest data (the default), or all time. */
export type Period = 'dates' | 'latest' | 'all';

/**
 * The form above a page's tables: the period (from, to), a text field where the page takes one (a domain, a name
 * prefix), and whatever follows the button (links).
 */
export function periodForm(o: {
  action?: string;
  range: { from: string; to: string };
  field?: { name: string; label: string; value: string | undefined };
  search?: boolean;
  after?: Html;
  /** Links to the latest data and to all time, keeping the page's other choices (`path`, `query`). */
  choices?: { path: string; query: URLSearchParams; period: Period };
}): Html {
  return html`<form
    class="inline"
    method="get"
    ${o.action ? html` action="${o.action}"` : ''}${o.search ? html` role="search"` : ''}
  >
    ${o.field ? html`<label>${o.field.label} <input name="${o.field.name}" value="${o.field.value ?? ''}" autocomplete="off" /></label>` : ''}
    <label>From <input type="date" name="from" value="${o.range.from}" /></label>
    <label>To <input type="date" name="to" value="${o.range.to}" /></label>
    <button type="submit">Show</button>
    ${o.choices ? periodChoices(o.choices) : ''} ${o.after ?? ''}
  </form>`;
}

/** Where the period form's fields are not the page's own: the page, the cursor, an export. */
const PERIOD_FREE = ['from', 'to', 'period', 'cursor', 'export', 'format'];

function periodChoices(c: { path: string; query: URLSearchParams; period: Period }): Html {
  const href = (period: string | undefined): string => {
    const q = new URLSearchParams(c.query);
    for (const k of PERIOD_FREE) q.delete(k);
    return link(c.path, { ...Object.fromEntries(q), period });
  };
  const choice = (period: string, label: string, value: string | undefined): Html =>
    html`<a href="${href(value)}" ${c.period === period ? raw(' aria-current="true" class="current"') : ''}
      >${label}</a
    >`;
  return html`<span class="periods"
    >${choice('latest', 'Latest data', undefined)} ${choice('all', 'All time', 'all')}</span
  >`;
}

export const number = (n: number): string => n.toLocaleString('en-US');

/** "1 day", "3 days": a count and its word. */
export const plural = (n: number, word: string): string => `${number(n)} ${word}${n === 1 ? '' : 's'}`;
export const percent = (rate: number): string => `${(rate * 100).toFixed(rate > 0 && rate < 0.001 ? 3 : 1)}%`;

export type Status = 'ok' | 'degraded' | 'failing';
export const statusBadge = (s: string): Html =>
  html`<span class="badge badge-${['ok', 'degraded', 'failing'].includes(s) ? s : 'unknown'}">${s}</span>`;

/** A live check's result as a badge: ok, critical as failing, anything else (a warning, gone) as unknown. */
export const checkBadge = (severity: string, title = ''): Html =>
  html`<span
    class="badge badge-${severity === 'ok' ? 'ok' : severity === 'critical' ? 'failing' : 'unknown'}"
    title="${title}"
    >${severity}</span
  >`;
