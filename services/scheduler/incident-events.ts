// Incident events in the alert feed, and which of them people are told of. Each event of an incident (opened,
// worsened, resolved, reopened, acknowledged, muted, unmuted) becomes an alert row whose id is derived from it, so the
// feed carries it once however often the evaluation sees it. Of the new ones, at most one notification per incident
// and evaluation: its latest change; an acknowledged or muted incident only when it worsens or resolves; incidents
// that opened and resolved entirely within what arrived since the last evaluation (a backfill) as one summary per
// domain.
import type { TrackedIncident } from '../common/incidents/acts.ts';
import { whatOf, type Incident } from '../common/incidents/derive.ts';
import type { Alert } from './alert-evaluation.ts';
import type { Candidate } from './rules/rule-kit.ts';
import type { Notification } from './notify/messages.ts';

const INCIDENT_RULE_PREFIX = 'incident-';

/** The events that come from the reports (or from time: a mute running out); not people's own acts. */
const FROM_REPORTS = new Set(['opened', 'worsened', 'resolved', 'reopened']);

/** An event, derived (day) or of a person's act (at). */
type EventAt = { event: string; at?: string | null; day: string };
/** The key of an event's alert (its id is a hash of the rule and this key). */
const alertKey = (incidentId: string, e: EventAt): string[] => [incidentId, e.event, e.at ?? e.day];
const eventKey = (incidentId: string, e: EventAt): string => alertKey(incidentId, e).join('\0');

/**
 * The events of incidents as stored: each has its alert already, as the evaluation stores an incident's alerts
 * before the incident (incident-evaluation.ts).
 */
export function storedEvents(stored: Incident[]): Set<string> {
  const out = new Set<string>();
  for (const i of stored) for (const e of i.events) out.add(eventKey(i.id, e));
  return out;
}

/** A feed row of an incident's event, with the incident and the event it is about (not stored). */
export type IncidentCandidate = Candidate & { incident: TrackedIncident; event: TrackedIncident['events'][number] };

/** The feed's rows for every event of an incident but those in `known` (storedEvents). */
export function incidentCandidates(incident: TrackedIncident, known?: ReadonlySet<string>): IncidentCandidate[] {
  const events = known ? incident.events.filter((e) => !known.has(eventKey(incident.id, e))) : incident.events;
  return events.map((e) => ({
    incident,
    event: e,
    rule: `${INCIDENT_RULE_PREFIX}${e.event}`,
    key: alertKey(incident.id, e),
    severity: incident.severity,
    policy_domain: incident.domain,
    day: e.day,
    organization: incident.kind === 'reporter-stopped' ? incident.subject : '',
    result_type: incident.resultType,
    title: `${incident.domain}: ${whatOf(incident)} — ${e.event}`,
    detail: JSON.stringify({
      incidentId: incident.id,
      event: e.event,
      actor: e.actor,
      reason: e.reason,
      kind: incident.kind,
      subject: incident.subject,
      state: incident.state,
      firstDay: incident.firstDay,
      lastDay: incident.lastDay,
      failedSessions: incident.failedSessions,
    }),
  }));
}

const since = (i: TrackedIncident): string =>
  i.state === 'resolved'
    ? `from ${i.firstDay} to ${i.lastDay}, resolved ${i.resolvedDay ?? ''}`.trim()
    : `since ${i.firstDay}, last ${i.kind === 'posture' ? 'found' : 'failed'} ${i.lastDay}`;

function incidentLines(i: TrackedIncident): string[] {
  return [
    `${whatOf(i)} (${i.kind === 'failure' ? `${i.failedSessions.toLocaleString('en-US')} failed sessions, ` : ''}${since(i)})`,
    ...(i.reporters.length > 0 && i.kind === 'failure' ? [`Reported by ${i.reporters.join(', ')}.`] : []),
    ...(i.mode ? [`MTA-STS mode: ${i.mode}. Severity: ${i.severity}.`] : [`Severity: ${i.severity}.`]),
  ];
}

/** The notifications for the feed's new rows of incident events. */
export function notificationsFor(
  fresh: Array<{ alert: Alert; candidate: IncidentCandidate }>,
  dashboard: string,
): Notification[] {
  const newEvents = new Map<TrackedIncident, Array<{ event: string; actor: unknown; alert: Alert }>>();
  for (const { alert, candidate } of fresh) {
    const list = newEvents.get(candidate.incident) ?? [];
    list.push({ event: candidate.event.event, actor: candidate.event.actor, alert });
    newEvents.set(candidate.incident, list);
  }
  const link = (path: string): string | undefined => (dashboard ? `${dashboard.replace(/\/$/, '')}${path}` : undefined);
  const out: Notification[] = [];
  const backfilled = new Map<string, TrackedIncident[]>();
  for (const [incident, events] of newEvents) {
    const changes = events.filter((e) => FROM_REPORTS.has(e.event) && !e.actor);
    const names = new Set(changes.map((e) => e.event));
    if (names.has('opened') && names.has('resolved') && incident.state === 'resolved') {
      backfilled.set(incident.domain, [...(backfilled.get(incident.domain) ?? []), incident]);
      continue;
    }
    // First heard of: told as opened, in its state now; otherwise its latest change.
    const latest = changes.find((e) => e.event === 'opened') ?? changes[changes.length - 1];
    if (!latest) continue;
    const quiet = incident.state === 'acknowledged' || incident.state === 'muted';
    if (quiet && latest.event !== 'worsened' && latest.event !== 'resolved') continue;
    out.push({
      id: latest.alert.alert_id,
      kind: 'incident',
      domains: [incident.domain],
      severity: latest.event === 'resolved' ? 'info' : incident.severity,
      title: `[${latest.event}] ${incident.domain}: ${whatOf(incident)}`,
      lines: incidentLines(incident),
      link: link(`/ui/incidents/${incident.id}`),
      data: { event: latest.event, incident: { ...incident, daily: undefined, events: undefined } },
    });
  }
  for (const [domain, list] of backfilled) {
    out.push({
      id: `summary-${list.map((i) => i.id).join(',')}`.slice(0, 200),
      kind: 'summary',
      domains: [domain],
      severity: 'info',
      title: `${domain}: ${list.length} incident${list.length === 1 ? '' : 's'} that began and ended in reports received late`,
      lines: list.map((i) => `${whatOf(i)}: ${since(i)}`),
      link: link(`/ui/?domain=${encodeURIComponent(domain)}`),
      data: { incidents: list.map((i) => i.id) },
    });
  }
  return out;
}

/** A recipient's daily digest: what is open, what changed and what resolved in the day before `now`. */
export function digestFor(
  recipient: string,
  incidents: TrackedIncident[],
  now: Date,
  dashboard: string,
): Notification | undefined {
  const day = now.toISOString().slice(0, 10);
  const yesterday = new Date(now.getTime() - 86_400_000).toISOString().slice(0, 10);
  const open = incidents.filter((i) => i.state !== 'resolved');
  const changed = open.filter((i) => i.events.some((e) => e.day >= yesterday));
  const resolved = incidents.filter((i) => i.state === 'resolved' && (i.resolvedDay ?? '') >= yesterday);
  if (open.length === 0 && resolved.length === 0) return undefined;
  const section = (title: string, list: TrackedIncident[]): string[] =>
    list.length === 0
      ? []
      : ['', `${title} (${list.length}):`, ...list.map((i) => `- ${i.domain}: ${whatOf(i)}, ${since(i)}`)];
  return {
    id: `digest-${day}-${recipient}`,
    kind: 'digest',
    domains: [...new Set(incidents.map((i) => i.domain))],
    severity: 'info',
    title: `TLS reporting digest ${day}: ${open.length} open, ${resolved.length} resolved`,
    lines: [
      `Open incidents: ${open.length}; changed since yesterday: ${changed.length}; resolved since yesterday: ${resolved.length}.`,
      ...section('Open', open),
      ...section('Resolved', resolved),
    ],
    link: dashboard ? `${dashboard.replace(/\/$/, '')}/ui/` : undefined,
    data: { open: open.map((i) => i.id), resolved: resolved.map((i) => i.id) },
  };
}
