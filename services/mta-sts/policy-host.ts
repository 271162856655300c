// The MTA-STS policy host: answers `GET https://mta-sts.<domain>/.well-known/mta-sts.txt` for every hosted domain,
// by SNI (its certificate) and Host (its policy), as RFC 8461 §3.3 asks: status 200, text/plain, CRLF lines, never a
// redirect. Anything else is a 404 (a 405 for other methods). The policies and certificates are held in memory and
// refreshed on a timer, so a request never waits on ClickHouse or the disk, and a ClickHouse outage keeps the last
// policies served.
import { X509Certificate } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { createSecureContext, type SecureContext } from 'node:tls';
import type { Logger } from '../common/logger.ts';
import { guarded } from '../common/http-guard.ts';
import { policyText, type StsPolicy } from '../common/sts-policies.ts';

export const POLICY_PATH = '/.well-known/mta-sts.txt';

export interface HostState {
  /** The served policy text of each hosted domain (by domain). */
  policies: Map<string, string>;
  /** The certificate of each policy host name (`mta-sts.<domain>`) and its TLS context. */
  contexts: Map<string, LoadedCertificate>;
}

export interface LoadedCertificate {
  context: SecureContext;
  /** The certificate as read, parsed once per file version (its state: services/common/sts-certificates.ts). */
  certificate: X509Certificate;
}

/** What a policy host serves: every hosted domain not removed, in mode none until `serve_until` and after. */
export function servedPolicies(all: StsPolicy[]): Map<string, string> {
  return new Map(all.filter((p) => !p.removed).map((p) => [p.domain, policyText(p)]));
}

/**
 * Every certificate of the directory (`<host>.pem` with `<host>.key`), by host name, so that a name we hold a
 * certificate for but no longer host gets its 404; a hosted domain without one is logged (its policy cannot be
 * fetched), not fatal.
 */
let lastMissing: string[] = [];
const contextCache = new Map<string, { version: string; loaded: LoadedCertificate }>();

export async function loadContexts(
  dir: string,
  hosted: string[],
  logger: Logger,
): Promise<Map<string, LoadedCertificate>> {
  const out = new Map<string, LoadedCertificate>();
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const file of names.filter((n) => n.endsWith('.pem'))) {
    const host = file.slice(0, -'.pem'.length).toLowerCase();
    try {
      // Built again only when a file changed: the directory is read on every refresh, for every hosted domain.
      const [certStat, keyStat] = await Promise.all([stat(join(dir, file)), stat(join(dir, `${host}.key`))]);
      const version = `${certStat.mtimeMs}:${certStat.size}:${keyStat.mtimeMs}:${keyStat.size}`;
      const cached = contextCache.get(host);
      if (cached?.version === version) {
        out.set(host, cached.loaded);
        continue;
      }
      const [cert, key] = await Promise.all([readFile(join(dir, file)), readFile(join(dir, `${host}.key`))]);
      const loaded = {
        context: createSecureContext({ cert, key, minVersion: 'TLSv1.2' }),
        certificate: new X509Certificate(cert),
      };
      contextCache.set(host, { version, loaded });
      out.set(host, loaded);
    } catch (err) {
      // A pair caught between its two renames (or broken): the last good one stays served.
      const cached = contextCache.get(host);
      if (cached) out.set(host, cached.loaded);
      logger.warn({ err, host, servingPrevious: cached !== undefined }, 'unusable certificate or key');
    }
  }
  // Said when it changes, not on every refresh.
  const missing = hosted.map((d) => `mta-sts.${d}`).filter((h) => !out.has(h));
  if (missing.join() !== lastMissing.join() && missing.length > 0)
    logger.warn({ hosts: missing, dir }, 'no certificate for these policy hosts: their policies cannot be fetched');
  lastMissing = missing;
  return out;
}

function policyOf(state: HostState, req: IncomingMessage): string | undefined {
  const host = (req.headers.host ?? '').toLowerCase().replace(/:\d+$/, '').replace(/\.$/, '');
  if (!host.startsWith('mta-sts.')) return undefined;
  return state.policies.get(host.slice('mta-sts.'.length));
}

export function createPolicyHost(state: () => HostState, logger: Logger): Server {
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? '').split('?')[0];
    const policy = path === POLICY_PATH ? policyOf(state(), req) : undefined;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' });
      res.end('method not allowed\r\n');
      return;
    }
    if (policy === undefined) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found\r\n');
      return;
    }
    res.writeHead(200, {
      'content-type': 'text/plain; charset=utf-8',
      'content-length': Buffer.byteLength(policy),
      // Senders cache the policy by its id and max_age (RFC 8461 §3.3); HTTP caches should not add to that.
      'cache-control': 'no-store',
    });
    res.end(policy);
  };
  return createServer(
    {
      minVersion: 'TLSv1.2',
      // The certificate of the name asked for; none for a name we do not host (the handshake fails).
      SNICallback: (name, cb) => {
        const context = state().contexts.get(name.toLowerCase())?.context;
        if (context) cb(null, context);
        else cb(new Error(`no certificate for ${name}`));
      },
    },
    guarded(handler, logger),
  );
}
