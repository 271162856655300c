// The live checks of one managed domain, as a sending MTA and a reporter would meet its setup: the _mta-sts and
// _smtp._tls records, the policy fetched over HTTPS (certificate for mta-sts.<domain>, 200, no redirect, text/plain,
// syntax, size, max_age, a new id when the policy changed), every MX covered by an mx pattern and every pattern
// matching an MX, and each MX host's STARTTLS, chain, name, expiry and TLS version, with its TLSA records where it has
// them. Each result is a row to store.
import type { Resolver } from 'node:dns/promises';
import { request } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { parsePolicy, type ParsedPolicy as Policy } from '../../common/sts-policies.ts';
import { addressesOf } from './net-guard.ts';
import { checkMxTls, type MxTls } from './smtp-tls.ts';
import { tlsaMatches, tlsaRecords } from './tlsa.ts';

/** `run`: the run itself, when it did not finish within its deadline (what it found by then is kept). */
export type CheckName = 'mta-sts-record' | 'tlsrpt-record' | 'policy' | 'mx-coverage' | 'mx-tls' | 'run';

export interface CheckResult {
  check: CheckName;
  /** The domain, or the MX host a result is about. */
  subject: string;
  severity: 'ok' | 'warning' | 'critical';
  /** What was found, in one sentence. */
  summary: string;
  detail: Record<string, unknown>;
}

export interface CheckOptions {
  resolver: Resolver;
  allowPrivate: boolean;
  /** 25 and 443 in production; others in tests. */
  smtpPort: number;
  httpsPort: number;
  /** Extra CAs to trust (tests); by default the system's. */
  ca?: string | undefined;
  /** What one connection (a policy fetch, one MX host's SMTP and TLS) may take in all. */
  timeoutMs: number;
  /** MX hosts checked side by side. */
  concurrency?: number;
  /** Set when the domain's deadline passed: no further host is started. */
  signal?: AbortSignal;
  now: Date;
  /** The policy and id the previous check found, to tell a change without a new id. */
  previous?: { id: string; policy: string } | undefined;
}

const result = (
  check: CheckName,
  subject: string,
  severity: CheckResult['severity'],
  summary: string,
  detail: Record<string, unknown> = {},
): CheckResult => ({ check, subject, severity, summary, detail });

/** The TXT records of a name that start with `prefix`, joined as RFC 7208 joins strings. */
async function txt(resolver: Resolver, name: string, prefix: RegExp): Promise<string[]> {
  const all = await resolver.resolveTxt(name).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOTFOUND' || err.code === 'ENODATA') return [] as string[][];
    throw err;
  });
  return all.map((parts) => parts.join('')).filter((t) => prefix.test(t));
}

export async function checkRecords(domain: string, o: CheckOptions): Promise<{ results: CheckResult[]; id?: string }> {
  const out: CheckResult[] = [];
  const sts = await txt(o.resolver, `_mta-sts.${domain}`, /^v=STSv1\b/i);
  let id: string | undefined;
  if (sts.length !== 1) {
    out.push(
      result(
        'mta-sts-record',
        domain,
        'critical',
        `_mta-sts.${domain} has ${sts.length} v=STSv1 TXT records (one is needed)`,
        {
          records: sts,
        },
      ),
    );
  } else {
    id = /(?:^|;)\s*id=([A-Za-z0-9]{1,32})\s*(?:;|$)/.exec(sts[0]!)?.[1];
    out.push(
      id
        ? result('mta-sts-record', domain, 'ok', `_mta-sts.${domain} announces policy id ${id}`, { record: sts[0], id })
        : result(
            'mta-sts-record',
            domain,
            'critical',
            `_mta-sts.${domain} has no valid id= (1–32 letters and digits)`,
            {
              record: sts[0],
            },
          ),
    );
  }
  const rpt = await txt(o.resolver, `_smtp._tls.${domain}`, /^v=TLSRPTv1\b/i);
  if (rpt.length !== 1) {
    out.push(
      result(
        'tlsrpt-record',
        domain,
        'critical',
        `_smtp._tls.${domain} has ${rpt.length} v=TLSRPTv1 TXT records (one is needed)`,
        {
          records: rpt,
        },
      ),
    );
  } else {
    const rua =
      /(?:^|;)\s*rua=([^;]+)/i
        .exec(rpt[0]!)?.[1]
        ?.split(',')
        .map((u) => u.trim()) ?? [];
    const bad = rua.filter((u) => !/^(mailto:[^@\s]+@[^@\s]+|https:\/\/\S+)$/i.test(u));
    // A mailto: address is reachable when its domain receives mail.
    const unreachable: string[] = [];
    for (const u of rua.filter((x) => /^mailto:/i.test(x) && !bad.includes(x))) {
      const at = u.slice(u.lastIndexOf('@') + 1);
      const mx = await o.resolver.resolveMx(at).catch(() => []);
      const a = mx.length > 0 ? [1] : await o.resolver.resolve4(at).catch(() => []);
      if (a.length === 0) unreachable.push(u);
    }
    out.push(
      rua.length === 0 || bad.length > 0 || unreachable.length > 0
        ? result(
            'tlsrpt-record',
            domain,
            'warning',
            `_smtp._tls.${domain}: ${rua.length === 0 ? 'no rua' : `rua not usable: ${[...bad, ...unreachable].join(', ')}`}`,
            {
              record: rpt[0],
              bad,
              unreachable,
            },
          )
        : result('tlsrpt-record', domain, 'ok', `_smtp._tls.${domain} sends reports to ${rua.join(', ')}`, {
            record: rpt[0],
            rua,
          }),
    );
  }
  return { results: out, ...(id ? { id } : {}) };
}

/** The policy as a sending MTA fetches it. */
export async function checkPolicy(
  domain: string,
  id: string | undefined,
  o: CheckOptions,
): Promise<{ results: CheckResult[]; policy?: Policy; text?: string }> {
  const host = `mta-sts.${domain}`;
  const fail = (summary: string, detail: Record<string, unknown> = {}) => ({
    results: [result('policy', domain, 'critical', summary, { host, ...detail })],
  });
  let address: string;
  try {
    [address] = (await addressesOf(o.resolver, host, o.allowPrivate)) as [string];
  } catch (err) {
    return fail(`the policy host ${host} cannot be reached: ${(err as Error).message}`);
  }
  const got = await new Promise<
    | { status: number; type: string; location?: string; body: string; validTo?: string }
    | { error: string; code?: string }
  >((resolve) => {
    const req = request(
      {
        host: address,
        port: o.httpsPort,
        path: '/.well-known/mta-sts.txt',
        servername: host,
        headers: { host, 'user-agent': 'tlsrpt-pipeline posture check' },
        ...(o.ca ? { ca: o.ca } : {}),
        timeout: o.timeoutMs,
        agent: false,
      },
      (res) => {
        let body = '';
        // The policy host's certificate (verified by now): when it ends, for the warning three weeks before.
        const validTo = (res.socket as TLSSocket).getPeerCertificate?.()?.valid_to;
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          body += d;
          if (body.length > 65536) res.destroy(new Error('the policy is larger than 64 KiB'));
        });
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            type: String(res.headers['content-type'] ?? ''),
            location: res.headers.location,
            body,
            ...(validTo ? { validTo: new Date(validTo).toISOString() } : {}),
          }),
        );
        res.on('error', (e) => resolve({ error: e.message }));
        res.on('aborted', () => resolve({ error: `no complete answer within ${o.timeoutMs} ms` }));
      },
    );
    // An absolute deadline: `timeout` above is an idle timeout, which every byte of a dripping server resets.
    const deadline = setTimeout(
      () => req.destroy(new Error(`no complete answer within ${o.timeoutMs} ms`)),
      o.timeoutMs,
    );
    req.on('close', () => clearTimeout(deadline));
    req.on('timeout', () => req.destroy(new Error(`no answer within ${o.timeoutMs} ms`)));
    req.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.message, ...(e.code ? { code: e.code } : {}) }));
    req.end();
  });
  if ('error' in got)
    return fail(`fetching https://${host}/.well-known/mta-sts.txt failed: ${got.error}`, { code: got.code });
  if (got.status >= 300 && got.status < 400)
    return fail(
      `https://${host}/.well-known/mta-sts.txt redirects (HTTP ${got.status}); senders do not follow redirects`,
      {
        status: got.status,
        location: got.location,
      },
    );
  if (got.status !== 200)
    return fail(`https://${host}/.well-known/mta-sts.txt answered HTTP ${got.status}`, { status: got.status });
  if (!/^text\/plain\b/i.test(got.type))
    return fail(`the policy is served as "${got.type}", not text/plain`, { contentType: got.type });
  const policy = parsePolicy(got.body);
  if (typeof policy === 'string') return fail(`the policy is invalid: ${policy}`, { policy: got.body.slice(0, 2000) });
  const notes: string[] = [];
  let severity: CheckResult['severity'] = 'ok';
  if (policy.maxAge < 86_400) {
    severity = 'warning';
    notes.push(`max_age ${policy.maxAge} is under a day`);
  }
  const daysToExpiry = got.validTo ? Math.trunc((Date.parse(got.validTo) - o.now.getTime()) / 86400_000) : undefined;
  if (daysToExpiry !== undefined && daysToExpiry < EXPIRY_WARNING_DAYS) {
    severity = 'warning';
    notes.push(`the certificate of ${host} expires in ${daysToExpiry} day(s): senders cannot fetch the policy after`);
  }
  if (o.previous && id && o.previous.id === id && o.previous.policy !== got.body) {
    severity = 'critical';
    notes.push(`the policy changed but its id ${id} did not: senders keep the old one`);
  }
  return {
    results: [
      result(
        'policy',
        domain,
        severity,
        notes.length > 0
          ? notes.join('; ')
          : `mode ${policy.mode}, ${policy.mx.length} mx pattern(s), max_age ${policy.maxAge}`,
        { host, id, ...policy, ...(got.validTo ? { certificateValidTo: got.validTo, daysToExpiry } : {}) },
      ),
    ],
    policy,
    text: got.body,
  };
}

/** RFC 8461 §4.1: a pattern `*.example.com` matches one more label; otherwise the names are equal. */
export function mxMatches(pattern: string, host: string): boolean {
  const p = pattern.toLowerCase().replace(/\.$/, '');
  const h = host.toLowerCase().replace(/\.$/, '');
  if (p.startsWith('*.')) {
    const dot = h.indexOf('.');
    return dot > 0 && h.slice(dot + 1) === p.slice(2);
  }
  return p === h;
}

/**
 * Every check of a domain. Results are pushed into `results` as they come, so a caller whose deadline passes keeps
 * what was found by then.
 */
export async function checkDomain(
  domain: string,
  o: CheckOptions,
  results: CheckResult[] = [],
): Promise<{ results: CheckResult[]; id?: string; policyText?: string }> {
  const records = await checkRecords(domain, o);
  results.push(...records.results);
  const fetched = await checkPolicy(domain, records.id, o);
  results.push(...fetched.results);
  const mxHosts = (await o.resolver.resolveMx(domain).catch(() => []))
    .sort((a, b) => a.priority - b.priority)
    .map((m) => m.exchange.toLowerCase().replace(/\.$/, ''));
  if (fetched.policy && fetched.policy.mode !== 'none') {
    const patterns = fetched.policy.mx;
    const uncovered = mxHosts.filter((h) => !patterns.some((p) => mxMatches(p, h)));
    const unused = patterns.filter((p) => !mxHosts.some((h) => mxMatches(p, h)));
    results.push(
      uncovered.length > 0
        ? result(
            'mx-coverage',
            domain,
            'critical',
            `MX ${uncovered.join(', ')} not covered by any mx pattern of the policy`,
            {
              mx: mxHosts,
              patterns,
              uncovered,
              unused,
            },
          )
        : result(
            'mx-coverage',
            domain,
            unused.length > 0 ? 'warning' : 'ok',
            unused.length > 0 ? `mx pattern(s) ${unused.join(', ')} match no MX` : `every MX is covered by the policy`,
            { mx: mxHosts, patterns, unused },
          ),
    );
  }
  // Side by side, a few at a time, each pushed as it finishes.
  const hosts = mxHosts.slice(0, 20);
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < hosts.length && !o.signal?.aborted) results.push(await checkMx(hosts[next++]!, o));
  };
  await Promise.all(Array.from({ length: Math.min(o.concurrency ?? 4, hosts.length) }, lane));
  return { results, ...(records.id ? { id: records.id } : {}), ...(fetched.text ? { policyText: fetched.text } : {}) };
}

/** One MX host: its address (public only), STARTTLS and certificate, and its TLSA records. */
async function checkMx(host: string, o: CheckOptions): Promise<CheckResult> {
  let address: string;
  try {
    [address] = (await addressesOf(o.resolver, host, o.allowPrivate)) as [string];
  } catch (err) {
    return result('mx-tls', host, 'critical', `${host} cannot be reached: ${(err as Error).message}`);
  }
  const [t, tlsa] = await Promise.all([
    checkMxTls({ host, address, port: o.smtpPort, ca: o.ca, timeoutMs: o.timeoutMs, now: o.now }),
    tlsaRecords(host, o.resolver.getServers()[0] ?? '127.0.0.1', Math.min(o.timeoutMs, 5000)),
  ]);
  const { chain, ...checked } = t;
  const r = mxTlsResult(host, checked);
  if (tlsa.length === 0) return r;
  // Judged only against a chain the host presented; without one (no STARTTLS) there is nothing to match.
  const tlsaMatch = chain ? tlsa.some((record) => tlsaMatches(record, chain)) : undefined;
  const said = tlsaMatch === undefined ? '' : tlsaMatch ? ', one matches' : ', none matches the certificate';
  return {
    ...r,
    // DANE senders (Microsoft, Postfix with DANE) refuse a host whose TLSA records match none of its certificates.
    severity: tlsaMatch === false ? 'critical' : r.severity,
    summary: `${r.summary}; TLSA: ${tlsa.length} record(s)${said}`,
    detail: { ...r.detail, tlsa, ...(tlsaMatch === undefined ? {} : { tlsaMatch }) },
  };
}

/** A certificate expiring sooner is a warning: three weeks leave time to renew before senders refuse it. */
export const EXPIRY_WARNING_DAYS = 21;

function mxTlsResult(host: string, t: MxTls): CheckResult {
  const detail = { ...t } as Record<string, unknown>;
  if (!t.starttls)
    return result(
      'mx-tls',
      host,
      'critical',
      t.error ? `${host}: ${t.error}` : `${host} does not offer STARTTLS`,
      detail,
    );
  if (t.error) return result('mx-tls', host, 'critical', `${host}: STARTTLS failed: ${t.error}`, detail);
  if (t.expired)
    return result(
      'mx-tls',
      host,
      'critical',
      `${host}: the certificate expired ${-(t.daysToExpiry ?? 0)} day(s) ago`,
      detail,
    );
  if (!t.nameMatches)
    return result('mx-tls', host, 'critical', `${host}: the certificate does not name ${host}`, detail);
  if (!t.trusted)
    return result(
      'mx-tls',
      host,
      'critical',
      `${host}: the certificate chain is not trusted (${t.trustError ?? 'unknown'})`,
      detail,
    );
  if ((t.daysToExpiry ?? 0) < EXPIRY_WARNING_DAYS)
    return result('mx-tls', host, 'warning', `${host}: the certificate expires in ${t.daysToExpiry} day(s)`, detail);
  return result(
    'mx-tls',
    host,
    'ok',
    `${host}: STARTTLS, ${t.tlsVersion}, trusted, expires in ${t.daysToExpiry} days`,
    detail,
  );
}
