// What people did to incidents (incident_events, migration 0011) and the state that makes: an incident derived open
// can be acknowledged, muted until a time, or resolved by hand; one derived resolved (or resolved by hand) reopened.
import { randomUUID } from 'node:crypto';
import type { ClickHouseClient } from '../clickhouse.ts';
import { inList } from '../clickhouse-compat.ts';
import type { Db } from '../db.ts';
import { toClickHouseDateTime } from '../sql.ts';
import type { IncidentEventRow, Stored } from '../../../schemas/rows.ts';
import type { Incident } from './derive.ts';

export type Act = IncidentEventRow['event'];
export type State = 'open' | 'resolved' | 'acknowledged' | 'muted';

/** An incident as people see it: its derived facts, the state their acts make, and every event. */
export interface TrackedIncident extends Omit<Incident, 'state' | 'events'> {
  state: State;
  mutedUntil: string | null;
  events: Array<{ event: string; day: string; at: string | null; actor: string | null; reason: string }>;
}

const NO_TIME = '1970-01-01 00:00:00';

/** Which acts each state allows. */
const ALLOWED: Record<Act, State[]> = {
  acknowledge: ['open', 'muted'],
  mute: ['open', 'acknowledged'],
  unmute: ['muted'],
  resolve: ['open', 'acknowledged', 'muted'],
  reopen: ['resolved'],
};

export class BadTransition extends Error {
  override readonly name = 'BadTransition';
}

type ActRow = Stored<
  IncidentEventRow,
  | 'event_id'
  | 'incident_id'
  | 'kind'
  | 'result_type'
  | 'subject'
  | 'first_day'
  | 'last_day'
  | 'event'
  | 'until'
  | 'actor'
  | 'note'
  | 'at'
> & { domain: string };

/** Every act on the domains' incidents (all domains when undefined), oldest first. */
export async function readActs(db: Db, domains: string[] | undefined): Promise<ActRow[]> {
  const where = domains ? `WHERE domain IN ${inList(domains)}` : '';
  return await db.rows<ActRow>(
    `SELECT event_id, incident_id, domain, kind, result_type, subject, toString(first_day) AS first_day,
            toString(last_day) AS last_day, event, toString(until) AS until, actor, note, toString(at) AS at
     FROM incident_events ${where} ORDER BY at_ms, event_id LIMIT 1 BY event_id LIMIT 100000`,
  );
}

/**
 * An act belongs to the incident of its domain, kind, result type and subject whose days held the act's first day:
 * the incident it was made on, even after a late report moved that incident's first day (and id).
 */
function actsOf(incident: Incident, acts: ActRow[]): ActRow[] {
  return acts.filter(
    (a) =>
      a.incident_id === incident.id ||
      (a.domain === incident.domain &&
        a.kind === incident.kind &&
        a.result_type === incident.resultType &&
        a.subject === incident.subject &&
        a.first_day >= incident.firstDay &&
        a.first_day <= (incident.resolvedDay ?? '9999-12-31')),
  );
}

/** The state an incident's acts make of its derived state, at `now`. */
export function track(incident: Incident, acts: ActRow[], now: Date): TrackedIncident {
  const own = actsOf(incident, acts);
  const events: TrackedIncident['events'] = incident.events.map((e) => ({
    event: e.event,
    day: e.day,
    reason: e.reason,
    at: null,
    actor: null,
  }));
  // Most incidents have no acts: their derived state and events (in day order already) as they are.
  if (own.length === 0) return { ...incident, mutedUntil: null, events };
  let state: State = incident.state;
  let mutedUntil: string | null = null;
  let resolvedAt: string | null = null;
  let reopened = false;
  for (const a of own) {
    if (a.event === 'acknowledge') state = 'acknowledged';
    if (a.event === 'mute') [state, mutedUntil] = ['muted', a.until];
    if (a.event === 'unmute' || a.event === 'reopen') state = 'open';
    if (a.event === 'resolve') [state, resolvedAt] = ['resolved', a.last_day];
    if (a.event === 'reopen') [reopened, resolvedAt] = [true, null];
  }
  const nowText = toClickHouseDateTime(now);
  if (state === 'muted' && mutedUntil !== null && mutedUntil <= nowText) {
    state = 'open';
    events.push({
      event: 'unmuted',
      day: mutedUntil.slice(0, 10),
      at: mutedUntil,
      actor: null,
      reason: 'the mute ran out',
    });
  }
  // Resolved by hand, then failing on a later day: it runs again.
  if (resolvedAt !== null && incident.lastDay > resolvedAt) {
    state = incident.state;
    // On the first day it failed after the resolution (the same event however long it goes on failing).
    const again = incident.daily.find((d) => d.day > resolvedAt && d.failedSessions > 0)?.day ?? incident.lastDay;
    events.push({ event: 'reopened', day: again, at: null, actor: null, reason: 'it failed again' });
  }
  // Resolved from the reports: the acts before do not keep it open, a reopen after does.
  if (incident.state === 'resolved' && !reopened) state = 'resolved';
  for (const a of own)
    events.push({ event: pastTense(a.event), day: a.at.slice(0, 10), at: a.at, actor: a.actor, reason: a.note });
  events.sort((x, y) => (x.at ?? `${x.day} 00:00:00`).localeCompare(y.at ?? `${y.day} 00:00:00`));
  return { ...incident, state, mutedUntil: state === 'muted' ? mutedUntil : null, events };
}

const pastTense = (act: Act): string =>
  ({ acknowledge: 'acknowledged', mute: 'muted', unmute: 'unmuted', resolve: 'resolved', reopen: 'reopened' })[act];

/** Records `act` on the incident, if its state allows it; the row is written before this resolves. */
export async function recordAct(
  ch: ClickHouseClient,
  incident: TrackedIncident,
  act: { event: Act; actor: string; note?: string | undefined; until?: Date | undefined; now: Date },
): Promise<void> {
  if (!ALLOWED[act.event].includes(incident.state))
    throw new BadTransition(`cannot ${act.event} an incident that is ${incident.state}`);
  if (act.event === 'mute' && !(act.until && act.until > act.now))
    throw new BadTransition('mute needs `until`, a time in the future');
  const row: IncidentEventRow = {
    event_id: randomUUID(),
    incident_id: incident.id,
    domain: incident.domain,
    kind: incident.kind,
    result_type: incident.resultType,
    subject: incident.subject,
    first_day: incident.firstDay,
    last_day: incident.lastDay,
    event: act.event,
    until: act.event === 'mute' && act.until ? toClickHouseDateTime(act.until) : NO_TIME,
    actor: act.actor,
    note: act.note ?? '',
    at: toClickHouseDateTime(act.now),
    at_ms: act.now.getTime(),
  };
  await ch.insert({ table: 'incident_events', values: [row], format: 'JSONEachRow' });
}
