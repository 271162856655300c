// What every dashboard page is given, and the parameters pages share.
import type { IncidentOptions } from '../../common/incidents/load.ts';
import type { Principal } from '../auth.ts';
import { ParamError, dayRange, dateParam, domainParam, parseParams } from '../params.ts';
import type { Db, Range } from '../queries.ts';
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
  now: Date;
}

/** The page's day range (from/to), `defaultDays` long by default. */
export function pageRange(ctx: PageContext, defaultDays: number, maxDays = 366): Range {
  const p = parseParams(z.object({ from: dateParam.optional(), to: dateParam.optional() }), {
    from: ctx.query.get('from') || undefined,
    to: ctx.query.get('to') || undefined,
  });
  const to = p.to ?? ctx.now.toISOString().slice(0, 10);
  const from =
    p.from ?? new Date(Date.parse(`${to}T00:00:00Z`) - (defaultDays - 1) * 86400_000).toISOString().slice(0, 10);
  return dayRange({ from, to }, maxDays, ctx.now);
}

/** A domain the principal may read, from a path or query value; a 403 otherwise. */
export function readableDomain(ctx: PageContext, value: string): string {
  const domain = parseParams(z.object({ domain: domainParam }), { domain: value }).domain;
  if (ctx.principal.domains && !ctx.principal.domains.has(domain)) throw new Forbidden(`you may not read ${domain}`);
  return domain;
}

export class Forbidden extends Error {}
export class NotFound extends Error {}
export { ParamError };
