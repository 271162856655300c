// The incidents as the scheduler last derived them (migration 0013; their texts apart, 0017): written per domain under
// one version, read by the lists (the API's, the dashboard's Issues) without deriving anything. One incident's page
// derives its domain anew.
import { insertTsv, type ClickHouseClient } from '../clickhouse.ts';
import { inList, quoteString } from '../clickhouse-compat.ts';
import type { Db } from '../db.ts';
import { sqlInteger } from '../sql.ts';
import type { Incident } from './derive.ts';

const q = quoteString;
/** The stored resolved_day of an incident still open, and the first day of "every day". */
export const NO_DAY = '1970-01-01';

/**
 * Writes the domains' incidents as their newest version (a domain without any gets an empty version), derived from
 * the window starting `windowFrom`.
 */
export async function writeIncidents(
  client: ClickHouseClient,
  domains: string[],
  incidents: Incident[],
  version: number,
  windowFrom: string,
): Promise<void> {
  if (incidents.length > 0) {
    // The texts first: a list finds a row in `incidents`, then its texts.
    await insertTsv(
      client,
      'incident_texts',
      ['domain', 'id', 'version', 'summary', 'detail'],
      incidents.map((i) => {
        const { daily, events, resume, ...summary } = i;
        return {
          domain: i.domain,
          id: i.id,
          version,
          summary: JSON.stringify(summary),
          detail: JSON.stringify(resume ? { daily, events, resume } : { daily, events }),
        };
      }),
    );
    await insertTsv(
      client,
      'incidents',
      [
        'domain',
        'id',
        'kind',
        'state',
        'first_day',
        'last_day',
        'resolved_day',
        'severity',
        'summary',
        'detail',
        'version',
      ],
      incidents.map((i) => ({
        domain: i.domain,
        id: i.id,
        kind: i.kind,
        state: i.state,
        first_day: i.firstDay,
        last_day: i.lastDay,
        resolved_day: i.resolvedDay ?? NO_DAY,
        severity: i.severity,
        // In incident_texts (0017); the columns stay for the rows written before it.
        summary: '',
        detail: '',
        version,
      })),
    );
  }
  // After the incidents: a reader never sees a version whose rows are not all there.
  if (domains.length > 0) {
    await insertTsv(
      client,
      'incident_windows',
      ['domain', 'version', 'window_from'],
      domains.map((domain) => ({ domain, version, window_from: windowFrom })),
    );
    await insertTsv(
      client,
      'incident_domains',
      ['domain', 'version'],
      domains.map((domain) => ({ domain, version })),
    );
  }
}

export interface StoredScope {
  /** Only these domains; every domain when undefined. */
  domains?: string[] | undefined;
  /** Incidents that ran during these days (open ones, and resolved ones that ended in them). */
  from: string;
  to: string;
  /** With their days and events (the Issues page's cards); without by default. */
  detail?: boolean;
  /** With their checkpoints too (the scheduler's derivation goes on from them). */
  resume?: boolean;
}

/**
 * The stored incidents of the scope, each from its domain's newest version, with their texts (incident_texts). ALL,
 * not ANY: current ClickHouse's ANY INNER JOIN keeps one left row per key, a domain's first incident only (its right
 * side has one row per domain).
 */
export async function readIncidents(db: Db, scope: StoredScope): Promise<Incident[]> {
  const domains = scope.domains ? ` AND domain IN ${inList(scope.domains)}` : '';
  const rows = await db.rows<{ summary: string; detail?: string }>(
    `SELECT summary${scope.detail ? ', detail' : ''} FROM incident_texts
     WHERE (domain, id, version) IN (
       SELECT domain, id, version FROM incidents
       ALL INNER JOIN (SELECT domain, max(version) AS newest FROM incident_domains WHERE 1 ${domains} GROUP BY domain)
         AS newest_versions USING domain
       WHERE version = newest ${domains} AND first_day <= toDate(${q(scope.to)})
         AND (state != 'resolved' OR resolved_day >= toDate(${q(scope.from)})))${domains}
     LIMIT 1 BY id LIMIT ${sqlInteger(1_000_000)}`,
  );
  return rows.map((r) => parse(r, scope.resume));
}

const STATE_RANK = "['open', 'acknowledged', 'muted', 'resolved']";
const SEVERITY_RANK = "['critical', 'high', 'medium', 'low']";

export interface PageQuery extends StoredScope {
  /** Only incidents in these states (as people's acts make them). */
  states?: string[] | undefined;
  kind?: string | undefined;
  limit: number;
  offset: number;
  /** The state people's acts make of some incidents (by id); the others are as derived. */
  actedStates: Map<string, string>;
  /** Whether to count every match (`total`); without, `more` alone says whether a page follows. */
  count?: boolean;
}

/** A page, whether more match after it, and how many match in all when counted. */
export interface IncidentPage<T = Incident> {
  incidents: T[];
  more: boolean;
  total?: number;
}
export type CountedPage<T = Incident> = IncidentPage<T> & { total: number };

/**
 * A page of the stored incidents, most urgent first (by state, severity unless resolved, then the latest day), and
 * how many match: ordered and cut by ClickHouse, so a page costs the same with 10 or 100,000 incidents. The count is
 * a second query beside the page's, on the same cores: a list that needs only "more or not" asks for one row more
 * instead.
 */
export async function pageIncidents(db: Db, p: PageQuery & { count: false }): Promise<IncidentPage>;
export async function pageIncidents(db: Db, p: PageQuery): Promise<CountedPage>;
export async function pageIncidents(db: Db, p: PageQuery): Promise<IncidentPage> {
  const domains = p.domains ? ` AND domain IN ${inList(p.domains)}` : '';
  const acted = [...p.actedStates];
  const state =
    acted.length === 0
      ? 'state'
      : `transform(id, [${acted.map(([id]) => q(id)).join(', ')}], [${acted.map(([, st]) => q(st)).join(', ')}], state)`;
  const where = [
    `first_day <= toDate(${q(p.to)})`,
    `(effective != 'resolved' OR greatest(resolved_day, last_day) >= toDate(${q(p.from)}))`,
    ...(p.states ? [`effective IN (${p.states.map(q).join(', ')})`] : []),
    ...(p.kind ? [`kind = ${q(p.kind)}`] : []),
  ].join(' AND ');
  // The same conditions on the stored state, in the scan (acted-on incidents let through: their state is another):
  // a list of open incidents looks the versions of the open ones up, not those of every incident of every version.
  const actedIds = acted.length === 0 ? '' : ` OR id IN (${acted.map(([id]) => q(id)).join(', ')})`;
  const stored = [
    `first_day <= toDate(${q(p.to)})`,
    `(state != 'resolved' OR greatest(resolved_day, last_day) >= toDate(${q(p.from)})${actedIds})`,
    ...(p.states ? [`(state IN (${p.states.map(q).join(', ')})${actedIds})`] : []),
    ...(p.kind ? [`kind = ${q(p.kind)}`] : []),
  ].join(' AND ');
  // The small columns only: the texts (summary, detail) are read for the page's rows alone (incident_texts). The rows
  // of their domain's newest version, those versions read FINAL (a grouped IN inside the scan took 3× as long), and in
  // the same query: the set is built before the rows are read, so each version it holds has all its rows there. On a
  // cluster it is right alike: a domain's rows and versions share a shard.
  const scan = `FROM (SELECT domain, id, kind, severity, first_day, last_day, resolved_day, version, ${state} AS effective
      FROM incidents WHERE ${stored}${domains})
    WHERE ${where} AND (domain, version) IN (SELECT domain, version FROM incident_domains FINAL WHERE 1${domains})`;
  const counted = p.count ?? true;
  const count = counted ? db.rows<{ n: number }>(`SELECT uniqExact(id) AS n ${scan}`) : Promise.resolve([]);
  const [ordered, [countRow]] = await Promise.all([currentInOrder(db, scan, p.offset + p.limit + 1), count]);
  const total = counted ? Number(countRow?.n ?? 0) : undefined;
  const more = counted ? p.offset + p.limit < total! : ordered.length > p.offset + p.limit;
  const page = ordered.slice(p.offset, p.offset + p.limit);
  if (page.length === 0) return { incidents: [], ...(counted ? { total } : {}), more };
  // The newest texts of the page's incidents: a version written since the page was read may have replaced the
  // texts of the page's version already (merged).
  const texts = await db.rows<{ id: string; summary: string; detail?: string }>(
    `SELECT id, summary${p.detail ? ', detail' : ''} FROM incident_texts
     WHERE domain IN ${inList([...new Set(page.map((r) => r.domain))])} AND id IN ${inList(page.map((r) => r.id))}
     ORDER BY version DESC LIMIT 1 BY id`,
  );
  const byId = new Map(texts.map((t) => [t.id, t]));
  return {
    incidents: page.flatMap((r) => {
      const t = byId.get(r.id);
      return t ? [parse(t)] : [];
    }),
    ...(counted ? { total } : {}),
    more,
  };
}

type StoredRow = { domain: string; id: string };

/**
 * The first `wanted` incidents of the scan in the lists' order, each once. The scan's rows in order, cut: a partial
 * sort (8 ms for 41,000 open incidents, where `LIMIT 1 BY id` sorted them all in 30 ms). A version written twice
 * (an insert retried, until merged) is dropped here; when that leaves too few, more rows are read.
 */
async function currentInOrder(db: Db, scan: string, wanted: number): Promise<StoredRow[]> {
  for (let take = 2 * wanted + 100; ; take *= 4) {
    const rows = await db.rows<StoredRow>(
      `SELECT domain, id ${scan}
       ORDER BY indexOf(${STATE_RANK}, effective), if(effective = 'resolved', 0, indexOf(${SEVERITY_RANK}, severity)),
         greatest(resolved_day, last_day) DESC, id
       LIMIT ${sqlInteger(take)}`,
    );
    const seen = new Set<string>();
    const current = rows.filter((r) => !seen.has(r.id) && seen.add(r.id));
    if (current.length >= wanted || rows.length < take) return current;
  }
}

function parse(r: { summary: string; detail?: string }, withResume = false): Incident {
  const summary = JSON.parse(r.summary) as Omit<Incident, 'daily' | 'events'>;
  if (!r.detail) return { ...summary, daily: [], events: [] };
  const { daily, events, resume } = JSON.parse(r.detail) as Pick<Incident, 'daily' | 'events' | 'resume'>;
  return { ...summary, daily, events, ...(withResume && resume ? { resume } : {}) };
}

/**
 * The domains to derive again: those that received reports since `since` (the server's clock, less `margin` seconds
 * for inserts in flight), or, without `since`, every domain with reports or live checks in the window or incidents
 * stored.
 */
export async function domainsToEvaluate(
  db: Db,
  since: string | undefined,
  windowFrom: string,
  margin: number,
): Promise<string[]> {
  const rows = since
    ? await db.rows<{ d: string }>(
        `SELECT DISTINCT policy_domain AS d FROM domain_ingest
         WHERE inserted_at >= toDateTime(${q(since)}, 'UTC') - ${sqlInteger(margin)}`,
      )
    : await db.rows<{ d: string }>(
        `SELECT DISTINCT policy_domain AS d FROM domain_days WHERE day >= toDate(${q(windowFrom)})
         UNION ALL SELECT DISTINCT domain AS d FROM incident_domains
         UNION ALL SELECT DISTINCT domain AS d FROM posture_checks WHERE checked_at >= toDateTime(toDate(${q(windowFrom)}), 'UTC')`,
      );
  return [...new Set(rows.map((r) => r.d))].sort();
}

/** Whether some domain's newest incidents were derived from another window than the one starting `windowFrom`. */
export async function otherWindowStored(db: Db, windowFrom: string): Promise<boolean> {
  // A domain stored before incident_windows existed has none: 1970-01-01 by the LEFT JOIN, another window.
  const rows = await db.rows<{ d: string }>(
    `SELECT domain AS d FROM incident_domains
     ALL LEFT JOIN (SELECT domain, argMax(window_from, version) AS stored_from FROM incident_windows GROUP BY domain)
       AS windows USING domain
     WHERE stored_from != toDate(${q(windowFrom)}) LIMIT 1`,
  );
  return rows.length > 0;
}

/** The domains the live checks checked since `since` (less `margin` seconds). */
export async function domainsChecked(db: Db, since: string, margin: number): Promise<string[]> {
  const rows = await db.rows<{ d: string }>(
    `SELECT DISTINCT domain AS d FROM posture_checks
     WHERE checked_at >= toDateTime(${q(since)}, 'UTC') - ${sqlInteger(margin)}`,
  );
  return rows.map((r) => r.d);
}

/** The first report day of the reports stored since `since` (less `margin` seconds), if any were. */
export async function earliestNewDay(db: Db, since: string, margin: number): Promise<string | undefined> {
  const [row] = await db.rows<{ d: string; n: number }>(
    `SELECT toString(min(day)) AS d, count() AS n FROM ingest_days
     WHERE inserted_at >= toDateTime(${q(since)}, 'UTC') - ${sqlInteger(margin)}`,
  );
  return row && Number(row.n) > 0 ? row.d : undefined;
}

/** Domains whose incidents people acted on since `since`, or whose mutes ran out since then. */
export async function domainsActedOn(db: Db, since: string, now: string, margin: number): Promise<string[]> {
  const after = `toDateTime(${q(since)}, 'UTC') - ${sqlInteger(margin)}`;
  const rows = await db.rows<{ d: string }>(
    `SELECT DISTINCT domain AS d FROM incident_events
     WHERE at >= ${after} OR (event = 'mute' AND until >= ${after} AND until <= toDateTime(${q(now)}, 'UTC'))`,
  );
  return rows.map((r) => r.d);
}
