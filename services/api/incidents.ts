// Incidents as the API and the dashboard show them: derived from the report days of the window before the request's
// last day (services/common/incidents), with the state people's acts make, within a token's domains.
import type { ClickHouseClient } from '../common/clickhouse.ts';
import { quoteString } from '../common/clickhouse-compat.ts';
import { DETAIL_IDENTITY, currentRows, twinsOnce } from '../common/current-rows.ts';
import { readActs, recordAct, track, type Act, type TrackedIncident } from '../common/incidents/acts.ts';
import { pageIncidents, readIncidents, type CountedPage, type IncidentPage } from '../common/incidents/store.ts';
import { domainOfId } from '../common/incidents/derive.ts';
import { FAILURE_COLUMNS, SUBJECT_SQL } from '../common/incidents/facts.ts';
import { loadIncidents, type IncidentOptions } from '../common/incidents/load.ts';

export type { IncidentOptions } from '../common/incidents/load.ts';
import type { FailureDetailRow, Stored } from '../../schemas/rows.ts';
import type { Principal } from './auth.ts';
import type { Db, Range } from './queries.ts';

export interface IncidentFilter {
  domain?: string | undefined;
  state?: TrackedIncident['state'] | undefined;
  kind?: TrackedIncident['kind'] | undefined;
}

const STATE_ORDER = { open: 0, acknowledged: 1, muted: 2, resolved: 3 };
const SEVERITY_ORDER = { critical: 0, high: 1, medium: 2, low: 3 };

/** What is wrong now first (by state, severity, then the most recent), then the resolved ones, latest first. */
export const byUrgency = (a: TrackedIncident, b: TrackedIncident): number =>
  STATE_ORDER[a.state] - STATE_ORDER[b.state] ||
  (a.state === 'resolved' ? 0 : SEVERITY_ORDER[a.severity] - SEVERITY_ORDER[b.severity]) ||
  (b.resolvedDay ?? b.lastDay).localeCompare(a.resolvedDay ?? a.lastDay) ||
  a.id.localeCompare(b.id);

type PageFilter = { states?: TrackedIncident['state'][] | undefined; kind?: string | undefined };
/** Which page (and, with `count: false`, no total: a cursor needs only whether more follow). */
type PageWanted = { limit: number; offset: number; detail?: boolean };

export const visibleDomains = (principal: Principal, domain?: string): string[] | undefined =>
  domain ? [domain] : principal.domains ? [...principal.domains] : undefined;

/**
 * A page of the stored incidents that ran during the range, most urgent first, with the state people's acts make
 * now. The acts are few: the incidents of the domains they touch are tracked here, the order and the page are
 * ClickHouse's.
 */
export async function pageOfIncidents(
  db: Db,
  domains: string[] | undefined,
  range: Range,
  filter: PageFilter,
  page: PageWanted & { count: false },
  now: Date,
): Promise<IncidentPage<TrackedIncident>>;
export async function pageOfIncidents(
  db: Db,
  domains: string[] | undefined,
  range: Range,
  filter: PageFilter,
  page: PageWanted,
  now: Date,
): Promise<CountedPage<TrackedIncident>>;
export async function pageOfIncidents(
  db: Db,
  domains: string[] | undefined,
  range: Range,
  filter: PageFilter,
  page: PageWanted & { count?: boolean },
  now: Date,
): Promise<IncidentPage<TrackedIncident>> {
  const acts = await readActs(db, domains);
  const actedDomains = [...new Set(acts.map((a) => a.domain))];
  const acted =
    actedDomains.length === 0 ? [] : await readIncidents(db, { domains: actedDomains, from: range.from, to: range.to });
  const actedStates = new Map<string, string>();
  for (const i of acted) {
    const state = track(i, acts, now).state;
    if (state !== i.state) actedStates.set(i.id, state);
  }
  const found = await pageIncidents(db, { domains, ...range, ...filter, ...page, actedStates });
  return { ...found, incidents: found.incidents.map((i) => track(i, acts, now)) };
}

/** Incidents that ran during the range, most urgent first, a page at a time (`cursor`: how many came before). */
export async function listIncidents(
  db: Db,
  principal: Principal,
  range: Range,
  filter: IncidentFilter,
  page: { limit: number; offset: number },
  now: Date,
) {
  const { incidents, more } = await pageOfIncidents(
    db,
    visibleDomains(principal, filter.domain),
    range,
    { states: filter.state ? [filter.state] : undefined, kind: filter.kind },
    { ...page, count: false },
    now,
  );
  return {
    incidents: incidents.map(({ daily: _d, events: _e, ...rest }) => rest),
    next: more ? page.offset + page.limit : null,
  };
}

/** One incident by id (undefined when the token may not see it or there is none), with its days and events. */
export async function findIncident(
  db: Db,
  principal: Principal,
  id: string,
  options: IncidentOptions,
  now: Date,
): Promise<TrackedIncident | undefined> {
  const domain = domainOfId(id);
  if (!domain || (principal.domains && !principal.domains.has(domain))) return undefined;
  const today = now.toISOString().slice(0, 10);
  return (await loadIncidents(db, [domain], today, options, now)).find((i) => i.id === id);
}

/** The reports that listed an incident's failures (the newest first, at most 100). */
export async function incidentReports(db: Db, incident: TrackedIncident) {
  if (incident.kind !== 'failure') return [];
  const q = quoteString;
  const rows = await db.rows<
    Stored<FailureDetailRow, 'report_key'> & { org: string; report_day: string; failed: number }
  >(
    `SELECT report_key, any(organization) AS org, toString(any(day)) AS report_day, sum(failed_once) AS failed
     FROM (${twinsOnce(
       `SELECT * FROM (${currentRows({
         table: 'failure_details',
         identity: DETAIL_IDENTITY,
         columns: FAILURE_COLUMNS,
         days: `day >= toDate(${q(incident.firstDay)}) AND day <= toDate(${q(incident.lastDay)})`,
         domains: `policy_domain = ${q(incident.domain)}`,
         where: `result_type = ${q(incident.resultType)}`,
       })}) WHERE ${SUBJECT_SQL} = ${q(incident.subject)}`,
       ['organization', 'day'],
     )})
     GROUP BY report_key ORDER BY report_day DESC, report_key LIMIT 100`,
  );
  return rows.map((r) => ({
    reportKey: r.report_key,
    organization: r.org,
    day: r.report_day,
    failedSessions: r.failed,
  }));
}

/** Records a person's act on an incident and answers the incident as it now stands. */
export async function actOn(
  db: Db,
  ch: ClickHouseClient,
  principal: Principal,
  id: string,
  act: { event: Act; note?: string | undefined; until?: Date | undefined },
  options: IncidentOptions,
  now: Date,
): Promise<TrackedIncident | undefined> {
  const incident = await findIncident(db, principal, id, options, now);
  if (!incident) return undefined;
  await recordAct(ch, incident, { ...act, actor: principal.name, now });
  return await findIncident(db, principal, id, options, now);
}
