// The certificates of the policy hosts (mta-sts.<domain>): what the policy host found (services/mta-sts writes a row
// of sts_certificates each time a host's state changes) and what the API and the dashboard read from it. A policy
// change answers "pending-certificate" until its host's certificate is usable: a sender that fetches a policy from a
// host without one fails TLS, so the `_mta-sts` record must not be published before.
import { X509Certificate } from 'node:crypto';
import { quoteString } from './clickhouse-compat.ts';
import type { ClickHouseClient } from './clickhouse.ts';
import { toClickHouseDateTime } from './sql.ts';

export const CERTIFICATE_STATES = ['issued', 'expired', 'unusable', 'pending', 'failed', 'missing'] as const;
export type CertificateState = (typeof CERTIFICATE_STATES)[number];

/** A row of sts_certificates. Times are `YYYY-MM-DD hh:mm:ss` UTC; the epoch where a certificate gives none. */
export interface CertificateRow {
  host: string;
  state: CertificateState;
  valid_from: string;
  valid_until: string;
  issuer: string;
  reason: string;
  checked_at: string;
  version: number;
}

export const EPOCH = '1970-01-01 00:00:00';
const REASON_MAX = 500;

/** A certificate's issuer as a person names a CA ("Let's Encrypt R11"): its organization, then its common name. */
export function issuerName(cert: X509Certificate): string {
  const field = (name: string): string =>
    cert.issuer
      .split('\n')
      .filter((l) => l.startsWith(`${name}=`))
      .map((l) => l.slice(name.length + 1))
      .join(' ');
  return [field('O'), field('CN')].filter(Boolean).join(' ');
}

/** What a certificate (parsed, or a file's PEM) means for `host` at `now`: issued, expired, or unusable. */
export function certificateState(
  certificate: X509Certificate | Buffer | string,
  host: string,
  now: Date,
): Omit<CertificateRow, 'host' | 'checked_at' | 'version'> {
  let cert: X509Certificate;
  try {
    cert = certificate instanceof X509Certificate ? certificate : new X509Certificate(certificate);
  } catch (err) {
    return unknownCertificate('unusable', `the certificate file does not parse: ${(err as Error).message}`);
  }
  const validFrom = toClickHouseDateTime(new Date(cert.validFrom));
  const validUntil = toClickHouseDateTime(new Date(cert.validTo));
  const base = { valid_from: validFrom, valid_until: validUntil, issuer: bounded(issuerName(cert)) };
  if (cert.checkHost(host) === undefined)
    return {
      ...base,
      state: 'unusable',
      reason: bounded(`it does not name ${host} (${cert.subjectAltName ?? cert.subject.replace(/\n/g, ', ')})`),
    };
  if (new Date(cert.validTo).getTime() <= now.getTime())
    return { ...base, state: 'expired', reason: `it expired on ${validUntil} UTC` };
  if (new Date(cert.validFrom).getTime() > now.getTime())
    return { ...base, state: 'unusable', reason: `it is valid only from ${validFrom} UTC` };
  return { ...base, state: 'issued', reason: '' };
}

export function unknownCertificate(
  state: CertificateState,
  reason: string,
): Omit<CertificateRow, 'host' | 'checked_at' | 'version'> {
  return { state, valid_from: EPOCH, valid_until: EPOCH, issuer: '', reason: bounded(reason) };
}

/** One line of at most 500 characters: a reason comes from a CA's or a parser's error text. */
const bounded = (s: string): string => {
  const line = s.replace(/\s+/g, ' ').trim();
  return line.length > REASON_MAX ? `${line.slice(0, REASON_MAX - 1)}…` : line;
};

type RowReader = (sql: string) => Promise<Array<Record<string, unknown>>>;

/** A stored time; ClickHouse 18.16 writes the epoch of a DateTime as `0000-00-00 00:00:00`, current ones as 1970. */
const storedTime = (v: unknown): string => (String(v).startsWith('0000-00-00') ? EPOCH : String(v));

/** The newest state of each host (of the given ones, or all). */
export async function currentCertificates(read: RowReader, hosts?: string[]): Promise<Map<string, CertificateRow>> {
  if (hosts?.length === 0) return new Map();
  // Aliases differ from the columns: ClickHouse would resolve argMax(state …) AS state recursively.
  const rows = await read(
    `SELECT host, argMax(state, version) AS s, toString(argMax(valid_from, version)) AS vf,
            toString(argMax(valid_until, version)) AS vu, argMax(issuer, version) AS i, argMax(reason, version) AS r,
            toString(argMax(checked_at, version)) AS c, max(version) AS v
     FROM sts_certificates${hosts ? ` WHERE host IN (${hosts.map(quoteString).join(', ')})` : ''}
     GROUP BY host`,
  );
  return new Map(rows.map((r) => [String(r.host), certificateRow(r)]));
}

/** A host's states, newest first (the dashboard's history). */
export async function certificateHistory(read: RowReader, host: string, limit = 20): Promise<CertificateRow[]> {
  const rows = await read(
    `SELECT host, state AS s, toString(valid_from) AS vf, toString(valid_until) AS vu, issuer AS i, reason AS r,
            toString(checked_at) AS c, version AS v
     FROM sts_certificates WHERE host = ${quoteString(host)} ORDER BY v DESC LIMIT ${limit}`,
  );
  return rows.map(certificateRow);
}

/** A row as both reads name its columns (s, vf, vu, i, r, c, v). */
const certificateRow = (r: Record<string, unknown>): CertificateRow => ({
  host: String(r.host),
  state: String(r.s) as CertificateState,
  valid_from: storedTime(r.vf),
  valid_until: storedTime(r.vu),
  issuer: String(r.i),
  reason: String(r.r),
  checked_at: String(r.c),
  version: Number(r.v),
});

/** The certificate of each domain's policy host (`mta-sts.<domain>`) as the policy host last reported it, by domain. */
export async function certificatesOf(
  read: RowReader,
  domains: string[],
  now: Date,
): Promise<Map<string, CertificateView>> {
  const host = (d: string): string => `mta-sts.${d}`;
  const found = await currentCertificates(read, domains.map(host));
  return new Map(domains.map((d) => [d, certificateView(host(d), found.get(host(d)), now)]));
}

export async function writeCertificates(ch: ClickHouseClient, rows: CertificateRow[]): Promise<void> {
  if (rows.length > 0) await ch.insert({ table: 'sts_certificates', values: rows, format: 'JSONEachRow' });
}

/** A usable certificate: issued (names the host, in its validity) and not expired since the row was written. */
export function usable(row: CertificateRow | undefined, now: Date): boolean {
  return row?.state === 'issued' && row.valid_until > toClickHouseDateTime(now);
}

/** What a policy change answers about the certificate of `mta-sts.<domain>`. */
export interface CertificateView {
  host: string;
  state: CertificateState | 'unknown';
  validFrom: string | null;
  validUntil: string | null;
  issuer: string | null;
  reason: string;
  /** When the policy host last found this state (null when it never reported the host). */
  since: string | null;
}

export function certificateView(host: string, row: CertificateRow | undefined, now: Date): CertificateView {
  if (!row)
    return {
      host,
      state: 'unknown',
      validFrom: null,
      validUntil: null,
      issuer: null,
      reason: 'no policy host has reported a certificate for this name yet (it looks every MTA_STS_REFRESH_SECONDS)',
      since: null,
    };
  // Issued, but past its end since the policy host last looked.
  const expiredSince = row.state === 'issued' && !usable(row, now);
  return {
    host,
    state: expiredSince ? 'expired' : row.state,
    validFrom: row.valid_from === EPOCH ? null : row.valid_from,
    validUntil: row.valid_until === EPOCH ? null : row.valid_until,
    issuer: row.issuer || null,
    reason: expiredSince ? `it expired on ${row.valid_until} UTC` : row.reason,
    since: row.checked_at,
  };
}
