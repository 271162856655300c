// The API's HTTP server: Fastify serving the route table (app.ts) and the dashboard (ui/dashboard.ts), with what the
// internet may send handled once for every route: a request target that is not a URL, a parameter given twice or not
// known (400), bad percent-escapes in a path (400), `__proto__` as a parameter's name (data, never a prototype),
// bodies bounded, and every error, thrown or not, a JSON answer by one error handler. /healthz and /readyz answer
// before Fastify sees the request; /metrics is for operators.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import swagger from '@fastify/swagger';
import Fastify, { type FastifyError, type FastifyReply, type FastifyRequest } from 'fastify';
import {
  hasZodFastifySchemaValidationErrors,
  jsonSchemaTransform,
  validatorCompiler,
  type ZodTypeProvider,
} from 'fastify-type-provider-zod';
import type { Registry } from 'prom-client';
import { Counter } from 'prom-client';
import { z } from 'zod';
import type { ClickHouseClient } from '../common/clickhouse.ts';
import type { CheckNow } from '../common/check-now.ts';
import type { ForwardRetry } from '../common/forwarding.ts';
import { guarded, parseTarget, sendJson } from '../common/http-guard.ts';
import type { Logger } from '../common/logger.ts';
import { opsHandler } from '../common/metrics.ts';
import { Answer, HttpError, routes, type ApiConfig, type EnqueueFn, type Route } from './app.ts';
import { authenticate, parseTokens, type Principal } from './auth.ts';
import { ParamError } from './params.ts';
import { QueryFailedError, type Db } from './queries.ts';
import { registerDashboard } from './ui/dashboard.ts';
import { incidentOptions } from '../common/incidents/load.ts';
import type { SessionStore } from './ui/sessions.ts';

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
  /** Queues a failed forward again; without it POST /v1/forwards/{id}/retry answers 503. */
  forwards?: ForwardRetry;
}

/** Where the query parser leaves the first parameter given more than once. */
const REPEATED = Symbol('repeated parameter');
type Query = Record<string, string> & { [REPEATED]?: string };

/** A query string as URLSearchParams reads it, into a null-prototype record: `__proto__` is a name like any other. */
function parseQuery(text: string): Query {
  const query = Object.create(null) as Query;
  for (const [k, v] of new URLSearchParams(text)) {
    if (Object.hasOwn(query, k)) query[REPEATED] ??= k;
    else query[k] = v;
  }
  return query;
}

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'] as const;
const JSON_BODY_LIMIT = 16 * 1024;

const invalid = (field: string, reason: string) => ({ error: 'invalid-parameter', field, reason });

/** The answer to an error, whatever threw it: the one place errors become responses. */
function errorAnswer(err: FastifyError | Error, logger: Logger): { status: number; body: Record<string, unknown> } {
  if (hasZodFastifySchemaValidationErrors(err)) {
    const first = err.validation[0]!;
    const field = first.instancePath.slice(1).replaceAll('/', '.') || '(query)';
    return { status: 400, body: invalid(field, first.message ?? 'invalid') };
  }
  if (err instanceof ParamError) return { status: 400, body: invalid(err.field, err.reason) };
  if (err instanceof HttpError)
    return {
      status: err.status,
      body: { error: err.code, message: err.message, ...(err.detail === undefined ? {} : { detail: err.detail }) },
    };
  if (err instanceof QueryFailedError) {
    const timeout = /TIMEOUT_EXCEEDED|Timeout exceeded|timed out|Timeout error/i.test(err.message);
    logger.warn({ err }, 'query failed');
    return {
      status: 503,
      body: {
        error: timeout ? 'query-timeout' : 'unavailable',
        message: timeout ? 'the query took too long' : 'the query failed; retry later',
      },
    };
  }
  const code = 'code' in err ? err.code : undefined;
  if (code === 'FST_ERR_CTP_BODY_TOO_LARGE')
    return { status: 413, body: { error: 'bad-request', message: 'the body is larger than 16 KiB' } };
  if (code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE')
    return { status: 415, body: { error: 'bad-request', message: 'send Content-Type: application/json' } };
  if (code === 'FST_ERR_CTP_INVALID_JSON_BODY' || code === 'FST_ERR_CTP_EMPTY_JSON_BODY' || err instanceof SyntaxError)
    return { status: 400, body: { error: 'bad-request', message: 'the body is not JSON' } };
  const status = 'statusCode' in err && typeof err.statusCode === 'number' ? err.statusCode : 500;
  if (status >= 400 && status < 500) return { status, body: { error: 'bad-request', message: err.message } };
  logger.error({ err }, 'request handler failed');
  return { status: 500, body: { error: 'internal', message: 'internal error; retry later' } };
}

/** `/v1/domains/:domain` as the route table and the metrics name it: `/v1/domains/{domain}`. */
const routeLabel = (url: string | undefined): string => (url ? url.replace(/:(\w+)/g, '{$1}') : 'other');

export async function createApi(config: ApiConfig, deps: ApiDeps): Promise<Server> {
  const tokens = parseTokens(config.API_TOKENS, config.NODE_ENV !== 'production');
  if (config.API_TOKENS.trim() === '') {
    if (config.NODE_ENV === 'production') deps.logger.error('API_TOKENS is empty: every request will be refused');
    else deps.logger.warn('API_TOKENS is empty: accepting the development token "dev-token"');
  }
  const table = routes(deps.db, deps.clickhouse, config, deps.enqueue, deps.checkNow, deps.forwards);
  const patterns = table.map((r) => new RegExp(`^${r.path.replace(/\{\w+\}/g, '[^/]+')}$`));
  const responses = new Counter({
    name: 'tlsrpt_api_responses_total',
    help: 'API responses by route and status',
    labelNames: ['route', 'status'],
    registers: [deps.registry],
  });
  const app = Fastify({
    // The request target was checked (parseTarget) before Fastify sees it; /healthz and /readyz answered.
    serverFactory: (handler) =>
      createServer(
        opsHandler(
          undefined,
          deps.ready,
          guarded((req: IncomingMessage, res: ServerResponse) => {
            if (!parseTarget(req.url))
              return sendJson(res, 400, { error: 'bad-request', message: 'the request target is not a valid URL' });
            handler(req, res);
          }, deps.logger),
        ),
      ),
    routerOptions: { querystringParser: parseQuery },
    exposeHeadRoutes: false,
    bodyLimit: JSON_BODY_LIMIT,
    // A JSON body's `__proto__` is kept as JSON.parse keeps it: an own property, data to the schema.
    onProtoPoisoning: 'ignore',
    onConstructorPoisoning: 'ignore',
    logger: false,
    // Bad percent-escapes in a path (`%`, `%zz`, overlong or surrogate UTF-8) are the client's error.
    frameworkErrors: (err, req, res) => {
      const reply = res as FastifyReply;
      if (req.url.startsWith('/ui')) return void reply.code(400).type('text/plain').send('bad request\n');
      const bad = err.code === 'FST_ERR_BAD_URL';
      // A bad escape in a path no route serves is just a path not found.
      const path = (parseTarget(req.url)?.pathname ?? '').replace(/%[^/]*/g, 'x');
      if (bad && !patterns.some((re) => re.test(path)))
        return void reply.code(404).send({ error: 'not-found', message: 'see /openapi.json' });
      void reply
        .code(400)
        .send(
          bad
            ? invalid('(path)', 'not a valid percent-encoded UTF-8 string')
            : { error: 'bad-request', message: err.message },
        );
    },
  }).withTypeProvider<ZodTypeProvider>();
  app.setValidatorCompiler(validatorCompiler);
  // Only JSON bodies: a text/plain body is not a policy (415, as any other type).
  app.removeContentTypeParser('text/plain');
  app.setErrorHandler((err: FastifyError, _req, reply) => {
    const { status, body } = errorAnswer(err, deps.logger);
    if (reply.sent) return;
    void reply.code(status).header('cache-control', 'no-store').send(body);
  });
  app.setNotFoundHandler((_req, reply) => {
    void reply.code(404).header('cache-control', 'no-store').send({ error: 'not-found', message: 'see /openapi.json' });
  });
  // Tenant data: no answer of the API is kept by a cache (the dashboard sets its own headers).
  app.addHook('onSend', async (req, reply) => {
    if (!req.url.startsWith('/ui')) reply.header('cache-control', 'no-store');
  });
  app.addHook('onResponse', async (req, reply) => {
    if (req.url.startsWith('/ui')) return;
    responses.inc({ route: routeLabel(req.routeOptions.url), status: String(reply.statusCode) });
  });
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'tlsrpt-pipeline query API', version: '1' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
    transform: (doc) => documented(jsonSchemaTransform(doc), doc.route.method),
  });

  const principalOf = (req: FastifyRequest): Principal | undefined => authenticate(tokens, req.headers.authorization);
  /** Bearer token first (401), then the operators' routes (403): before a parameter is looked at. */
  const authorize = (admin: boolean | undefined) => async (req: FastifyRequest, reply: FastifyReply) => {
    const who = principalOf(req);
    if (!who) return reply.code(401).send({ error: 'unauthorized', message: 'send Authorization: Bearer <token>' });
    if (admin && who.domains)
      return reply.code(403).send({ error: 'forbidden', message: 'this token is limited to some domains' });
    principals.set(req, who);
  };
  const principals = new WeakMap<FastifyRequest, Principal>();
  /** Every parameter once, and only those the route documents. */
  const knownParameters = (known: Set<string>) => async (req: FastifyRequest) => {
    const query = req.query as Query;
    if (query[REPEATED] !== undefined) throw new ParamError(query[REPEATED], 'given more than once');
    const unknown = Object.keys(query).find((k) => !known.has(k));
    if (unknown !== undefined) throw new ParamError(unknown, 'unknown parameter');
  };

  /** `/v1/domains/{domain}` as Fastify writes it: `/v1/domains/:domain`. */
  const fastifyUrl = (path: string): string => path.replace(/\{(\w+)\}/g, ':$1');
  for (const r of table)
    app.route({
      method: r.method ?? 'GET',
      url: fastifyUrl(r.path),
      schema: {
        summary: r.summary,
        ...(r.description ? { description: r.description } : {}),
        querystring: r.query,
        ...(r.pathParams ? { params: z.object(r.pathParams) } : {}),
        ...(r.body ? { body: r.body } : {}),
      },
      onRequest: authorize(r.admin),
      preValidation: knownParameters(new Set(Object.keys(r.query.shape))),
      handler: async (req, reply) => {
        const out = await r.handler({
          principal: principals.get(req)!,
          path: req.params,
          query: req.query,
          body: req.body,
        });
        if (!(out instanceof Answer)) return out;
        void reply.code(out.status);
        return out.body;
      },
    });
  const byPath = new Map<string, Route[]>();
  for (const r of table) byPath.set(r.path, [...(byPath.get(r.path) ?? []), r]);
  // The other methods of each path are 405 with what it allows, before any token or body is looked at: in a scope
  // whose only body parser takes any type and keeps nothing.
  await app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, _body, done) => done(null, undefined));
    for (const [path, list] of byPath) {
      const allow = list.map((r) => r.method ?? 'GET');
      scope.route({
        method: METHODS.filter((m) => !(allow as string[]).includes(m)),
        url: fastifyUrl(path),
        schema: { hide: true },
        handler: async (_req, reply) =>
          reply
            .code(405)
            .header('allow', allow.join(', '))
            .send({ error: 'method-not-allowed', message: `allowed: ${allow.join(', ')}` }),
      });
    }
  });
  // Every operation lists its parameters, none included (clients iterate them).
  const openapi = (): unknown => {
    const doc = app.swagger() as { paths?: Record<string, Record<string, { parameters?: unknown[] }>> };
    for (const ops of Object.values(doc.paths ?? {})) for (const op of Object.values(ops)) op.parameters ??= [];
    return doc;
  };
  app.get('/openapi.json', { schema: { hide: true } }, async () => openapi());
  app.get('/metrics', { schema: { hide: true }, onRequest: authorize(true) }, async (_req, reply) =>
    reply.type(deps.registry.contentType).send(await deps.registry.metrics()),
  );
  await app.register(registerDashboard, {
    db: deps.db,
    tokens,
    sessions: deps.sessions,
    threshold: config.ALERT_FAILURE_RATE,
    readinessDays: config.MTA_STS_READINESS_DAYS,
    incidents: incidentOptions(config),
    clickhouse: deps.clickhouse,
    publish: { rua: config.MTA_STS_RUA, hostTarget: config.MTA_STS_HOST_TARGET },
    postureDomains: config.POSTURE_DOMAINS,
    checkNow: deps.checkNow,
    forwards: deps.forwards,
    checkTimeoutMs: config.POSTURE_DOMAIN_TIMEOUT_MS + 15_000,
    logger: deps.logger,
  });
  await app.ready();
  return app.server;
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
const answer = (description: string) => ({ description, content: { 'application/json': { schema: errorSchema } } });

/** The answers every route may give, in the OpenAPI document only (the handlers' bodies are not re-serialized). */
function documented<T extends { schema: unknown; url: string }>(doc: T, method: string | string[]): T {
  if (!doc.schema || typeof doc.schema !== 'object' || 'hide' in doc.schema) return doc;
  const params = 'params' in doc.schema;
  const write = method !== 'GET';
  return {
    ...doc,
    schema: {
      ...doc.schema,
      response: {
        200: { description: 'OK', content: { 'application/json': { schema: { type: 'object' } } } },
        400: answer('A parameter is malformed'),
        401: answer('No valid bearer token'),
        403: answer('The token may not read this'),
        ...(params ? { 404: answer('Not found') } : {}),
        ...(write ? { 409: answer('Refused in the present state (see message and detail)') } : {}),
        503: answer('The query timed out or ClickHouse is unavailable'),
      },
    },
  };
}
