// The API's routes: JSON over HTTP for analysts, alerting jobs and operators (reads, plus the hosted MTA-STS policies
// and live checks). Each route's zod schemas validate its path, query and body before its handler runs, and make
// /openapi.json (server.ts serves the table on Fastify).
import { z } from 'zod';
import type { Config } from '../common/config.ts';
import { listAlerts } from './alerts.ts';
import type { Principal } from './auth.ts';
import { REASON_CODES, RESULT_TYPE_DIAGNOSES } from './diagnosis.ts';
import {
  adoptPolicy,
  hostedPolicy,
  findPolicy,
  listPolicies,
  NoPolicyKnown,
  PolicyConflict,
  putPolicy,
  removePolicy,
} from './mta-sts.ts';
import { adoptInput, policyInput, stsDomain } from '../common/sts-policies.ts';
import type { ClickHouseClient } from '../common/clickhouse.ts';
import { isManagedDomain, latestRun } from '../common/posture-store.ts';
import { CheckNowUnavailable, type CheckNow } from '../common/check-now.ts';
import { chooseCopy, CopyNotFound } from './copies.ts';
import { actOn, findIncident, incidentReports, listIncidents } from './incidents.ts';
import { listDeliveries } from './deliveries.ts';
import { listForwards } from './forwards.ts';
import type { ForwardRetry } from '../common/forwarding.ts';
import { incidentOptions } from '../common/incidents/load.ts';
import { BadTransition, type Act } from '../common/incidents/acts.ts';
import { QueueUnavailableError } from '../common/queue.ts';
import type { ReportJobInput } from '../../schemas/job.ts';
import {
  alertsQuery,
  dayRange,
  domainParam,
  domainsQuery,
  encodeCursor,
  failureQuery,
  forwardIdParam,
  forwardsQuery,
  incidentActBody,
  incidentIdParam,
  incidentsQuery,
  limitParam,
  rangeParams,
  rejectsQuery,
  receiptIdParam,
  reportKeyParam,
  reportQuery,
  reportsQuery,
} from './params.ts';
import {
  domainDaily,
  domainKnown,
  domainSummary,
  failureBreakdown,
  getReport,
  listDomains,
  listRejects,
  listReports,
  QueryFailedError,
  type Db,
} from './queries.ts';

export type ApiConfig = Pick<
  Config,
  | 'API_TOKENS'
  | 'NODE_ENV'
  | 'ALERT_FAILURE_RATE'
  | 'MTA_STS_RUA'
  | 'MTA_STS_HOST_TARGET'
  | 'MTA_STS_READINESS_DAYS'
  | 'POSTURE_DOMAINS'
  | 'POSTURE_DOMAIN_TIMEOUT_MS'
  | 'INCIDENT_RESOLVE_DAYS'
  | 'INCIDENT_STOPPED_AFTER_DAYS'
  | 'INCIDENT_WINDOW_DAYS'
>;

const ACTS: Record<Act, string> = {
  acknowledge: 'Acknowledges an open or muted incident: no more notifications until it worsens or resolves',
  mute: 'Mutes an open or acknowledged incident until `until`: no notifications meanwhile but its resolution',
  unmute: 'Ends a mute before its time',
  resolve: 'Resolves an incident by hand; it opens again if it fails on a later day',
  reopen: 'Reopens a resolved incident',
};

interface Context {
  principal: Principal;
  /** The path parameters, query and JSON body, each already validated by the route's zod schema. */
  path: unknown;
  query: unknown;
  body: unknown;
}

/** A value the route's schema validated (Fastify ran it before the handler), typed as that schema's output. */
const validated = <T extends z.ZodType>(_schema: T, value: unknown): z.output<T> => value as z.output<T>;

export interface Route {
  path: string;
  /** GET unless said otherwise; the writes (PUT, DELETE) are for operators. */
  method?: 'GET' | 'PUT' | 'DELETE' | 'POST';
  /** The JSON body a PUT takes. */
  body?: z.ZodType;
  summary: string;
  description?: string;
  query: z.ZodObject;
  pathParams?: Record<string, z.ZodType>;
  /** Only for tokens not limited to some domains (the operators). */
  admin?: boolean;
  handler: (ctx: Context) => Promise<unknown>;
}

/** A handler's answer with a status other than 200 (a 202 for a change that is not in effect yet). */
export class Answer {
  constructor(
    readonly status: number,
    readonly body: unknown,
  ) {}
}

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly detail: unknown = undefined,
  ) {
    super(message);
  }
}

export function routes(
  db: Db,
  ch: ClickHouseClient,
  config: ApiConfig,
  enqueue?: EnqueueFn,
  checkNow?: CheckNow,
  forwards?: ForwardRetry,
): Route[] {
  const publish = { rua: config.MTA_STS_RUA, hostTarget: config.MTA_STS_HOST_TARGET };
  const stsDomainOf = (ctx: Context): string => validated(z.object({ domain: stsDomain }), ctx.path).domain;
  // A domain's checks: for operators, and for tokens limited to domains that include it.
  const checkedDomain = (ctx: Context): string => {
    const domain = stsDomainOf(ctx);
    if (ctx.principal.domains && !ctx.principal.domains.has(domain))
      throw new HttpError(403, 'forbidden', `this token may not read ${domain}`);
    return domain;
  };
  // The policies are written and read by the ClickHouse client itself: its failures are the API's 503s too.
  const store = async <T>(f: () => Promise<T>): Promise<T> => {
    try {
      return await f();
    } catch (err) {
      if (err instanceof PolicyConflict) throw new HttpError(409, 'conflict', err.message, err.detail);
      if (err instanceof NoPolicyKnown) throw new HttpError(404, 'not-found', err.message);
      if (err instanceof HttpError || err instanceof QueryFailedError) throw err;
      throw new QueryFailedError(err instanceof Error ? err.message : String(err), { cause: err });
    }
  };
  const domainOf = (ctx: Context): string => {
    const domain = validated(z.object({ domain: domainParam }), ctx.path).domain;
    if (ctx.principal.domains && !ctx.principal.domains.has(domain)) {
      throw new HttpError(403, 'forbidden', `this token may not read ${domain}`);
    }
    return domain;
  };
  // A domain no report was ever about is a 404 (a typo), not a domain with nothing in the range.
  const reportedDomainOf = async (ctx: Context): Promise<string> => {
    const domain = domainOf(ctx);
    if (!(await domainKnown(db, domain))) throw new HttpError(404, 'not-found', `no reports for ${domain}`);
    return domain;
  };
  return [
    {
      path: '/v1/domains',
      summary: 'Policy domains with their latest day: sessions, failure rate and status; by name, paginated',
      description:
        'status: ok (no failures), degraded (failures below ALERT_FAILURE_RATE), failing (above). Pages of up to `limit` domains in name order (a domain whose every report was re-sent without it is left out, so a page may hold fewer); `next` is the cursor of the next page (null on the last).',
      query: domainsQuery,
      handler: async (ctx) => {
        const p = validated(domainsQuery, ctx.query);
        return listDomains(db, ctx.principal, dayRange(p), config.ALERT_FAILURE_RATE, p);
      },
    },
    {
      path: '/v1/domains/{domain}/summary',
      summary: 'Successful and failed sessions of a domain, split by policy type and STS mode',
      description:
        'Each session counts once: where one report lists the same sessions under several policy entries of the domain (Microsoft sends sts and tlsa for the same sessions), the largest entry counts, never their sum.',
      query: rangeParams,
      pathParams: { domain: domainParam },
      handler: async (ctx) => {
        const range = dayRange(validated(rangeParams, ctx.query));
        return domainSummary(db, await reportedDomainOf(ctx), range);
      },
    },
    {
      path: '/v1/domains/{domain}/daily',
      summary: 'Daily time series of a domain (every day of the range, zeros where there was no report)',
      query: rangeParams,
      pathParams: { domain: domainParam },
      handler: async (ctx) => {
        const range = dayRange(validated(rangeParams, ctx.query));
        return domainDaily(db, await reportedDomainOf(ctx), range);
      },
    },
    {
      path: '/v1/domains/{domain}/failures',
      summary: 'Failures of a domain by result type, sending organization, receiving MX, sending IP or reason code',
      description:
        'Top N by failed sessions of the failure details, with the rest in `other`. A report listing the same sessions under an sts and a tlsa policy (Microsoft) counts them once: the larger of its policy types. Details of different result types within one policy may still overlap (RFC 8460 §4).',
      query: failureQuery,
      pathParams: { domain: domainParam },
      handler: async (ctx) => {
        const p = validated(failureQuery, ctx.query);
        return failureBreakdown(db, await reportedDomainOf(ctx), dayRange(p), p.by, p.limit);
      },
    },
    {
      path: '/v1/reports',
      summary: 'Reports, newest report day first, with cursor pagination',
      query: reportsQuery,
      handler: async (ctx) => {
        const p = validated(reportsQuery, ctx.query);
        if (p.domain && ctx.principal.domains && !ctx.principal.domains.has(p.domain)) {
          throw new HttpError(403, 'forbidden', `this token may not read ${p.domain}`);
        }
        // Paginated lists may span any number of years; only aggregates are limited to one.
        return listReports(db, ctx.principal, dayRange(p, 100 * 366), p);
      },
    },
    {
      path: '/v1/reports/{reportKey}',
      summary:
        'One report in full: normalized fields, flags, failure details, receipts with DKIM verdicts, the raw JSON',
      description:
        'Failure details come in pages of `detailLimit`, in policy and detail order; `failureDetailsNext` is the cursor of the next page. Raw JSON over 5 MiB is left out (`rawOmitted`).',
      query: reportQuery,
      pathParams: { reportKey: reportKeyParam },
      handler: async (ctx) => {
        const key = validated(z.object({ reportKey: reportKeyParam }), ctx.path).reportKey;
        const p = validated(reportQuery, ctx.query);
        const report = await getReport(db, ctx.principal, key, {
          detailLimit: p.detailLimit,
          detailsAfter: p.detailsAfter,
        });
        if (!report) throw new HttpError(404, 'not-found', `no report ${key}`);
        return report;
      },
    },
    {
      path: '/v1/reports/{reportKey}/copies/{receiptId}/choose',
      method: 'POST',
      summary: "Counts this copy of a report (a conflict's figures) instead of the one counted now (operators)",
      description:
        'The copy is queued again as an operator\'s choice, which outranks every copy received (docs/reliability.md "Which copy of a report counts"); the worker stores it like any report. It answers once the copy is queued; GET the report to see it counted.',
      query: z.object({}),
      pathParams: { reportKey: reportKeyParam, receiptId: receiptIdParam },
      admin: true,
      handler: async (ctx) => {
        const { reportKey, receiptId } = validated(
          z.object({ reportKey: reportKeyParam, receiptId: receiptIdParam }),
          ctx.path,
        );
        const queue = enqueue ?? (() => Promise.reject(new QueueUnavailableError('this API has no report queue')));
        try {
          return await chooseCopy(db, { key: reportKey, receiptId, by: ctx.principal.name, now: new Date() }, queue);
        } catch (err) {
          if (err instanceof CopyNotFound) throw new HttpError(404, 'not-found', err.message);
          if (err instanceof QueueUnavailableError) throw new HttpError(503, 'unavailable', err.message);
          throw err;
        }
      },
    },
    {
      path: '/v1/diagnoses',
      summary: 'The diagnosis knowledge base: every result type and the failure-reason-codes real senders use',
      description:
        'Each failure detail in GET /v1/reports/{reportKey} carries its diagnosis rendered with its evidence (`diagnosis`).',
      query: z.object({}),
      handler: () =>
        Promise.resolve({
          resultTypes: RESULT_TYPE_DIAGNOSES,
          reasonCodes: REASON_CODES.map((r) => ({
            cause: r.cause,
            pattern: r.pattern.source,
            explanation: r.explanation,
          })),
        }),
    },
    {
      path: '/v1/rejects',
      summary: 'Rejected reports with their reasons, newest first, but for those stored since (operators only)',
      query: rejectsQuery,
      admin: true,
      handler: async (ctx) => {
        const p = validated(rejectsQuery, ctx.query);
        return listRejects(db, dayRange(p, 100 * 366), p);
      },
    },
    {
      path: '/v1/alerts',
      summary: 'Alerts after a cursor, oldest first: each alert is returned once per cursor position',
      description:
        'Poll with `since` set to the `next` of the previous answer; `next` never moves past an alert not yet returned.',
      query: alertsQuery,
      handler: async (ctx) => {
        const p = validated(alertsQuery, ctx.query);
        return listAlerts(db, ctx.principal, Number(p.since ?? 0), p.limit);
      },
    },
    {
      path: '/v1/incidents',
      summary: 'Incidents that ran during the range, most urgent first: open ones by severity, then the rest',
      description:
        "As the scheduler last derived them (every ALERT_EVAL_INTERVAL_MS). An incident is one problem of one domain (a result type at one MX or policy host, a reporter that stopped, a live check's finding about a managed domain), derived from report days (check days for live checks): it opens on its first failing day and resolves after INCIDENT_RESOLVE_DAYS consecutive days with the domain's reports and no such failure (a live check's finding: on the day a check finds it fine). `state` also reflects people's acts (acknowledge, mute, resolve, reopen). `next` is the cursor of the next page (null on the last).",
      query: incidentsQuery,
      handler: async (ctx) => {
        const p = validated(incidentsQuery, ctx.query);
        if (p.domain && ctx.principal.domains && !ctx.principal.domains.has(p.domain))
          throw new HttpError(403, 'forbidden', `this token may not read ${p.domain}`);
        const page = { limit: p.limit, offset: p.cursor?.o ?? 0 };
        const range = dayRange(p, config.INCIDENT_WINDOW_DAYS);
        const found = await listIncidents(db, ctx.principal, range, p, page, new Date());
        return { incidents: found.incidents, next: found.next === null ? null : encodeCursor({ o: found.next }) };
      },
    },
    {
      path: '/v1/incidents/{id}',
      summary: 'One incident: its daily series, the reports that listed it, and its events',
      query: z.object({}),
      pathParams: { id: incidentIdParam },
      handler: async (ctx) => {
        const { id } = validated(z.object({ id: incidentIdParam }), ctx.path);
        const incident = await findIncident(db, ctx.principal, id, incidentOptions(config), new Date());
        if (!incident) throw new HttpError(404, 'not-found', `no incident ${id}`);
        return { ...incident, reports: await incidentReports(db, incident) };
      },
    },
    ...(Object.entries(ACTS) as Array<[Act, string]>).map(([act, summary]): Route => ({
      path: `/v1/incidents/{id}/${act}`,
      method: 'POST',
      summary,
      description:
        "Recorded as an event with the token's name and the time. 409 when the incident's state does not allow it.",
      query: z.object({}),
      pathParams: { id: incidentIdParam },
      body: incidentActBody,
      handler: async (ctx) => {
        const { id } = validated(z.object({ id: incidentIdParam }), ctx.path);
        const body = validated(incidentActBody, ctx.body) ?? {};
        const until = body.until ? new Date(body.until) : undefined;
        try {
          const incident = await actOn(
            db,
            ch,
            ctx.principal,
            id,
            { event: act, note: body.note, until },
            incidentOptions(config),
            new Date(),
          );
          if (!incident) throw new HttpError(404, 'not-found', `no incident ${id}`);
          return incident;
        } catch (err) {
          if (err instanceof BadTransition) throw new HttpError(409, 'conflict', err.message);
          throw err;
        }
      },
    })),
    {
      path: '/v1/notifications',
      summary: 'Notification deliveries, newest first: delivered, retrying or failed (with the reason)',
      description:
        'One row per notification and destination (mail, Slack, Teams, webhook), in its latest state. A webhook URL is shown without its path.',
      query: z.object({ limit: limitParam(1000, 100) }),
      handler: async (ctx) =>
        listDeliveries(db, ctx.principal, validated(z.object({ limit: limitParam(1000, 100) }), ctx.query).limit),
    },
    {
      path: '/v1/forwards',
      summary:
        'Report forwards (FORWARD_RULES), newest first: delivered, retrying or failed with the reason (operators)',
      description:
        'One row per report and destination, in its newest state, among those recorded in the last `days` days. A failed one (it gave up) is kept 30 days for POST /v1/forwards/{id}/retry. An https destination is shown without its path (it may hold a secret).',
      query: forwardsQuery,
      admin: true,
      handler: async (ctx) => listForwards(db, validated(forwardsQuery, ctx.query)),
    },
    {
      path: '/v1/forwards/{id}/retry',
      method: 'POST',
      summary: 'Sends a failed forward again, its attempts and backoff from the first (operators)',
      description:
        '202 once it is queued; GET /v1/forwards shows its outcome. 404 for a delivery no longer kept (30 days) or never queued; 409 for one that did not fail (delivered, or still being retried).',
      query: z.object({}),
      pathParams: { id: forwardIdParam },
      admin: true,
      handler: async (ctx) => {
        const { id } = validated(z.object({ id: forwardIdParam }), ctx.path);
        if (!forwards) throw new HttpError(503, 'unavailable', 'this API has no forward queue');
        const done = await forwards.retry(id);
        if (done.outcome === 'not-found') throw new HttpError(404, 'not-found', `no forward ${id} is kept`);
        if (done.outcome === 'not-failed')
          throw new HttpError(409, 'conflict', `forward ${id} did not fail: it is ${done.state}`);
        return new Answer(202, { id, state: 'queued' });
      },
    },
    {
      path: '/v1/checks/{domain}',
      summary: "The newest live check of a managed domain's setup: records, policy, MX coverage, each MX host's TLS",
      query: z.object({}),
      pathParams: { domain: stsDomain },
      handler: async (ctx) => {
        const domain = checkedDomain(ctx);
        const rows = await store(() => latestRun(db, domain));
        return {
          domain,
          checkedAt: rows[0]?.checked_at ?? null,
          results: rows.map((r) => ({
            check: r.check_name,
            subject: r.subject,
            severity: r.severity,
            summary: r.summary,
            detail: JSON.parse(r.detail || '{}') as unknown,
          })),
        };
      },
    },
    {
      path: '/v1/checks/{domain}',
      method: 'POST',
      summary: 'Checks a managed domain now (only managed domains: hosted ones and POSTURE_DOMAINS)',
      description:
        'The scheduler runs the check (it must be running); the answer is the run, as GET returns it afterwards. 503 when no scheduler finished it within POSTURE_DOMAIN_TIMEOUT_MS and a margin.',
      query: z.object({}),
      pathParams: { domain: stsDomain },
      handler: async (ctx) => {
        const domain = checkedDomain(ctx);
        if (!(await store(() => isManagedDomain(ch, config.POSTURE_DOMAINS, domain))))
          throw new HttpError(404, 'not-found', `${domain} is not a managed domain: not checked`);
        if (!checkNow) throw new HttpError(503, 'unavailable', 'this API has no check-now queue');
        try {
          // The scheduler runs it; past the domain's deadline and a margin, nobody answered.
          return { domain, ...(await checkNow.check(domain, config.POSTURE_DOMAIN_TIMEOUT_MS + 15_000)) };
        } catch (err) {
          if (err instanceof CheckNowUnavailable) throw new HttpError(503, 'unavailable', err.message);
          throw err;
        }
      },
    },
    {
      path: '/v1/mta-sts',
      summary: 'Hosted MTA-STS policies, each with its text and the DNS records to publish (operators)',
      query: z.object({}),
      admin: true,
      handler: (_ctx) => store(() => listPolicies(ch, publish, new Date())),
    },
    {
      path: '/v1/mta-sts/{domain}',
      summary: "A hosted domain's MTA-STS policy, its text and the DNS records to publish (operators)",
      query: z.object({}),
      pathParams: { domain: stsDomain },
      admin: true,
      handler: async (ctx) => {
        const domain = stsDomainOf(ctx);
        const policy = await store(() => findPolicy(ch, domain));
        if (!policy) throw new HttpError(404, 'not-found', `${domain} has no hosted policy`);
        return await store(() => hostedPolicy(ch, policy, publish, new Date()));
      },
    },
    {
      path: '/v1/mta-sts/{domain}',
      method: 'PUT',
      summary: "Sets a hosted domain's policy (a new policy id on every change; operators)",
      description:
        'Body: {"mode": "testing"|"enforce"|"none", "mx": [patterns], "maxAge": seconds, "acknowledge": {"mx": [...], "organizations": [...]}}. testing → enforce is refused (409, with what would fail) while the reports of the last MTA_STS_READINESS_DAYS show failures under the testing policy that are not acknowledged. The same policy again changes nothing. 200 when the policy host holds a usable certificate of mta-sts.<domain>; otherwise 202 with state pending-certificate, the certificate\'s state (pending, failed with the reason, missing, …) and the _mta-sts record held back in recordsNotYet until GET says state active.',
      query: z.object({}),
      pathParams: { domain: stsDomain },
      body: policyInput,
      admin: true,
      handler: async (ctx) => {
        const input = validated(policyInput, ctx.body);
        const { policy, changed } = await store(() =>
          putPolicy(db, ch, {
            domain: stsDomainOf(ctx),
            input,
            by: ctx.principal.name,
            readinessDays: config.MTA_STS_READINESS_DAYS,
            now: new Date(),
          }),
        );
        return inEffectOrPending({ changed, ...(await store(() => hostedPolicy(ch, policy, publish, new Date()))) });
      },
    },
    {
      path: '/v1/mta-sts/{domain}/adopt',
      method: 'POST',
      summary: "Hosts a domain's existing policy at its mode: enforce stays enforce (operators)",
      description:
        'Body (optional): {"maxAge": seconds, "mx": [patterns]}. The policy is the one the latest live check fetched (its MX patterns and max_age unless given), else the one the reports of the last MTA_STS_READINESS_DAYS saw (then "mx" is required). The hosted policy gets a new id; the answer carries where it came from and the readiness over the same days. 404 when no policy of the domain is known; 409 when it is hosted already or its policy is in mode none; 202 with state pending-certificate while the policy host has no usable certificate (as for PUT).',
      query: z.object({}),
      pathParams: { domain: stsDomain },
      body: adoptInput.nullish(),
      admin: true,
      handler: async (ctx) => {
        const input = validated(adoptInput, ctx.body ?? {});
        const { policy, adopted, readiness } = await store(() =>
          adoptPolicy(db, ch, {
            domain: stsDomainOf(ctx),
            maxAge: input.maxAge,
            mx: input.mx,
            by: ctx.principal.name,
            readinessDays: config.MTA_STS_READINESS_DAYS,
            now: new Date(),
          }),
        );
        return inEffectOrPending({
          adopted,
          readiness,
          ...(await store(() => hostedPolicy(ch, policy, publish, new Date()))),
        });
      },
    },
    {
      path: '/v1/mta-sts/{domain}',
      method: 'DELETE',
      summary: 'Stops hosting a domain: only in mode none, once senders can no longer hold its previous policy',
      query: z.object({}),
      pathParams: { domain: stsDomain },
      admin: true,
      handler: async (ctx) => {
        const domain = stsDomainOf(ctx);
        if (!(await store(() => removePolicy(ch, { domain, by: ctx.principal.name, now: new Date() }))))
          throw new HttpError(404, 'not-found', `${domain} has no hosted policy`);
        return { removed: domain };
      },
    },
  ];
}

/** A policy change is 200 once senders can fetch the policy, 202 while its host waits for a certificate. */
const inEffectOrPending = <T extends { state: 'active' | 'pending-certificate' }>(body: T): Answer =>
  new Answer(body.state === 'active' ? 200 : 202, body);

export type EnqueueFn = (job: ReportJobInput) => Promise<void>;
