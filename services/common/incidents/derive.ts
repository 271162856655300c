// Incidents: one problem of one domain with a lifecycle, derived from report days alone (never from when reports
// arrived), so a year backfilled at once, delivered day by day or in any order gives the same incidents, and a late
// report extends or reopens the one it belongs to. A pure function of the facts (facts.ts reads them).
import { addDays, dayNumber } from '../days.ts';
import { createHash } from 'node:crypto';

/** Failed sessions of one result type at one subject on one day (sts+tlsa twins of a report counted once). */
export interface FailureFact {
  domain: string;
  day: string;
  resultType: string;
  subject: string;
  failed: number;
  reporters: string[];
  /** Sending IPs named by the failure details, with their failed sessions ('' where none was named). */
  ips: Array<[string, number]>;
}

/** One reporter's sessions for a domain on one day (each report's sessions counted once). */
export interface ReporterDay {
  domain: string;
  day: string;
  organization: string;
  successful: number;
  failed: number;
  /** The STS mode its reports showed ('' without an sts policy). */
  mode: string;
}

export interface IncidentSettings {
  /** Consecutive days with reports and no failure of the kind that resolve an incident. */
  resolveDays: number;
  /** Days with the domain's reports but none from a reporter before it counts as stopped. */
  stoppedAfterDays: number;
  /** Of the REGULAR_DAYS days before its last report, the share a reporter must have reported on to be "regular". */
  regularShare: number;
}

/** The days before a reporter's last report that say whether it reported regularly. */
export const REGULAR_DAYS = 14;

export const DEFAULT_SETTINGS: IncidentSettings = { resolveDays: 3, stoppedAfterDays: 3, regularShare: 0.6 };

export type Severity = 'critical' | 'high' | 'medium' | 'low';
export type Kind = 'failure' | 'reporter-stopped' | 'posture';

export interface DerivedEvent {
  event: 'opened' | 'worsened' | 'resolved';
  day: string;
  reason: string;
}

export interface Incident {
  id: string;
  domain: string;
  kind: Kind;
  resultType: string;
  subject: string;
  state: 'open' | 'resolved';
  firstDay: string;
  lastDay: string;
  /** The day the resolution completed (the last of the clean days), or null while open. */
  resolvedDay: string | null;
  failedSessions: number;
  /** Failed sessions per day that failed, rounded. */
  sessionsPerDay: number;
  reporters: string[];
  sendingIps: { count: number; top: Array<{ ip: string; failedSessions: number }> };
  mode: string;
  severity: Severity;
  /** Of the domain's sessions on the days it failed, the share that failed this way. */
  failingShare: number;
  previousId: string | null;
  diagnosis: string;
  /** Posture incidents: what the live check last found, in its own words. */
  finding?: string;
  daily: Array<{ day: string; failedSessions: number; sessions: number }>;
  events: DerivedEvent[];
  /** A failure incident still running at the end of a checkpoint day: what resuming it after that day needs. */
  resume?: Checkpoint;
}

/**
 * A failure incident's state at the end of `day`: with the incident's daily series and events up to that day, all a
 * derivation needs to go on from the next day without reading the facts before it (incremental.ts). Valid while the
 * facts of the days up to it stay as they were (a later report of such a day derives the incident from its start).
 */
export interface Checkpoint {
  day: string;
  /** Clean days in a row at its end, and the last day the domain had reports or this failure. */
  clean: number;
  previousDay: string;
  failingDays: number;
  lastDay: string;
  failedSessions: number;
  domainSessions: number;
  carried: number;
  mode: string;
  worstShare: number;
  reporters: string[];
  ips: Array<[string, number]>;
}

/** An incident with more sending IPs or reporters than this is not checkpointed (resumed from its first day). */
export const CHECKPOINT_MAX_NAMES = 1_000;

/** How a derivation starts from checkpoints and which it leaves. */
export interface Resumption {
  /** Per problem (resumeKey), the stored incident running at the end of its checkpoint day, to go on from. */
  from?: Map<string, Incident & { resume: Checkpoint }>;
  /** The day to checkpoint the incidents still running at its end. */
  checkpointDay?: string | undefined;
}

/** The problem a failure incident is about, within its domain's derivation. */
export const resumeKey = (domain: string, resultType: string, subject: string): string =>
  `${domain.length}:${domain}${resultType.length}:${resultType}${subject}`;

/** What the problem is, in words: "certificate-expired at mx2.example.com", or what the live check found. */
export function whatOf(i: Pick<Incident, 'kind' | 'resultType' | 'subject' | 'finding'>): string {
  if (i.kind === 'reporter-stopped') return `reports from ${i.subject} stopped`;
  if (i.kind === 'posture') return i.finding ?? `the ${i.resultType} check of ${i.subject} failed`;
  return `${i.resultType}${i.subject ? ` at ${i.subject}` : ' (no host named)'}`;
}

/** `<20 hex digits>.<domain>`: stable for what the incident is about and its first day, and naming its domain. */
export function incidentId(domain: string, kind: Kind, resultType: string, subject: string, firstDay: string): string {
  const hash = createHash('sha256').update(JSON.stringify([domain, kind, resultType, subject, firstDay]));
  return `${hash.digest('hex').slice(0, 20)}.${domain}`;
}

/** The domain an incident id names, or undefined for anything that is not an id. */
export function domainOfId(id: string): string | undefined {
  return /^[0-9a-f]{20}\.([a-z0-9_-]+(?:\.[a-z0-9_-]+)*)$/.exec(id)?.[1];
}

/** The domain's days: sessions and failed sessions over all reporters, each reporter's successes, the STS mode. */
interface DomainDay {
  sessions: number;
  failed: number;
  successByReporter: Map<string, number>;
  mode: string;
}

function domainDays(reporterDays: ReporterDay[]): Map<string, Map<string, DomainDay>> {
  const byDomain = new Map<string, Map<string, DomainDay>>();
  for (const r of reporterDays) {
    let days = byDomain.get(r.domain);
    if (!days) byDomain.set(r.domain, (days = new Map<string, DomainDay>()));
    let d = days.get(r.day);
    if (!d) days.set(r.day, (d = { sessions: 0, failed: 0, successByReporter: new Map(), mode: '' }));
    d.sessions += r.successful + r.failed;
    d.failed += r.failed;
    d.successByReporter.set(r.organization, (d.successByReporter.get(r.organization) ?? 0) + r.successful);
    // The strictest mode reported that day: enforce, then testing, then none.
    if (rankMode(r.mode) > rankMode(d.mode)) d.mode = r.mode;
  }
  return byDomain;
}

const rankMode = (mode: string): number => ['', 'none', 'testing', 'enforce'].indexOf(mode);

/** Every incident of the facts, ordered by domain, then first day. */
export function deriveIncidents(
  failures: FailureFact[],
  reporterDays: ReporterDay[],
  settings: IncidentSettings = DEFAULT_SETTINGS,
  resumption: Resumption = {},
): Incident[] {
  const days = domainDays(reporterDays);
  const byKey = new Map<string, FailureFact[]>();
  for (const key of resumption.from?.keys() ?? []) byKey.set(key, []);
  for (const f of failures) {
    if (f.failed <= 0) continue;
    const key = resumeKey(f.domain, f.resultType, f.subject);
    const list = byKey.get(key);
    if (list) list.push(f);
    else byKey.set(key, [f]);
  }
  const out: Incident[] = [];
  // Each domain's days in order, sorted once for all its problems.
  const sortedDays = new Map<string, string[]>();
  const sortedOf = (domain: string): string[] => {
    let list = sortedDays.get(domain);
    if (!list) sortedDays.set(domain, (list = [...(days.get(domain)?.keys() ?? [])].sort()));
    return list;
  };
  for (const [key, facts] of byKey) {
    const resumed = resumption.from?.get(key);
    const problem = resumed ?? facts[0]!;
    const dd = days.get(problem.domain);
    out.push(
      ...failureIncidents(problem, facts, dd, sortedOf(problem.domain), settings, resumed, resumption.checkpointDay),
    );
  }
  const reportedDays = daysByReporter(reporterDays);
  for (const [domain, dd] of days) out.push(...stoppedReporters(domain, dd, reportedDays.get(domain), settings));
  return out.sort(byDomainAndDay);
}

/** The order of derived incidents: by domain, then first day, kind, result type and subject. */
export const byDomainAndDay = (a: Incident, b: Incident): number =>
  a.domain.localeCompare(b.domain) ||
  a.firstDay.localeCompare(b.firstDay) ||
  a.kind.localeCompare(b.kind) ||
  a.resultType.localeCompare(b.resultType) ||
  a.subject.localeCompare(b.subject);

/** A run of failing days of one problem, the resolution that ended it, and where it stood at the checkpoint day. */
interface Run {
  days: string[];
  resolvedDay: string | null;
  /** Going on from a stored incident's checkpoint. */
  resumed?: Incident & { resume: Checkpoint };
  /** Clean days and the last day seen at the end of the checkpoint day, when the run was going on then. */
  atCheckpoint?: { clean: number; previousDay: string };
}

/** The incidents of one result type at one subject: runs of failing days, each ended by `resolveDays` clean days. */
function failureIncidents(
  problem: { domain: string; resultType: string; subject: string },
  facts: FailureFact[],
  dd: Map<string, DomainDay> | undefined,
  domainDayList: string[],
  settings: IncidentSettings,
  resumed: (Incident & { resume: Checkpoint }) | undefined,
  checkpointDay: string | undefined,
): Incident[] {
  const { domain, resultType, subject } = problem;
  const failing = new Map<string, FailureFact[]>();
  for (const f of facts) {
    const list = failing.get(f.day);
    if (list) list.push(f);
    else failing.set(f.day, [f]);
  }
  // Every day the domain had reports or this failure, in order (after the checkpoint it goes on from).
  const from = resumed?.resume.day ?? '';
  // Never a checkpoint before the one it goes on from: the state of the days between is not known.
  if (checkpointDay !== undefined && checkpointDay < from) checkpointDay = from;
  // Without a run going on, the days before its first failing day change nothing: from that day on.
  let firstFailing = '9999-12-31';
  for (const d of failing.keys()) if (d < firstFailing) firstFailing = d;
  const unreported = [...failing.keys()].filter((d) => !dd?.has(d));
  const sorted = unreported.length === 0 ? domainDayList : [...domainDayList, ...unreported].sort();
  const allDays = sorted.slice(resumed ? after(sorted, from) : Math.max(0, sorted.indexOf(firstFailing)));
  let current: Run | undefined = resumed ? { days: [], resolvedDay: null, resumed } : undefined;
  const runs: Run[] = current ? [current] : [];
  let clean = resumed?.resume.clean ?? 0;
  let previousDay = resumed?.resume.previousDay ?? '';
  let checkpointed = checkpointDay === undefined;
  for (const day of allDays) {
    if (!checkpointed && day > checkpointDay!) {
      checkpointed = true;
      if (current) current.atCheckpoint = { clean, previousDay };
    }
    const consecutive = previousDay !== '' && dayNumber(previousDay) + 1 === dayNumber(day);
    previousDay = day;
    if (failing.has(day)) {
      if (!current) runs.push((current = { days: [], resolvedDay: null }));
      current.days.push(day);
      clean = 0;
      continue;
    }
    if (!current) continue;
    // A clean day: the domain reported sessions and none failed this way. A day without reports breaks the streak.
    clean = consecutive ? clean + 1 : 1;
    if ((dd?.get(day)?.sessions ?? 0) === 0) clean = 0;
    if (clean >= settings.resolveDays) {
      current.resolvedDay = day;
      current = undefined;
      clean = 0;
    }
  }
  if (!checkpointed && current) current.atCheckpoint = { clean, previousDay };
  return chained(runs, (run, previousId) =>
    failureIncident(domain, resultType, subject, run, failing, dd, previousId, checkpointDay),
  );
}

/** The incidents of one problem's runs, in order, each linked to the one before (`previousId`). */
export function chained<R>(runs: R[], make: (run: R, previousId: string | null) => Incident): Incident[] {
  let previousId: string | null = null;
  return runs.map((run) => {
    const incident = make(run, previousId);
    previousId = incident.id;
    return incident;
  });
}

function failureIncident(
  domain: string,
  resultType: string,
  subject: string,
  run: Run,
  failing: Map<string, FailureFact[]>,
  dd: Map<string, DomainDay> | undefined,
  chainedId: string | null,
  checkpointDay: string | undefined,
): Incident {
  const from = run.resumed;
  const at = from?.resume;
  const firstDay = from?.firstDay ?? run.days[0]!;
  const lastDay = run.days[run.days.length - 1] ?? at!.lastDay;
  const ips = new Map<string, number>(at?.ips);
  const reporters = new Set<string>(at?.reporters);
  const daily: Incident['daily'] = from ? from.daily.filter((d) => d.day <= at!.day) : [];
  const events: DerivedEvent[] = from
    ? from.events.filter((e) => e.day <= at!.day)
    : [{ event: 'opened', day: firstDay, reason: 'the first day it failed' }];
  let failedSessions = at?.failedSessions ?? 0;
  let domainSessions = at?.domainSessions ?? 0;
  let carried = at?.carried ?? 0;
  let mode = at?.mode ?? '';
  let worstShare = at?.worstShare ?? 0;
  let failingDays = at?.failingDays ?? 0;
  let checkpoint: Checkpoint | undefined;
  const snapshot = (): Checkpoint | undefined =>
    run.atCheckpoint && ips.size <= CHECKPOINT_MAX_NAMES && reporters.size <= CHECKPOINT_MAX_NAMES
      ? {
          day: checkpointDay!,
          ...run.atCheckpoint,
          failingDays,
          lastDay: daily[daily.length - 1]?.day ?? firstDay,
          failedSessions,
          domainSessions,
          carried,
          mode,
          worstShare,
          reporters: [...reporters].sort(),
          ips: [...ips],
        }
      : undefined;
  for (const day of run.days) {
    if (checkpointDay !== undefined && day > checkpointDay && !checkpoint) checkpoint = snapshot();
    const facts = failing.get(day)!;
    const failed = facts.reduce((a, f) => a + f.failed, 0);
    const d = dd?.get(day);
    const sessions = Math.max(d?.sessions ?? 0, failed);
    daily.push({ day, failedSessions: failed, sessions });
    failedSessions += failed;
    domainSessions += sessions;
    failingDays++;
    if (d?.mode) mode = d.mode;
    const newReporters = facts.flatMap((f) => f.reporters).filter((r) => !reporters.has(r));
    const share = sessions === 0 ? 0 : failed / sessions;
    if (day !== firstDay && newReporters.length > 0)
      events.push({ event: 'worsened', day, reason: `newly reported by ${[...new Set(newReporters)].join(', ')}` });
    else if (day !== firstDay && worstShare > 0 && share >= 2 * worstShare)
      events.push({ event: 'worsened', day, reason: `the failing share doubled to ${Math.round(share * 100)}%` });
    worstShare = Math.max(worstShare, share);
    for (const f of facts) {
      for (const r of f.reporters) reporters.add(r);
      for (const [ip, n] of f.ips) if (ip !== '') ips.set(ip, (ips.get(ip) ?? 0) + n);
      // Mail the same reporters delivered that day (through another MX, or this one at another time).
      for (const r of f.reporters) carried += d?.successByReporter.get(r) ?? 0;
    }
  }
  if (checkpointDay !== undefined && !checkpoint) checkpoint = snapshot();
  if (run.resolvedDay)
    events.push({ event: 'resolved', day: run.resolvedDay, reason: 'days with reports and no such failure' });
  const failingShare = domainSessions === 0 ? 1 : failedSessions / domainSessions;
  return {
    id: incidentId(domain, 'failure', resultType, subject, firstDay),
    domain,
    kind: 'failure',
    resultType,
    subject,
    state: run.resolvedDay ? 'resolved' : 'open',
    firstDay,
    lastDay,
    resolvedDay: run.resolvedDay,
    failedSessions,
    sessionsPerDay: Math.round(failedSessions / failingDays),
    reporters: [...reporters].sort(),
    sendingIps: {
      count: ips.size,
      top: [...ips]
        .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
        .slice(0, 5)
        .map(([ip, n]) => ({ ip, failedSessions: n })),
    },
    mode,
    severity: severityOf(failingShare, mode, carried > 0),
    failingShare,
    previousId: from ? from.previousId : chainedId,
    diagnosis: resultType,
    daily,
    events,
    ...(checkpoint ? { resume: checkpoint } : {}),
  };
}

/**
 * Impact: under enforce, a large failing share that no other delivery of the same reporters made up for may mean
 * mail not delivered; under testing or none, mail went through unencrypted or unverified.
 */
export function severityOf(share: number, mode: string, carried: boolean): Severity {
  if (mode === 'enforce' && share >= 0.2 && !carried) return 'critical';
  if ((mode === 'enforce' && share >= 0.05) || share >= 0.5) return 'high';
  if (share >= 0.01) return 'medium';
  return 'low';
}

/** Each domain's reporters and the days each reported it. */
function daysByReporter(reporterDays: ReporterDay[]): Map<string, Map<string, Set<string>>> {
  const out = new Map<string, Map<string, Set<string>>>();
  for (const r of reporterDays) {
    let orgs = out.get(r.domain);
    if (!orgs) out.set(r.domain, (orgs = new Map<string, Set<string>>()));
    const set = orgs.get(r.organization);
    if (set) set.add(r.day);
    else orgs.set(r.organization, new Set([r.day]));
  }
  return out;
}

/** The index of the first element of sorted `list` greater than `value`. */
function after(list: string[], value: string): number {
  let [lo, hi] = [0, list.length];
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (list[mid]! <= value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Reporters that reported the domain on most days and stopped while others went on reporting. */
function stoppedReporters(
  domain: string,
  dd: Map<string, DomainDay>,
  daysOf: Map<string, Set<string>> | undefined,
  settings: IncidentSettings,
): Incident[] {
  if (!daysOf) return [];
  const domainDayList = [...dd.keys()].sort();
  const out: Incident[] = [];
  for (const [organization, own] of daysOf) {
    let previousId: string | null = null;
    const ownDays = [...own].sort();
    let first = 0;
    for (let i = 0; i < ownDays.length; i++) {
      const last = ownDays[i]!;
      const next = ownDays[i + 1];
      // Its days among the REGULAR_DAYS up to this one (a window sliding with i).
      const since = addDays(last, -REGULAR_DAYS);
      while (ownDays[first]! <= since) first++;
      if (i - first + 1 < settings.regularShare * REGULAR_DAYS) continue;
      // The domain's days after its last report, until it came back.
      const start = after(domainDayList, last);
      const end = next === undefined ? domainDayList.length : after(domainDayList, addDays(next, -1));
      if (end - start < settings.stoppedAfterDays) continue;
      const without = domainDayList.slice(start, end);
      const firstDay = addDays(last, 1);
      const id = incidentId(domain, 'reporter-stopped', '', organization, firstDay);
      out.push({
        id,
        domain,
        kind: 'reporter-stopped',
        resultType: '',
        subject: organization,
        state: next ? 'resolved' : 'open',
        firstDay,
        lastDay: without[without.length - 1]!,
        resolvedDay: next ?? null,
        failedSessions: 0,
        sessionsPerDay: 0,
        reporters: [organization],
        sendingIps: { count: 0, top: [] },
        mode: dd.get(last)?.mode ?? '',
        severity: 'medium',
        failingShare: 0,
        previousId,
        diagnosis: 'reporter-stopped',
        daily: without.map((day) => ({ day, failedSessions: 0, sessions: dd.get(day)?.sessions ?? 0 })),
        events: [
          { event: 'opened', day: firstDay, reason: `no report from ${organization} since ${last}` },
          ...(next ? [{ event: 'resolved' as const, day: next, reason: `${organization} reported again` }] : []),
        ],
      });
      previousId = id;
    }
  }
  return out;
}
