// What every dashboard page is given, and the parameters pages share.
import type { IncidentOptions } from '../../common/incidents/load.ts';
import type { PublishSettings } from '../../common/sts-policies.ts';
import type { Principal } from '../auth.ts';
import { ParamError, dayRange, dateParam, domainParam, parseParams } from '../params.ts';
import type { Db, Range } from '../queries.ts';
import { reportDayBounds, type DayBounds } from '../dashboard-queries.ts';
import { addDays } from '../../common/days.ts';
import type { Period } from './html.ts';
import { z } from 'zod';

export interface PageContext {
  db: Db;
  principal: Principal;
  query: URLSearchParams;
  /** Path parameters, decoded. */
  params: Record<string, string>;
  threshold: number;
  /** Report days the enforce readiness looks back (MTA_STS_READINESS_DAYS, as the API's check). */
  readinessDays: number;
  /** How incidents are derived (the INCIDENT_* settings). */
  incidents: IncidentOptions;
  /** The records hosted MTA-STS domains publish (MTA_STS_RUA, MTA_STS_HOST_TARGET). */
  publish: PublishSettings;
  /** Domains checked besides the hosted ones (POSTURE_DOMAINS). */
  postureDomains: readonly string[];
  now: Date;
}

/** "All time" goes back at most this far: TLS-RPT began in 2018; a report dated 1970 is not a reason to draw 57 years. */
const ALL_TIME_DAYS = 3660;

/**
 * The page's day range. Typed dates win; without them the range is `defaultDays` long and ends on the latest day
 * with reports (today's reports arrive tomorrow; a quiet install's last data may be months old), or covers all
 * time with `period=all` (at most ten years, or `allTimeDays`). `bounds` reads the first and latest report
 * day of what the page shows (pages about arrivals, like rejects, give none and end today).
 */
export async function pageRange(
  ctx: PageContext,
  defaultDays: number,
  o: { maxDays?: number; allTimeDays?: number; bounds?: (withFirst: boolean) => Promise<DayBounds | undefined> } = {},
): Promise<Range & { period: Period }> {
  const maxDays = o.maxDays ?? 366;
  const p = parseParams(
    z.object({ from: dateParam.optional(), to: dateParam.optional(), period: z.enum(['latest', 'all']).optional() }),
    {
      from: ctx.query.get('from') || undefined,
      to: ctx.query.get('to') || undefined,
      period: ctx.query.get('period') || undefined,
    },
  );
  const today = ctx.now.toISOString().slice(0, 10);
  const typed = p.from !== undefined || p.to !== undefined;
  const period: Period = typed ? 'dates' : (p.period ?? 'latest');
  const bounds = typed ? undefined : await o.bounds?.(period === 'all');
  const to = p.to ?? bounds?.last ?? today;
  const longest = period === 'all' ? (o.allTimeDays ?? Math.max(maxDays, ALL_TIME_DAYS)) : maxDays;
  const earliest = addDays(to, -(longest - 1));
  const from =
    p.from ??
    (period === 'all' && bounds
      ? bounds.first > earliest
        ? bounds.first
        : earliest
      : addDays(to, -(defaultDays - 1)));
  return { ...dayRange({ from, to }, longest, ctx.now), period };
}

/** The report days of what a page shows: one domain's, or every domain's the principal reads. */
export const reportBounds =
  (ctx: PageContext, domain?: string) =>
  (withFirst: boolean): Promise<DayBounds | undefined> =>
    reportDayBounds(ctx.db, ctx.principal, domain, ctx.now.toISOString().slice(0, 10), withFirst);

/** A domain the principal may read, from a path or query value; a 403 otherwise. */
export function readableDomain(ctx: PageContext, value: string): string {
  const domain = parseParams(z.object({ domain: domainParam }), { domain: value }).domain;
  if (ctx.principal.domains && !ctx.principal.domains.has(domain)) throw new Forbidden(`you may not read ${domain}`);
  return domain;
}

export class Forbidden extends Error {}
export class NotFound extends Error {}
export { ParamError };
