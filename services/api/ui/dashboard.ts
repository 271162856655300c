// The dashboard: server-rendered pages under /ui, signed in with an API token exchanged for a session cookie.
// Pages read through the same queries and the same domain scoping as the JSON API; no page runs a script.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../../common/logger.ts';
import { safeDecode } from '../../common/http-guard.ts';
import { authenticateToken, principalOfHash, type Principal, type StoredToken } from '../auth.ts';
import { ParamError } from '../params.ts';
import { QueryFailedError, type Db } from '../queries.ts';
import { Forbidden, NotFound, type PageContext } from './context.ts';
import { html, tableCsv, tableJson } from './html.ts';
import { STYLES, layout, type Page } from './layout.ts';
import { domainPage } from './pages/domain.ts';
import { domainsPage } from './pages/domains.ts';
import { alertsPage, rejectsPage, reportersPage } from './pages/others.ts';
import { loadReport, reportPage, reportsPage } from './pages/reports.ts';
import {
  SESSION_COOKIE,
  clearedCookie,
  readCookie,
  readForm,
  sameOrigin,
  sessionCookie,
  type SessionStore,
} from './sessions.ts';

export interface DashboardDeps {
  db: Db;
  tokens: StoredToken[];
  sessions: SessionStore;
  threshold: number;
  logger: Logger;
}

type PageFn = (ctx: PageContext) => Promise<Page>;
const PAGES: Array<[RegExp, string[], PageFn]> = [
  [/^\/ui\/domains$/, [], domainsPage],
  [/^\/ui\/domains\/([^/]+)$/, ['domain'], domainPage],
  [/^\/ui\/reports$/, [], reportsPage],
  [/^\/ui\/reports\/([^/]+)$/, ['key'], reportPage],
  [/^\/ui\/alerts$/, [], alertsPage],
  [/^\/ui\/reporters$/, [], reportersPage],
  [/^\/ui\/rejects$/, [], rejectsPage],
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

function send(res: ServerResponse, status: number, type: string, body: string, headers: Record<string, string> = {}) {
  res.writeHead(status, {
    ...SECURITY_HEADERS,
    'content-type': type,
    'content-length': Buffer.byteLength(body),
    ...headers,
  });
  res.end(body);
}
const redirect = (res: ServerResponse, to: string, headers: Record<string, string> = {}): void => {
  res.writeHead(303, { ...SECURITY_HEADERS, location: to, ...headers });
  res.end();
};

/** Only a dashboard path of ours is followed after sign-in (no open redirect). */
const safeNext = (v: string | null): string =>
  v && /^\/ui\/[A-Za-z0-9/_.%?=&+-]*$/.test(v) && !v.startsWith('//') ? v : '/ui/domains';

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

/** Handles /ui and /ui/*; answers false for any other path. */
export function dashboard(deps: DashboardDeps) {
  const who = async (req: IncomingMessage): Promise<{ principal: Principal; id: string } | undefined> => {
    const id = readCookie(req, SESSION_COOKIE);
    if (!id) return undefined;
    const hash = await deps.sessions.find(id);
    const principal = hash ? principalOfHash(deps.tokens, hash) : undefined;
    return principal && { principal, id };
  };
  const html200 = (res: ServerResponse, page: Page, principal: Principal | undefined, path: string): void =>
    send(res, page.status ?? 200, 'text/html; charset=utf-8', layout(page, principal, path));

  return async (
    req: IncomingMessage,
    res: ServerResponse,
    url: { pathname: string; searchParams: URLSearchParams },
  ): Promise<boolean> => {
    const path = url.pathname;
    if (path !== '/ui' && !path.startsWith('/ui/')) return false;
    if (path === '/ui/app.css') {
      send(res, 200, 'text/css; charset=utf-8', STYLES, { 'cache-control': 'public, max-age=3600' });
      return true;
    }
    if (path === '/ui/sign-in' && req.method === 'POST') {
      if (!sameOrigin(req)) return (send(res, 403, 'text/plain', 'cross-site request refused'), true);
      const form = await readForm(req);
      const next = safeNext(form?.get('next') ?? null);
      const found = form ? authenticateToken(deps.tokens, form.get('token') ?? '') : undefined;
      if (!found) {
        deps.logger.info('dashboard sign-in refused');
        html200(res, signInPage(next, 'That token is not valid.'), undefined, path);
        return true;
      }
      const id = await deps.sessions.create(found.hash);
      redirect(res, next, { 'set-cookie': sessionCookie(id, deps.sessions.ttlSeconds) });
      return true;
    }
    if (path === '/ui/sign-out' && req.method === 'POST') {
      if (!sameOrigin(req)) return (send(res, 403, 'text/plain', 'cross-site request refused'), true);
      const id = readCookie(req, SESSION_COOKIE);
      if (id) await deps.sessions.destroy(id);
      redirect(res, '/ui/sign-in', { 'set-cookie': clearedCookie });
      return true;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(res, 405, 'text/plain', 'method not allowed', { allow: 'GET' });
      return true;
    }
    if (path === '/ui/sign-in') {
      html200(res, signInPage(safeNext(url.searchParams.get('next'))), undefined, path);
      return true;
    }
    const session = await who(req);
    const here = `${path}${url.searchParams.size > 0 ? `?${url.searchParams.toString()}` : ''}`;
    if (!session) {
      redirect(res, `/ui/sign-in?next=${encodeURIComponent(here)}`);
      return true;
    }
    if (path === '/ui' || path === '/ui/') {
      redirect(res, '/ui/domains');
      return true;
    }
    const { principal } = session;
    const base = { db: deps.db, principal, query: url.searchParams, threshold: deps.threshold, now: new Date() };
    try {
      const raw = /^\/ui\/reports\/([^/]+)\/raw\.json$/.exec(path);
      if (raw) {
        const report = await loadReport({ ...base, params: { key: safeDecode(raw[1]!) ?? '' } }, 1);
        send(res, 200, 'application/json', JSON.stringify(report.raw ?? null, null, 2), {
          'content-disposition': `attachment; filename="tlsrpt-${String(report.report.report_key)}.json"`,
        });
        return true;
      }
      const match = PAGES.map(([re, names, fn]) => ({ m: re.exec(path), names, fn })).find((x) => x.m);
      if (!match?.m) throw new NotFound('no such page');
      const params: Record<string, string> = Object.create(null) as Record<string, string>;
      for (const [i, n] of match.names.entries()) {
        const v = safeDecode(match.m[i + 1] ?? '');
        if (v === undefined) throw new ParamError(n, 'not a valid percent-encoded UTF-8 string');
        params[n] = v;
      }
      const page = await match.fn({ ...base, params });
      const wanted = url.searchParams.get('export');
      if (wanted) {
        const t = page.tables?.find((x) => x.id === wanted);
        if (!t) throw new NotFound(`no table ${wanted} on this page`);
        const csv = url.searchParams.get('format') === 'csv';
        const name = `${path
          .split('/')
          .filter(Boolean)
          .slice(1)
          .join('-')
          .replace(/[^A-Za-z0-9.-]/g, '_')}-${t.id}`;
        send(
          res,
          200,
          csv ? 'text/csv; charset=utf-8' : 'application/json',
          csv ? tableCsv(t) : JSON.stringify(tableJson(t)),
          {
            'content-disposition': `attachment; filename="${name}.${csv ? 'csv' : 'json'}"`,
          },
        );
        return true;
      }
      html200(res, page, principal, path);
    } catch (err) {
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
      html200(
        res,
        {
          title: 'Not shown',
          status,
          body: html`<h1>Not shown</h1>
            <p class="error" role="alert">${message}</p>`,
        },
        principal,
        path,
      );
    }
    return true;
  };
}
