// Deriving a domain again after new reports without reading its whole window: a report of day D changes no incident
// that ended before D. So the incidents that ended before a start day stay as stored, and the rest are derived from
// the facts of a few weeks before that day: the same incidents, ids and links a derivation of the whole window gives
// (the scheduler's test compares them). Failures and reporters that stopped have starts of their own (neither
// depends on the other), each the first day of the new reports moved back
// - over every stored incident of its kind still running on it (open, or resolved on or after it): to its first day,
//   or for a failure incident checkpointed before that day, to the day after its checkpoint (it goes on from there);
// - for reporters, to the day after the domain's `stoppedAfterDays`-th last report day before the new reports: a
//   reporter whose last report came after that may now count as stopped, from the day after that report.
// The reporters' days are read from REGULAR_DAYS + 1 days before the earlier start (a reporter's regularity looks
// that far back), the failures from theirs. Posture incidents come from the live checks, a few rows a day: derived
// over the whole window each time.
import { addDays } from '../days.ts';
import type { Db } from '../db.ts';
import {
  REGULAR_DAYS,
  byDomainAndDay,
  deriveIncidents,
  resumeKey,
  type Checkpoint,
  type FailureFact,
  type Incident,
  type ReporterDay,
} from './derive.ts';
import { failureFacts, postureFacts, reporterDays } from './facts.ts';
import { postureIncidents } from './posture.ts';
import { windowStart, type IncidentOptions } from './load.ts';
import { NO_DAY, readIncidents } from './store.ts';

/** Days read before the start beyond the regularity window, so most domains' last report days are among them. */
const SLACK_DAYS = 7;

/**
 * The earliest of `start` and, for every stored incident running on it, the day after its checkpoint (one before the
 * day) or else its first day, until every incident running on it goes on from a checkpoint of the day before.
 */
export function settledBefore(stored: Incident[], start: string): string {
  let day = start;
  for (let moved = true; moved;) {
    moved = false;
    for (const i of stored) {
      if (!(i.firstDay < day && (i.resolvedDay === null || i.resolvedDay >= day))) continue;
      const back = i.resume && i.resume.day < day ? addDays(i.resume.day, 1) : i.firstDay;
      if (back < day) {
        day = back;
        moved = true;
      }
    }
  }
  return day;
}

/** Days before the evaluation's day at which running incidents are checkpointed: reports later than that are rare. */
export const CHECKPOINT_LAG_DAYS = 7;
export const checkpointDayOf = (to: string): string => addDays(to, -CHECKPOINT_LAG_DAYS);

/** The stored failure incidents running on `start` that go on from their checkpoint of the day before, by problem. */
function resumable(stored: Incident[], start: string): Map<string, Incident & { resume: Checkpoint }> {
  const out = new Map<string, Incident & { resume: Checkpoint }>();
  const before = addDays(start, -1);
  for (const i of stored)
    if (i.kind === 'failure' && i.resume?.day === before && i.firstDay < start)
      if (i.resolvedDay === null || i.resolvedDay >= start)
        out.set(resumeKey(i.domain, i.resultType, i.subject), i as Incident & { resume: Checkpoint });
  return out;
}

/** Where a domain's derivation starts, per kind: failures and reporters that stopped are derived apart. */
export interface Starts {
  failure: string;
  'reporter-stopped': string;
}

/**
 * The domain's stored incidents that ended before their kind's start and its derived ones from it on (and the
 * `resumed` ones, by id: derived going on from their checkpoints, they replace the stored ones), each linked to the
 * one before it of the same problem (a stored one, when the problem came back after the start). Posture incidents
 * are all derived.
 */
export function mergeIncidents(
  stored: Incident[],
  derived: Incident[],
  start: string | Starts,
  resumed: ReadonlySet<string> = new Set(),
): Incident[] {
  const startOf = (i: Incident): string =>
    i.kind === 'posture' ? '' : typeof start === 'string' ? start : start[i.kind];
  const all = [
    ...stored.filter((i) => i.firstDay < startOf(i) && !resumed.has(i.id)),
    ...derived.filter((i) => i.firstDay >= startOf(i) || resumed.has(i.id)),
  ].sort(byDomainAndDay);
  const last = new Map<string, string>();
  return all.map((i) => {
    const key = JSON.stringify([i.kind, i.resultType, i.subject]);
    const previousId = last.get(key) ?? null;
    last.set(key, i.id);
    return i.firstDay >= startOf(i) ? { ...i, previousId } : i;
  });
}

interface Plan {
  domain: string;
  stored: Incident[];
  /** The first day of the failures read and derived again. */
  start: string;
  /** The first day reporters that stopped are derived again from. */
  stopStart: string;
  /** The first day of the reporters' days read. */
  from: string;
  failures: FailureFact[];
  days: ReporterDay[];
}

const ofKind = (stored: Incident[], kind: Incident['kind']): Incident[] => stored.filter((i) => i.kind === kind);

/**
 * Every incident of `domains` up to `to` after reports of days from `newFrom` on arrived (none: only new live
 * checks), when the domains' stored incidents are those of the same window before them (the caller derives every
 * domain in full when the window moved on); and the stored incidents it went on from. `onRead` is called once the
 * facts are read.
 */
export async function deriveSince(
  db: Db,
  domains: string[],
  newFrom: string | undefined,
  to: string,
  options: IncidentOptions,
  onRead?: () => void,
): Promise<{ incidents: Incident[]; stored: Incident[] }> {
  const windowFrom = windowStart(to, options.windowDays);
  const [stored, posture] = await Promise.all([
    readIncidents(db, { domains, from: NO_DAY, to, detail: true, resume: true }),
    postureFacts(db, { from: windowFrom, to, domains }),
  ]);
  const storedOf = groupBy(stored, (i) => i.domain);
  const postureOf = groupBy(postureIncidents(posture.days, posture.runs), (i) => i.domain);
  const plans = domains.map((domain): Plan => {
    const own = storedOf.get(domain) ?? [];
    const [start, stopStart] = (['failure', 'reporter-stopped'] as const).map((kind) =>
      newFrom ? max(windowFrom, settledBefore(ofKind(own, kind), newFrom)) : AFTER_ALL,
    ) as [string, string];
    const from = factsFrom(start < stopStart ? start : stopStart, windowFrom);
    return { domain, stored: own, start, stopStart, from, failures: [], days: [] };
  });
  // The failures' starts are placed already: their facts are read while the reporters' days find their start.
  const failures = newFrom ? readFailures(db, plans, to) : Promise.resolve();
  failures.catch(() => {}); // awaited below; a failure of the reporters' reads before it must not leave it unhandled
  let pending = newFrom ? plans : [];
  while (pending.length > 0) {
    await readReporterDays(db, pending, to);
    pending = pending.filter((plan) => !placeStart(plan, newFrom!, windowFrom, options.stoppedAfterDays));
  }
  await failures;
  onRead?.();
  const checkpointDay = checkpointDayOf(to);
  const incidents = plans.flatMap((plan) => {
    const from = newFrom ? resumable(plan.stored, plan.start) : new Map<string, Incident & { resume: Checkpoint }>();
    const derived = [
      ...deriveIncidents(plan.failures, plan.days, options, { from, checkpointDay }),
      ...(postureOf.get(plan.domain) ?? []),
    ];
    const starts = { failure: plan.start, 'reporter-stopped': plan.stopStart };
    return mergeIncidents(plan.stored, derived, starts, new Set([...from.values()].map((i) => i.id)));
  });
  return { incidents, stored };
}

/** A start after every day: nothing derived again from reports. */
const AFTER_ALL = '9999-12-31';

const max = (a: string, b: string): string => (a > b ? a : b);
const factsFrom = (start: string, windowFrom: string): string =>
  max(windowFrom, addDays(start, -(REGULAR_DAYS + 1 + SLACK_DAYS)));

/** The plans' reporter days, from each one's `from` (a plan's may start earlier: one query per month they start in). */
const readReporterDays = (db: Db, plans: Plan[], to: string): Promise<void> =>
  readPerMonth(
    plans,
    (p) => p.from,
    (scope) => reporterDays(db, { ...scope, to }),
    (p, days) => (p.days = days),
  );

/** The plans' failures, from each one's start. */
const readFailures = (db: Db, plans: Plan[], to: string): Promise<void> =>
  readPerMonth(
    plans,
    (p) => p.start,
    (scope) => failureFacts(db, { ...scope, to }),
    (p, found) => (p.failures = found),
  );

/** Facts of the plans' domains read in one query per month their first day falls in (at once), each plan given its own. */
async function readPerMonth<T extends { domain: string }>(
  plans: Plan[],
  firstDay: (p: Plan) => string,
  read: (scope: { from: string; domains: string[] }) => Promise<T[]>,
  give: (p: Plan, facts: T[]) => void,
): Promise<void> {
  const groups = [...groupBy(plans, (p) => firstDay(p).slice(0, 7)).values()];
  await Promise.all(
    groups.map(async (group) => {
      const of = groupBy(
        await read({ from: group.map(firstDay).sort()[0]!, domains: group.map((p) => p.domain) }),
        (f) => f.domain,
      );
      for (const p of group) give(p, of.get(p.domain) ?? []);
    }),
  );
}

function groupBy<T>(list: T[], key: (x: T) => string): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const x of list) {
    const group = out.get(key(x));
    if (group) group.push(x);
    else out.set(key(x), [x]);
  }
  return out;
}

/**
 * Moves the plan's start for reporters that stopped back to before its `stoppedAfterDays`-th last report day ahead of
 * the new reports; true when its reporter days reach back far enough for that start, false when they must be read
 * again from earlier.
 */
function placeStart(plan: Plan, newFrom: string, windowFrom: string, stoppedAfterDays: number): boolean {
  const before = [...new Set(plan.days.map((d) => d.day))].filter((d) => d < newFrom).sort();
  const kth = before[before.length - stoppedAfterDays];
  // Too few report days read: all of them from the window's start, unless that is where they were read from.
  const wanted = kth === undefined ? windowFrom : addDays(kth, 1);
  const stopped = ofKind(plan.stored, 'reporter-stopped');
  plan.stopStart = max(windowFrom, settledBefore(stopped, wanted < plan.stopStart ? wanted : plan.stopStart));
  if (plan.from === windowFrom || plan.from <= addDays(plan.stopStart, -(REGULAR_DAYS + 1))) return true;
  plan.from = kth === undefined ? windowFrom : factsFrom(plan.stopStart, windowFrom);
  return false;
}
