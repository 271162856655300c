// Incidents with their state, as the API, the dashboard and the scheduler's notifications see them: derived from the
// report days of a window before a last day (derive.ts), with people's acts (acts.ts).
import { addDays } from '../days.ts';
import type { Config } from '../config.ts';
import type { Db } from '../db.ts';
import { readActs, track, type TrackedIncident } from './acts.ts';
import { DEFAULT_SETTINGS, byDomainAndDay, deriveIncidents, type Incident, type IncidentSettings } from './derive.ts';
import { failureFacts, postureFacts, reporterDays } from './facts.ts';
import { postureIncidents } from './posture.ts';

export interface IncidentOptions extends IncidentSettings {
  /** Report days before the range's last day that incidents are derived from. */
  windowDays: number;
}

/** The incident settings of the configuration. */
export const incidentOptions = (
  config: Pick<Config, 'INCIDENT_RESOLVE_DAYS' | 'INCIDENT_STOPPED_AFTER_DAYS' | 'INCIDENT_WINDOW_DAYS'>,
): IncidentOptions => ({
  resolveDays: config.INCIDENT_RESOLVE_DAYS,
  stoppedAfterDays: config.INCIDENT_STOPPED_AFTER_DAYS,
  regularShare: DEFAULT_SETTINGS.regularShare,
  windowDays: config.INCIDENT_WINDOW_DAYS,
});

/**
 * The first day incidents are derived from: on a grid of `days` from 1970, one to two cells back, so requests up to
 * different last days mostly start alike, and an incident cut by the window's start gets the same (cut) first day
 * and id in both.
 */
export function windowStart(to: string, days: number): string {
  const index = Math.floor(Date.parse(`${to}T00:00:00Z`) / 86_400_000);
  return addDays('1970-01-01', (Math.floor(index / days) - 1) * days);
}

/**
 * Every incident of the domains (all when undefined) derived up to `to`, as the reports make it; those running at the
 * end of `checkpointDay`, if given, with their checkpoints. `onRead` is called once the facts are read.
 */
export async function deriveDomains(
  db: Db,
  domains: string[] | undefined,
  to: string,
  options: IncidentOptions,
  checkpointDay?: string,
  onRead?: () => void,
): Promise<Incident[]> {
  const scope = { from: windowStart(to, options.windowDays), to, domains };
  const [failures, days, posture] = await Promise.all([
    failureFacts(db, scope),
    reporterDays(db, scope),
    postureFacts(db, scope),
  ]);
  onRead?.();
  return [
    ...deriveIncidents(failures, days, options, { checkpointDay }),
    ...postureIncidents(posture.days, posture.runs),
  ].sort(byDomainAndDay);
}

/** Every incident of the domains (a token's, or all) derived up to `to`, with its state at `now`. */
export async function loadIncidents(
  db: Db,
  domains: string[] | undefined,
  to: string,
  options: IncidentOptions,
  now: Date,
): Promise<TrackedIncident[]> {
  const [derived, acts] = await Promise.all([deriveDomains(db, domains, to, options), readActs(db, domains)]);
  return derived.map((i) => track(i, acts, now));
}
