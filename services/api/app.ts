// The API: JSON over HTTP for analysts, alerting jobs and operators (reads, plus the hosted MTA-STS policies and live
// checks), and the dashboard under /ui. One route table serves the requests and generates /openapi.json.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import { Counter } from 'prom-client';
import { z } from 'zod';
import type { Config } from '../common/config.ts';
import type { Logger } from '../common/logger.ts';
import { guarded, parseTarget, readSmallBody, safeDecode, sendJson } from '../common/http-guard.ts';
import { opsHandler } from '../common/metrics.ts';
import { listAlerts } from './alerts.ts';
import { REASON_CODES, RESULT_TYPE_DIAGNOSES } from './diagnosis.ts';
import { authenticate, type Principal, parseTokens } from './auth.ts';
import { dashboard } from './ui/dashboard.ts';
import { describePolicy, findPolicy, listPolicies, PolicyConflict, putPolicy, removePolicy } from './mta-sts.ts';
import { policyInput, stsDomain } from '../common/sts-policies.ts';
import type { ClickHouseClient } from '../common/clickhouse.ts';
import { latestRun, managedDomains } from '../common/posture-store.ts';
import { CheckNowUnavailable, type CheckNow } from '../common/check-now.ts';
import type { SessionStore } from './ui/sessions.ts';
import { chooseCopy, CopyNotFound } from './copies.ts';
import { QueueUnavailableError } from '../common/queue.ts';
import type { ReportJobInput } from '../../schemas/job.ts';
import {
  ParamError,
  alertsQuery,
  dayRange,
  domainParam,
  domainsQuery,
  failureQuery,
  parseParams,
  rangeParams,
  rejectsQuery,
  receiptIdParam,
  reportKeyParam,
  reportQuery,
  reportsQuery,
} from './params.ts';
import {
  domainDaily,
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
>;

interface Context {
  principal: Principal;
  path: Record<string, string>;
  query: Record<string, string | undefined>;
  /** The parsed JSON body of a PUT. */
  body: unknown;
}

interface Route {
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

function routes(db: Db, ch: ClickHouseClient, config: ApiConfig, enqueue?: EnqueueFn, checkNow?: CheckNow): Route[] {
  const publish = { rua: config.MTA_STS_RUA, hostTarget: config.MTA_STS_HOST_TARGET };
  const stsDomainOf = (ctx: Context): string => parseParams(z.object({ domain: stsDomain }), ctx.path).domain;
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
      if (err instanceof HttpError || err instanceof QueryFailedError) throw err;
      throw new QueryFailedError(err instanceof Error ? err.message : String(err), { cause: err });
    }
  };
  const domainOf = (ctx: Context): string => {
    const domain = parseParams(z.object({ domain: domainParam }), ctx.path).domain;
    if (ctx.principal.domains && !ctx.principal.domains.has(domain)) {
      throw new HttpError(403, 'forbidden', `this token may not read ${domain}`);
    }
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
        const p = parseParams(domainsQuery, ctx.query);
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
      handler: async (ctx) => domainSummary(db, domainOf(ctx), dayRange(parseParams(rangeParams, ctx.query))),
    },
    {
      path: '/v1/domains/{domain}/daily',
      summary: 'Daily time series of a domain (every day of the range, zeros where there was no report)',
      query: rangeParams,
      pathParams: { domain: domainParam },
      handler: async (ctx) => domainDaily(db, domainOf(ctx), dayRange(parseParams(rangeParams, ctx.query))),
    },
    {
      path: '/v1/domains/{domain}/failures',
      summary: 'Failures of a domain by result type, sending organization, receiving MX, sending IP or reason code',
      description:
        'Top N by failed sessions of the failure details, with the rest in `other`. Detail counts may overlap (RFC 8460 §4).',
      query: failureQuery,
      pathParams: { domain: domainParam },
      handler: async (ctx) => {
        const p = parseParams(failureQuery, ctx.query);
        return failureBreakdown(db, domainOf(ctx), dayRange(p), p.by, p.limit);
      },
    },
    {
      path: '/v1/reports',
      summary: 'Reports, newest report day first, with cursor pagination',
      query: reportsQuery,
      handler: async (ctx) => {
        const p = parseParams(reportsQuery, ctx.query);
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
        const key = parseParams(z.object({ reportKey: reportKeyParam }), ctx.path).reportKey;
        const p = parseParams(reportQuery, ctx.query);
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
        const { reportKey, receiptId } = parseParams(
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
        const p = parseParams(rejectsQuery, ctx.query);
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
        const p = parseParams(alertsQuery, ctx.query);
        return listAlerts(db, ctx.principal, Number(p.since ?? 0), p.limit);
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
        if (!(await store(() => managedDomains(ch, config))).includes(domain))
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
      handler: (_ctx) => store(() => listPolicies(ch, publish)),
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
        return describePolicy(policy, publish);
      },
    },
    {
      path: '/v1/mta-sts/{domain}',
      method: 'PUT',
      summary: "Sets a hosted domain's policy (a new policy id on every change; operators)",
      description:
        'Body: {"mode": "testing"|"enforce"|"none", "mx": [patterns], "maxAge": seconds, "acknowledge": {"mx": [...], "organizations": [...]}}. testing → enforce is refused (409, with what would fail) while the reports of the last MTA_STS_READINESS_DAYS show failures under the testing policy that are not acknowledged. The same policy again changes nothing.',
      query: z.object({}),
      pathParams: { domain: stsDomain },
      body: policyInput,
      admin: true,
      handler: async (ctx) => {
        const input = parseParams(policyInput, ctx.body as Record<string, string>);
        const { policy, changed } = await store(() =>
          putPolicy(db, ch, {
            domain: stsDomainOf(ctx),
            input,
            by: ctx.principal.name,
            readinessDays: config.MTA_STS_READINESS_DAYS,
            now: new Date(),
          }),
        );
        return { changed, ...describePolicy(policy, publish) };
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

/** A JSON body of at most 16 KiB (a policy), or why not. */
async function readJsonBody(req: IncomingMessage): Promise<{ value: unknown } | { status: number; error: string }> {
  if (!/^application\/json\b/i.test(req.headers['content-type'] ?? ''))
    return { status: 415, error: 'send Content-Type: application/json' };
  const body = await readSmallBody(req, 16 * 1024);
  if (!body) return { status: 413, error: 'the body is larger than 16 KiB' };
  try {
    return { value: JSON.parse(body.toString('utf8')) as unknown };
  } catch {
    return { status: 400, error: 'the body is not JSON' };
  }
}

function toRegex(path: string): { re: RegExp; names: string[] } {
  const names: string[] = [];
  const re = new RegExp(
    `^${path.replace(/\{(\w+)\}/g, (_, n: string) => {
      names.push(n);
      return '([^/]+)';
    })}$`,
  );
  return { re, names };
}

const errorSchema = {
  type: 'object',
  properties: {
    error: { type: 'string' },
    message: { type: 'string' },
    field: { type: 'string' },
    reason: { type: 'string' },
  },
  required: ['error'],
};

export function openApiDocument(table: Route[]): Record<string, unknown> {
  const paths: Record<string, unknown> = {};
  for (const r of table) {
    const json = z.toJSONSchema(r.query, { io: 'input', unrepresentable: 'any' }) as {
      properties?: Record<string, Record<string, unknown>>;
      required?: string[];
    };
    const parameters = [
      ...Object.entries(r.pathParams ?? {}).map(([name, schema]) => ({
        name,
        in: 'path',
        required: true,
        schema: z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }),
      })),
      ...Object.entries(json.properties ?? {}).map(([name, schema]) => ({
        name,
        in: 'query',
        required: json.required?.includes(name) ?? false,
        description: schema.description,
        schema,
      })),
    ];
    paths[r.path] = {
      ...(paths[r.path] as object | undefined),
      [(r.method ?? 'GET').toLowerCase()]: {
        summary: r.summary,
        ...(r.description ? { description: r.description } : {}),
        parameters,
        ...(r.body
          ? {
              requestBody: {
                required: true,
                content: {
                  'application/json': { schema: z.toJSONSchema(r.body, { io: 'input', unrepresentable: 'any' }) },
                },
              },
            }
          : {}),
        responses: {
          200: { description: 'OK', content: { 'application/json': { schema: { type: 'object' } } } },
          400: { description: 'A parameter is malformed', content: { 'application/json': { schema: errorSchema } } },
          401: { description: 'No valid bearer token', content: { 'application/json': { schema: errorSchema } } },
          403: { description: 'The token may not read this', content: { 'application/json': { schema: errorSchema } } },
          ...(r.pathParams
            ? { 404: { description: 'Not found', content: { 'application/json': { schema: errorSchema } } } }
            : {}),
          ...(r.method && r.method !== 'GET'
            ? {
                409: {
                  description: 'Refused in the present state (see message and detail)',
                  content: { 'application/json': { schema: errorSchema } },
                },
              }
            : {}),
          503: {
            description: 'The query timed out or ClickHouse is unavailable',
            content: { 'application/json': { schema: errorSchema } },
          },
        },
      },
    };
  }
  return {
    openapi: '3.1.0',
    info: { title: 'tlsrpt-pipeline query API', version: '1' },
    components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    security: [{ bearer: [] }],
    paths,
  };
}

export interface ApiDeps {
  db: Db;
  logger: Logger;
  registry: Registry;
  ready: () => Promise<boolean>;
  /** The dashboard's sign-in sessions (redisSessions). */
  sessions: SessionStore;
  /** For the hosted MTA-STS policies, written and read directly. */
  clickhouse: ClickHouseClient;
  /** Queues a report job (an operator's choice of a report's copy); without it that route answers 503. */
  enqueue?: EnqueueFn;
  /** Asks the scheduler for a live check now; without it POST /v1/checks/{domain} answers 503. */
  checkNow?: CheckNow;
}

export type EnqueueFn = (job: ReportJobInput) => Promise<void>;

export function createApi(config: ApiConfig, deps: ApiDeps): Server {
  const tokens = parseTokens(config.API_TOKENS, config.NODE_ENV !== 'production');
  if (config.API_TOKENS.trim() === '') {
    if (config.NODE_ENV === 'production') deps.logger.error('API_TOKENS is empty: every request will be refused');
    else deps.logger.warn('API_TOKENS is empty: accepting the development token "dev-token"');
  }
  const table = routes(deps.db, deps.clickhouse, config, deps.enqueue, deps.checkNow);
  const compiled = table.map((r) => ({ route: r, ...toRegex(r.path) }));
  const openapi = JSON.stringify(openApiDocument(table));
  const ui = dashboard({
    db: deps.db,
    tokens,
    sessions: deps.sessions,
    threshold: config.ALERT_FAILURE_RATE,
    logger: deps.logger,
  });
  const responses = new Counter({
    name: 'tlsrpt_api_responses_total',
    help: 'API responses by route and status',
    labelNames: ['route', 'status'],
    registers: [deps.registry],
  });

  const send = (res: ServerResponse, status: number, body: unknown, route = 'other'): void => {
    responses.inc({ route, status: String(status) });
    sendJson(res, status, body);
  };
  const invalid = (res: ServerResponse, field: string, reason: string, route?: string): void =>
    send(res, 400, { error: 'invalid-parameter', field, reason }, route);

  const handler = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = parseTarget(req.url);
    if (!url) return send(res, 400, { error: 'bad-request', message: 'the request target is not a valid URL' });
    if (await ui(req, res, url)) return;
    if (url.pathname === '/openapi.json' && req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(openapi);
      return;
    }
    const principal = (): Principal | undefined => authenticate(tokens, req.headers.authorization);
    if (url.pathname === '/metrics' && req.method === 'GET') {
      // Operators only: the figures describe every tenant.
      const who = principal();
      if (!who) return send(res, 401, { error: 'unauthorized', message: 'send Authorization: Bearer <token>' });
      if (who.domains) return send(res, 403, { error: 'forbidden', message: 'this token is limited to some domains' });
      const text = await deps.registry.metrics();
      res.writeHead(200, { 'content-type': deps.registry.contentType });
      res.end(text);
      return;
    }
    const found = compiled.map((c) => ({ c, m: c.re.exec(url.pathname) })).filter((x) => x.m);
    if (found.length === 0) return send(res, 404, { error: 'not-found', message: 'see /openapi.json' });
    const match = found.find((x) => (x.c.route.method ?? 'GET') === req.method);
    if (!match?.m) {
      const allow = found.map((x) => x.c.route.method ?? 'GET').join(', ');
      responses.inc({ route: found[0]!.c.route.path, status: '405' });
      return sendJson(res, 405, { error: 'method-not-allowed', message: `allowed: ${allow}` }, { allow });
    }
    const { route, names } = match.c;
    const who = principal();
    if (!who)
      return send(res, 401, { error: 'unauthorized', message: 'send Authorization: Bearer <token>' }, route.path);
    if (route.admin && who.domains)
      return send(res, 403, { error: 'forbidden', message: 'this token is limited to some domains' }, route.path);
    // Null-prototype records: a parameter named __proto__ or constructor is just an unknown parameter.
    const path: Record<string, string> = Object.create(null) as Record<string, string>;
    for (const [i, n] of names.entries()) {
      const value = safeDecode(match.m[i + 1] ?? '');
      if (value === undefined) return invalid(res, n, 'not a valid percent-encoded UTF-8 string', route.path);
      path[n] = value;
    }
    const query: Record<string, string | undefined> = Object.create(null) as Record<string, string | undefined>;
    for (const [k, v] of url.searchParams) {
      if (Object.hasOwn(query, k)) return invalid(res, k, 'given more than once', route.path);
      query[k] = v;
    }
    const known = new Set(Object.keys(route.query.shape));
    const unknown = Object.keys(query).find((k) => !known.has(k));
    if (unknown) return invalid(res, unknown, 'unknown parameter', route.path);
    let input: unknown;
    if (route.body) {
      const read = await readJsonBody(req);
      if ('error' in read) return send(res, read.status, { error: 'bad-request', message: read.error }, route.path);
      input = read.value;
    }
    let body: unknown;
    try {
      body = await route.handler({ principal: who, path, query, body: input });
    } catch (err) {
      if (err instanceof ParamError) return invalid(res, err.field, err.reason, route.path);
      if (err instanceof HttpError)
        return send(
          res,
          err.status,
          { error: err.code, message: err.message, ...(err.detail === undefined ? {} : { detail: err.detail }) },
          route.path,
        );
      if (!(err instanceof QueryFailedError)) throw err;
      const timeout = /TIMEOUT_EXCEEDED|Timeout exceeded|timed out|Timeout error/i.test(err.message);
      deps.logger.warn({ route: route.path, err }, 'query failed');
      return send(
        res,
        503,
        {
          error: timeout ? 'query-timeout' : 'unavailable',
          message: timeout ? 'the query took too long' : 'the query failed; retry later',
        },
        route.path,
      );
    }
    send(res, 200, body, route.path);
  };
  // /healthz and /readyz answer anyone; /metrics is served above, for operators.
  const health = opsHandler(undefined, deps.ready, guarded(handler, deps.logger));
  return createServer(health);
}
