// The dashboard: server-rendered pages under /ui, signed in with an API token exchanged for a session cookie.
// Pages read through the same queries and the same domain scoping as the JSON API; no page runs a script.
import cookie from '@fastify/cookie';
import formbody from '@fastify/formbody';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from '../../common/logger.ts';
import { parseTarget } from '../../common/http-guard.ts';
import { authenticateToken, principalOfHash, type Principal, type StoredToken } from '../auth.ts';
import { ParamError, forwardIdParam } from '../params.ts';
import { QueryFailedError, type Db } from '../queries.ts';
import { Forbidden, NotFound, readableDomain, type PageContext } from './context.ts';
import { html, tableCsv, tableJson, type Html } from './html.ts';
import { STYLES, layout, type Page } from './layout.ts';
import { domainPage } from './pages/domain.ts';
import { domainsPage } from './pages/domains.ts';
import { alertsPage, rejectsPage, reportersPage } from './pages/others.ts';
import { incidentPage, issuesPage } from './pages/incidents.ts';
import { actOn } from '../incidents.ts';
import { BadTransition, type Act } from '../../common/incidents/acts.ts';
import type { IncidentOptions } from '../../common/incidents/load.ts';
import type { ClickHouseClient } from '../../common/clickhouse.ts';
import { loadReport, reportPage, reportsPage } from './pages/reports.ts';
import { mtaStsDomainPage, mtaStsPage, operatorsOnly } from './pages/mta-sts.ts';
import { checksPage } from './pages/checks.ts';
import { forwardsPage } from './pages/forwards.ts';
import type { ForwardRetry } from '../../common/forwarding.ts';
import { CheckNowUnavailable, type CheckNow } from '../../common/check-now.ts';
import { isManagedDomain } from '../../common/posture-store.ts';
import { STS_ACTIONS, stsAction, type StsAction } from './mta-sts-actions.ts';
import type { PublishSettings } from '../../common/sts-policies.ts';
import { SESSION_COOKIE, sameOrigin, type SessionStore } from './sessions.ts';

/** A padlock on the brand's blue: the tab of a TLS report. */
const FAVICON = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="6" fill="#1d4ed8"/><path d="M11 14v-3a5 5 0 0 1 10 0v3" fill="none" stroke="#fff" stroke-width="2.5"/><rect x="8" y="14" width="16" height="12" rx="2" fill="#fff"/></svg>`;

export interface DashboardDeps {
  db: Db;
  tokens: StoredToken[];
  sessions: SessionStore;
  threshold: number;
  readinessDays: number;
  incidents: IncidentOptions;
  /** Where people's acts on incidents, and hosted policies' mode changes, are written. */
  clickhouse: ClickHouseClient;
  publish: PublishSettings;
  postureDomains: readonly string[];
  /** Asks the scheduler for a live check ("Check now"); without it the button's answer is a 503. */
  checkNow?: CheckNow | undefined;
  /** Sends a failed forward again ("Send again"); without it the button's answer is a 503. */
  forwards?: ForwardRetry | undefined;
  /** How long "Check now" waits for the scheduler's run (the domain's deadline and a margin). */
  checkTimeoutMs: number;
  logger: Logger;
}

type PageFn = (ctx: PageContext) => Promise<Page>;
const PAGES: Array<[url: string, PageFn]> = [
  ['/ui/issues', issuesPage],
  ['/ui/incidents/:id', incidentPage],
  ['/ui/domains', domainsPage],
  ['/ui/domains/:domain', domainPage],
  ['/ui/reports', reportsPage],
  ['/ui/reports/:key', reportPage],
  ['/ui/alerts', alertsPage],
  ['/ui/reporters', reportersPage],
  ['/ui/rejects', rejectsPage],
  ['/ui/forwards', forwardsPage],
  ['/ui/mta-sts', mtaStsPage],
  ['/ui/mta-sts/:domain', mtaStsDomainPage],
  ['/ui/checks/:domain', checksPage],
];

/** Headers of every dashboard answer: no caching of tenant data, no framing, no scripts, no sniffing. */
const SECURITY_HEADERS = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'same-origin',
  'x-frame-options': 'DENY',
  'content-security-policy':
    "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
};

function send(reply: FastifyReply, status: number, type: string, body: string, headers: Record<string, string> = {}) {
  return reply
    .code(status)
    .headers({ 'content-type': type, ...headers })
    .send(body);
}
const redirect = (reply: FastifyReply, to: string): FastifyReply => reply.code(303).header('location', to).send();

/** Only a dashboard path of ours is followed after sign-in (no open redirect). */
const safeNext = (v: string | null): string =>
  v && /^\/ui\/[A-Za-z0-9/_.%?=&+-]*$/.test(v) && !v.startsWith('//') ? v : '/ui/issues';

function signInPage(next: string, error?: string): Page {
  return {
    title: 'Sign in',
    status: error ? 401 : 200,
    body: html`<h1>Sign in</h1>
      <p>Sign in with an API token. A token limited to some domains shows only those.</p>
      ${error ? html`<p class="error" role="alert">${error}</p>` : ''}
      <form method="post" action="/ui/sign-in" class="inline">
        <input type="hidden" name="next" value="${next}" />
        <label
          >API token <input type="password" name="token" autocomplete="current-password" required autofocus
        /></label>
        <button type="submit">Sign in</button>
      </form>`,
  };
}

/** A page saying what was not shown or done, and why. */
function refusal(title: string, status: number, message: string, after: Html | '' = ''): Page {
  return {
    title,
    status,
    body: html`<h1>${title}</h1>
      <p class="error" role="alert">${message}</p>
      ${after}`,
  };
}

const ACTS = new Set<string>(['acknowledge', 'mute', 'unmute', 'resolve', 'reopen']);
const MUTE_DAYS = new Set([1, 7, 30]);

/** The session cookie: only on /ui, never to scripts, only over HTTPS, never sent cross-site. */
const COOKIE = { path: '/ui', httpOnly: true, secure: true, sameSite: 'strict' } as const;
const FORM_LIMIT = 4096;

/** The dashboard's routes under /ui, in a Fastify scope of their own (its cookies, forms and headers stay here). */
export async function registerDashboard(app: FastifyInstance, deps: DashboardDeps): Promise<void> {
  await app.register(async (ui) => {
    // Pages, not API: left out of /openapi.json.
    ui.addHook('onRoute', (route) => {
      route.schema = { ...route.schema, hide: true };
    });
    await ui.register(cookie);
    await ui.register(formbody, { bodyLimit: FORM_LIMIT });
    ui.addHook('onSend', async (_req, reply) => {
      reply.headers(SECURITY_HEADERS);
    });
    const who = async (req: FastifyRequest): Promise<Principal | undefined> => {
      const id = req.cookies[SESSION_COOKIE];
      if (!id) return undefined;
      const hash = await deps.sessions.find(id);
      return hash ? principalOfHash(deps.tokens, hash) : undefined;
    };
    const page = (reply: FastifyReply, p: Page, principal: Principal | undefined, path: string) =>
      send(reply, p.status ?? 200, 'text/html; charset=utf-8', layout(p, principal, path));
    /** The request target, parsed once per request (Fastify has already refused one that is not a URL). */
    type Target = NonNullable<ReturnType<typeof parseTarget>>;
    const target = (req: FastifyRequest): Target => parseTarget(req.url)!;
    const crossSite = (reply: FastifyReply) => send(reply, 403, 'text/plain', 'cross-site request refused');
    const form = (req: FastifyRequest): Record<string, string | undefined> =>
      (req.body && typeof req.body === 'object' ? req.body : {}) as Record<string, string | undefined>;
    const one = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[0] : v);

    ui.get('/ui/app.css', async (_req, reply) =>
      send(reply, 200, 'text/css; charset=utf-8', STYLES, { 'cache-control': 'public, max-age=3600' }),
    );
    ui.get('/ui/favicon.svg', async (_req, reply) =>
      send(reply, 200, 'image/svg+xml', FAVICON, { 'cache-control': 'public, max-age=86400' }),
    );
    ui.post('/ui/sign-in', async (req, reply) => {
      if (!sameOrigin(req.raw)) return crossSite(reply);
      const next = safeNext(one(form(req).next) ?? null);
      const found = authenticateToken(deps.tokens, one(form(req).token) ?? '');
      if (!found) {
        deps.logger.info('dashboard sign-in refused');
        return page(reply, signInPage(next, 'That token is not valid.'), undefined, '/ui/sign-in');
      }
      const id = await deps.sessions.create(found.hash);
      reply.setCookie(SESSION_COOKIE, id, { ...COOKIE, maxAge: deps.sessions.ttlSeconds });
      return redirect(reply, next);
    });
    ui.post('/ui/sign-out', async (req, reply) => {
      if (!sameOrigin(req.raw)) return crossSite(reply);
      const id = req.cookies[SESSION_COOKIE];
      if (id) await deps.sessions.destroy(id);
      reply.setCookie(SESSION_COOKIE, '', { ...COOKIE, maxAge: 0 });
      return redirect(reply, '/ui/sign-in');
    });
    ui.get('/ui/sign-in', { exposeHeadRoute: true }, async (req, reply) =>
      page(reply, signInPage(safeNext(target(req).searchParams.get('next'))), undefined, '/ui/sign-in'),
    );

    /** A signed-in page: without a session, the sign-in page, then back here. */
    const signedIn =
      (render: (principal: Principal, url: Target, req: FastifyRequest, reply: FastifyReply) => Promise<unknown>) =>
      async (req: FastifyRequest, reply: FastifyReply) => {
        const url = target(req);
        const principal = await who(req);
        if (!principal) {
          const here = `${url.pathname}${url.searchParams.size > 0 ? `?${url.searchParams.toString()}` : ''}`;
          return redirect(reply, `/ui/sign-in?next=${encodeURIComponent(here)}`);
        }
        try {
          return await render(principal, url, req, reply);
        } catch (err) {
          return notShown(reply, err, principal, url.pathname);
        }
      };
    const notShown = (reply: FastifyReply, err: unknown, principal: Principal, path: string) => {
      const [status, message] =
        err instanceof Forbidden
          ? [403, err.message]
          : err instanceof NotFound
            ? [404, err.message]
            : err instanceof ParamError
              ? [400, `${err.field}: ${err.reason}`]
              : err instanceof QueryFailedError
                ? [503, 'The query failed or took too long; try a shorter period or retry later.']
                : [0, ''];
      if (status === 0) throw err;
      if (status === 503) deps.logger.warn({ err, path }, 'dashboard query failed');
      return page(reply, refusal('Not shown', status, message), principal, path);
    };
    const context = (principal: Principal, url: Target, req: FastifyRequest) => ({
      db: deps.db,
      principal,
      query: url.searchParams,
      threshold: deps.threshold,
      readinessDays: deps.readinessDays,
      incidents: deps.incidents,
      publish: deps.publish,
      postureDomains: deps.postureDomains,
      now: new Date(),
      // Null-prototype, already decoded by the router (bad escapes are a 400 before this).
      params: Object.assign(Object.create(null) as Record<string, string>, req.params),
    });

    ui.get('/ui', (_req, reply) => redirect(reply, '/ui/issues'));
    ui.get(
      '/ui/',
      signedIn(async (_p, _url, _req, reply) => redirect(reply, '/ui/issues')),
    );
    // People's acts on an incident, from its buttons: same-origin forms only, then back to where they were.
    ui.post(
      '/ui/incidents/:id/:act',
      signedIn(async (principal, url, req, reply) => {
        if (!sameOrigin(req.raw)) return crossSite(reply);
        const ctx = context(principal, url, req);
        const act = ctx.params.act as Act;
        if (!ACTS.has(act)) throw new NotFound('no such action');
        const days = Number(one(form(req).days) ?? '1');
        const until =
          act === 'mute' ? new Date(ctx.now.getTime() + (MUTE_DAYS.has(days) ? days : 1) * 86_400_000) : undefined;
        try {
          const done = await actOn(
            deps.db,
            deps.clickhouse,
            principal,
            ctx.params.id ?? '',
            { event: act, until },
            deps.incidents,
            ctx.now,
          );
          if (!done) throw new NotFound('no such incident');
        } catch (err) {
          if (!(err instanceof BadTransition)) throw err;
          return page(reply, refusal('Not done', 409, err.message), principal, url.pathname);
        }
        return redirect(reply, safeNext(one(form(req).next) ?? null));
      }),
    );
    // Hosted MTA-STS from its pages' forms (operators): the API's changes, with its checks (services/api/mta-sts.ts).
    const stsForm = async (
      principal: Principal,
      url: Target,
      req: FastifyRequest,
      reply: FastifyReply,
      action: string,
      domain: string,
    ) => {
      if (!sameOrigin(req.raw)) return crossSite(reply);
      const ctx = context(principal, url, req);
      operatorsOnly(ctx);
      if (!(STS_ACTIONS as readonly string[]).includes(action)) throw new NotFound('no such action');
      const done = await stsAction(action as StsAction, domain, form(req), {
        db: deps.db,
        clickhouse: deps.clickhouse,
        readinessDays: deps.readinessDays,
        by: principal.name,
        now: ctx.now,
      });
      if ('to' in done) return redirect(reply, done.to);
      const back = html`<p><a href="${done.back}">${done.backLabel}</a></p>`;
      return page(reply, refusal(done.title, done.status, done.message, back), principal, url.pathname);
    };
    ui.post(
      '/ui/mta-sts',
      signedIn((principal, url, req, reply) =>
        stsForm(principal, url, req, reply, one(form(req).action) ?? '', one(form(req).domain) ?? ''),
      ),
    );
    ui.post(
      '/ui/mta-sts/:domain/:action',
      signedIn((principal, url, req, reply) => {
        const params = req.params as { domain?: string; action?: string };
        return stsForm(principal, url, req, reply, params.action ?? '', params.domain ?? '');
      }),
    );
    // "Check now" (a managed domain's readers): the scheduler runs the check; back to the page once it is stored.
    ui.post(
      '/ui/checks/:domain/run',
      signedIn(async (principal, url, req, reply) => {
        if (!sameOrigin(req.raw)) return crossSite(reply);
        const ctx = context(principal, url, req);
        const domain = readableDomain(ctx, ctx.params.domain ?? '');
        const next = safeNext(one(form(req).next) ?? null);
        const back = html`<p><a href="${next}">Back</a></p>`;
        if (!(await isManagedDomain(deps.clickhouse, deps.postureDomains, domain)))
          throw new NotFound(`${domain} is not a managed domain (hosted here or in POSTURE_DOMAINS): not checked`);
        try {
          if (!deps.checkNow) throw new CheckNowUnavailable('this API has no check-now queue');
          await deps.checkNow.check(domain, deps.checkTimeoutMs);
        } catch (err) {
          if (!(err instanceof CheckNowUnavailable)) throw err;
          return page(reply, refusal('Not checked', 503, err.message, back), principal, url.pathname);
        }
        return redirect(reply, next);
      }),
    );
    // "Send again" on the Forwards page (operators): the failed delivery queued again, then back to the list.
    ui.post(
      '/ui/forwards/:id/retry',
      signedIn(async (principal, url, req, reply) => {
        if (!sameOrigin(req.raw)) return crossSite(reply);
        const ctx = context(principal, url, req);
        if (ctx.principal.domains) throw new Forbidden('forwards are for operators');
        const next = safeNext(one(form(req).next) ?? null);
        const back = html`<p><a href="${next}">Back</a></p>`;
        const id = ctx.params.id ?? '';
        if (!forwardIdParam.safeParse(id).success) throw new NotFound('no such forward');
        if (!deps.forwards)
          return page(reply, refusal('Not sent', 503, 'this API has no forward queue', back), principal, url.pathname);
        const done = await deps.forwards.retry(id);
        if (done.outcome === 'not-found') throw new NotFound(`no forward ${id} is kept`);
        if (done.outcome === 'not-failed')
          return page(
            reply,
            refusal('Not sent', 409, `it did not fail: it is ${done.state}`, back),
            principal,
            url.pathname,
          );
        return redirect(reply, next);
      }),
    );
    ui.get(
      '/ui/reports/:key/raw.json',
      { exposeHeadRoute: true },
      signedIn(async (principal, url, req, reply) => {
        const ctx = context(principal, url, req);
        const report = await loadReport({ ...ctx, params: { key: ctx.params.key ?? '' } }, 1);
        return send(reply, 200, 'application/json', JSON.stringify(report.raw ?? null, null, 2), {
          'content-disposition': `attachment; filename="tlsrpt-${String(report.report.report_key)}.json"`,
        });
      }),
    );
    for (const [url, fn] of PAGES)
      ui.get(
        url,
        { exposeHeadRoute: true },
        signedIn(async (principal, url, req, reply) => {
          const path = url.pathname;
          const ctx = context(principal, url, req);
          const shown = await fn(ctx);
          const wanted = ctx.query.get('export');
          if (!wanted) return page(reply, shown, principal, path);
          const t = shown.tables?.find((x) => x.id === wanted);
          if (!t) throw new NotFound(`no table ${wanted} on this page`);
          const csv = ctx.query.get('format') === 'csv';
          const name = `${path
            .split('/')
            .filter(Boolean)
            .slice(1)
            .join('-')
            .replace(/[^A-Za-z0-9.-]/g, '_')}-${t.id}`;
          return send(
            reply,
            200,
            csv ? 'text/csv; charset=utf-8' : 'application/json',
            csv ? tableCsv(t) : JSON.stringify(tableJson(t)),
            { 'content-disposition': `attachment; filename="${name}.${csv ? 'csv' : 'json'}"` },
          );
        }),
      );
    // Any other path under /ui: a page that does not exist (for those signed in); other methods are not allowed.
    const noSuchPage = signedIn(async () => {
      throw new NotFound('no such page');
    });
    ui.all('/ui/*', async (req, reply) =>
      req.method === 'GET' || req.method === 'HEAD'
        ? noSuchPage(req, reply)
        : send(reply, 405, 'text/plain', 'method not allowed', { allow: 'GET' }),
    );
  });
}
