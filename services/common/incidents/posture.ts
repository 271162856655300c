// Posture incidents: what the live checks (services/scheduler/posture) find wrong with a managed domain's setup, one
// incident per check and subject (the record or host checked). It opens on the first day a check run finds it,
// and resolves on the day a run finds it fine again, or a complete run no longer meets its subject (an MX removed).
// Days are the checks' UTC days, as report days are for the other kinds.
import { chained, incidentId, type DerivedEvent, type Incident, type Severity } from './derive.ts';

/** One check and subject on one day: the worst result of the day's runs and the result of its last. */
export interface PostureDay {
  domain: string;
  day: string;
  check: string;
  subject: string;
  worst: CheckSeverity;
  last: CheckSeverity;
  /** What the last run that found a problem said (the last run's sentence when none did). */
  summary: string;
}

/** A domain's last check run of a day, and whether its deadline cut it short (a `run` result). */
export interface PostureRun {
  domain: string;
  day: string;
  cut: boolean;
}

/** The live checks' severities, from the least: stored as text, ranked by this order (facts.ts too). */
export const CHECK_SEVERITIES = ['ok', 'warning', 'critical'] as const;
export type CheckSeverity = (typeof CHECK_SEVERITIES)[number];

/** The check of the run itself (its deadline passed): about our checking, not the domain's setup. */
const RUN_CHECK = 'run';

/** A check's `critical` (a sender cannot deliver securely) as high, a `warning` (it soon may not) as medium. */
const SEVERITY: Record<CheckSeverity, Severity> = { critical: 'high', warning: 'medium', ok: 'low' };

/** Every posture incident of the check days, ordered by domain, then first day. */
export function postureIncidents(days: PostureDay[], runs: PostureRun[]): Incident[] {
  const runDays = new Map<string, Map<string, PostureRun>>();
  for (const r of runs) {
    const own = runDays.get(r.domain) ?? new Map<string, PostureRun>();
    runDays.set(r.domain, own.set(r.day, r));
  }
  const byKey = new Map<string, Map<string, PostureDay>>();
  for (const d of days) {
    if (d.check === RUN_CHECK) continue;
    const key = JSON.stringify([d.domain, d.check, d.subject]);
    byKey.set(key, (byKey.get(key) ?? new Map<string, PostureDay>()).set(d.day, d));
  }
  const out: Incident[] = [];
  for (const [key, own] of byKey) {
    const [domain, check, subject] = JSON.parse(key) as [string, string, string];
    out.push(...incidentsOf(domain, check, subject, own, runDays.get(domain) ?? new Map<string, PostureRun>()));
  }
  return out;
}

interface Run {
  days: PostureDay[];
  resolvedDay: string | null;
}

function incidentsOf(
  domain: string,
  check: string,
  subject: string,
  own: Map<string, PostureDay>,
  runs: Map<string, PostureRun>,
): Incident[] {
  const found: Run[] = [];
  let current: Run | undefined;
  for (const day of [...new Set([...runs.keys(), ...own.keys()])].sort()) {
    const d = own.get(day);
    if (d && d.worst !== 'ok') {
      if (!current) found.push((current = { days: [], resolvedDay: null }));
      current.days.push(d);
    }
    // Fine again: the day's last run found it fine, or a complete run did not meet it at all.
    const fine = d ? d.last === 'ok' : runs.get(day)?.cut === false;
    if (current && fine) {
      current.resolvedDay = day;
      current = undefined;
    }
  }
  return chained(found, (run, previousId) => postureIncident(domain, check, subject, run, previousId));
}

function postureIncident(
  domain: string,
  check: string,
  subject: string,
  run: Run,
  previousId: string | null,
): Incident {
  const first = run.days[0]!;
  const lastDay = run.days[run.days.length - 1]!.day;
  const events: DerivedEvent[] = [{ event: 'opened', day: first.day, reason: first.summary }];
  let worst = first.worst;
  for (const d of run.days.slice(1))
    if (CHECK_SEVERITIES.indexOf(d.worst) > CHECK_SEVERITIES.indexOf(worst)) {
      worst = d.worst;
      events.push({ event: 'worsened', day: d.day, reason: d.summary });
    }
  if (run.resolvedDay) events.push({ event: 'resolved', day: run.resolvedDay, reason: 'the live check found it fine' });
  return {
    id: incidentId(domain, 'posture', check, subject, first.day),
    domain,
    kind: 'posture',
    resultType: check,
    subject,
    state: run.resolvedDay ? 'resolved' : 'open',
    firstDay: first.day,
    lastDay,
    resolvedDay: run.resolvedDay,
    failedSessions: 0,
    sessionsPerDay: 0,
    reporters: [],
    sendingIps: { count: 0, top: [] },
    mode: '',
    severity: SEVERITY[worst],
    failingShare: 0,
    previousId,
    diagnosis: `posture:${check}`,
    finding: run.days[run.days.length - 1]!.summary,
    daily: run.days.map((d) => ({ day: d.day, failedSessions: 0, sessions: 0 })),
    events,
  };
}
