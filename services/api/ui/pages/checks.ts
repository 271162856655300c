// A managed domain's live checks (operators, and tokens limited to domains that include it): one run's results, each
// finding's history over the recent runs (since when it is as it is, what it was before), every run with its counts,
// and "Check now" (the scheduler runs it, as POST /v1/checks/{domain} does).
import { quoteString } from '../../../common/clickhouse-compat.ts';
import { isManagedDomain } from '../../../common/posture-store.ts';
import { NotFound, ParamError, readableDomain, type PageContext } from '../context.ts';
import { checkBadge, html, plural, table, type Html, type Table } from '../html.ts';
import type { Page } from '../layout.ts';

/** The runs a page looks back over: four days at the default interval of 6 hours, plus the ones "check now" adds. */
export const RUNS_SHOWN = 30;

export interface CheckRow {
  at: string;
  check_name: string;
  subject: string;
  severity: string;
  summary: string;
}

export interface Run {
  at: string;
  ok: number;
  warning: number;
  critical: number;
}

/** A finding (a check of one subject) over the runs shown: what it is now, since when, and what it was before. */
export interface Finding {
  check: string;
  subject: string;
  /** Its severity in the newest run, or `gone` when that run did not find the subject (an MX host removed). */
  now: string;
  summary: string;
  /** The oldest run of the streak that ends with the newest run. */
  since: string;
  /** The run before that streak, and what the finding was then (`absent` when it did not find the subject). */
  before: { at: string; severity: string } | undefined;
  /** Runs shown in which it was a warning or critical. */
  badRuns: number;
}

const RANK: Record<string, number> = { critical: 0, warning: 1, gone: 2, ok: 3 };

/** Each finding's history from the runs' rows, newest run first in `runs`. */
export function findings(rows: CheckRow[], runs: string[]): Finding[] {
  const byKey = new Map<string, Map<string, CheckRow>>();
  for (const r of rows) {
    const key = `${r.check_name}\u0000${r.subject}`;
    if (!byKey.has(key)) byKey.set(key, new Map());
    byKey.get(key)!.set(r.at, r);
  }
  const out: Finding[] = [];
  for (const [key, seen] of byKey) {
    const [check, subject] = key.split('\u0000') as [string, string];
    const severityAt = (at: string): string => seen.get(at)?.severity ?? 'absent';
    const now = severityAt(runs[0]!);
    let i = 0;
    while (i + 1 < runs.length && severityAt(runs[i + 1]!) === now) i++;
    const latestSeen = runs.find((at) => seen.has(at))!;
    out.push({
      check,
      subject,
      now: now === 'absent' ? 'gone' : now,
      summary: seen.get(latestSeen)!.summary,
      since: runs[i]!,
      before: i + 1 < runs.length ? { at: runs[i + 1]!, severity: severityAt(runs[i + 1]!) } : undefined,
      badRuns: [...seen.values()].filter((r) => r.severity !== 'ok').length,
    });
  }
  return out.sort(
    (a, b) =>
      (RANK[a.now] ?? 4) - (RANK[b.now] ?? 4) || a.check.localeCompare(b.check) || a.subject.localeCompare(b.subject),
  );
}

const RUN_AT = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/;

export async function checksPage(ctx: PageContext): Promise<Page> {
  const domain = readableDomain(ctx, ctx.params.domain ?? '');
  const d = quoteString(domain);
  const [isManaged, rows] = await Promise.all([
    isManagedDomain((sql) => ctx.db.rows(sql), ctx.postureDomains, domain),
    ctx.db.rows<CheckRow>(
      `SELECT toString(checked_at) AS at, check_name, subject, severity, summary FROM posture_checks
       WHERE domain = ${d} AND checked_at >= (SELECT min(c) FROM
         (SELECT DISTINCT checked_at AS c FROM posture_checks WHERE domain = ${d} ORDER BY c DESC LIMIT ${RUNS_SHOWN}))
       ORDER BY at DESC, check_name, subject`,
    ),
  ]);
  if (!isManaged && rows.length === 0)
    throw new NotFound(`${domain} is not a managed domain (hosted here or in POSTURE_DOMAINS): never checked`);
  const runs: Run[] = [];
  for (const r of rows) {
    if (runs.at(-1)?.at !== r.at) runs.push({ at: r.at, ok: 0, warning: 0, critical: 0 });
    const run = runs.at(-1)!;
    if (r.severity === 'ok' || r.severity === 'warning' || r.severity === 'critical') run[r.severity]++;
  }
  const wanted = ctx.query.get('run');
  if (wanted !== null && !(RUN_AT.test(wanted) && runs.some((r) => r.at === wanted)))
    throw new ParamError('run', `not one of the ${RUNS_SHOWN} newest runs of ${domain}`);
  const shownAt = wanted ?? runs[0]?.at;
  const results: Table<CheckRow> = {
    id: 'results',
    caption: shownAt ? `The run of ${shownAt} UTC` : 'The newest run',
    empty: `No check of ${domain} yet.`,
    rows: rows.filter((r) => r.at === shownAt),
    columns: [
      { label: 'Check', value: (r) => r.check_name },
      { label: 'Subject', value: (r) => r.subject },
      { label: 'Result', value: (r) => r.severity, cell: (r) => checkBadge(r.severity) },
      { label: 'Found', value: (r) => r.summary },
    ],
  };
  const history: Table<Finding> = {
    id: 'findings',
    caption: `Each finding over the last ${plural(runs.length, 'run')}`,
    empty: 'Nothing found yet.',
    rows: findings(
      rows,
      runs.map((r) => r.at),
    ),
    columns: [
      { label: 'Check', value: (f) => f.check },
      { label: 'Subject', value: (f) => f.subject },
      { label: 'Now', value: (f) => f.now, cell: (f) => checkBadge(f.now) },
      { label: 'Since (UTC)', value: (f) => f.since },
      {
        label: 'Before',
        value: (f) => (f.before ? `${f.before.severity} at ${f.before.at}` : ''),
        cell: (f) =>
          f.before ? html`${checkBadge(f.before.severity)} at ${f.before.at}` : html`<span class="muted">—</span>`,
      },
      { label: 'Runs not ok', value: (f) => f.badRuns, numeric: true },
      { label: 'Latest found', value: (f) => f.summary },
    ],
  };
  const runTable: Table<Run> = {
    id: 'runs',
    caption: 'Runs',
    empty: 'No run yet.',
    rows: runs,
    columns: [
      {
        label: 'Run (UTC)',
        value: (r) => r.at,
        cell: (r) =>
          r.at === shownAt
            ? html`<strong>${r.at}</strong>`
            : html`<a href="?run=${encodeURIComponent(r.at)}">${r.at}</a>`,
      },
      { label: 'Critical', value: (r) => r.critical, numeric: true },
      { label: 'Warnings', value: (r) => r.warning, numeric: true },
      { label: 'OK', value: (r) => r.ok, numeric: true },
    ],
  };
  return {
    title: `Checks: ${domain}`,
    body: html`<h1>Live checks: ${domain}</h1>
      <p class="muted">
        What a sending MTA finds when it delivers to ${domain}: its DNS records, its MTA-STS policy, each MX host's
        STARTTLS, certificate and TLSA records. The scheduler checks every managed domain on its interval;
        ${isManaged ? 'check now runs one at once.' : `${domain} is no longer managed: no new check runs.`}
      </p>
      ${isManaged ? checkNowButton(domain, `/ui/checks/${encodeURIComponent(domain)}`) : ''}
      ${table(results, ctx.query)} ${table(history, ctx.query)} ${table(runTable, ctx.query)}`,
    tables: [results, history, runTable],
  };
}

/** "Check now": a same-origin POST; the answer goes back to `next` once the run is stored. */
export function checkNowButton(domain: string, next: string): Html {
  return html`<form method="post" action="/ui/checks/${encodeURIComponent(domain)}/run" class="inline">
    <input type="hidden" name="next" value="${next}" />
    <button type="submit">Check now</button>
  </form>`;
}
