// Canonical forms of the values inside a report: times, domains, IP addresses, policy strings.
// Each function returns the value plus the flags describing what it had to accept.
import { isIPv4, isIPv6 } from 'node:net';
import { domainToASCII } from 'node:url';

export interface Flagged<T> {
  value: T;
  flags: string[];
}

const RFC3339ISH =
  /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?)?\s*(Z|z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)?$/;

/** Largest value a UInt32 column holds (sts_max_age). */
const MAX_UINT32 = 4_294_967_295;
/**
 * The report times every ClickHouse we support stores and shows as they are: 18.16's date tables end with 2105
 * (later dates were written as 0000-00-00), and it shows day 0, 1970-01-01, as the zero date.
 */
export const EARLIEST_REPORT_TIME = Date.UTC(1970, 0, 2);
export const LATEST_REPORT_TIME = Date.UTC(2105, 11, 31, 23, 59, 59);

/**
 * RFC 3339 date-time, accepting what real senders send: no time zone (Microsoft; taken as UTC), a space instead
 * of `T`, a bare date, an `+hhmm` offset, a leap second, or a number of Unix seconds. Returns undefined for
 * anything that is not a time.
 */
export function parseReportTime(raw: string | number): Flagged<Date> | undefined {
  const flags: string[] = [];
  if (typeof raw === 'number') {
    if (!Number.isFinite(raw) || raw < 0) return undefined;
    flags.push('datetime-as-number');
    const ms = raw > 1e11 ? raw : raw * 1000;
    return inRange(new Date(Math.floor(ms / 1000) * 1000), flags);
  }
  const m = RFC3339ISH.exec(raw.trim());
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s, , zone] = m;
  if (h === undefined) flags.push('date-without-time');
  else if (zone === undefined) flags.push('datetime-without-zone');
  let second = Number(s ?? 0);
  if (second === 60) {
    // A leap second: keep the instant one second earlier rather than reject the report.
    second = 59;
    flags.push('leap-second');
  }
  const year = Number(y);
  const month = Number(mo) - 1;
  const day = Number(d);
  const hour = Number(h ?? 0);
  const minute = Number(mi ?? 0);
  let ms = Date.UTC(year, month, day, hour, minute, second);
  const check = new Date(ms);
  // Date.UTC rolls over out-of-range fields (month 13, 31 February): such a time is not a time.
  if (
    check.getUTCFullYear() !== year ||
    check.getUTCMonth() !== month ||
    check.getUTCDate() !== day ||
    hour > 23 ||
    minute > 59
  ) {
    return undefined;
  }
  if (zone && !/^(Z|z|UTC|GMT)$/.test(zone)) {
    const sign = zone.startsWith('-') ? -1 : 1;
    const digits = zone.slice(1).replace(':', '');
    const offsetMinutes = Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2, 4) || 0);
    ms -= sign * offsetMinutes * 60_000;
  }
  return inRange(new Date(ms), flags);
}

function inRange(date: Date, flags: string[]): Flagged<Date> | undefined {
  const t = date.getTime();
  if (!Number.isFinite(t) || t < EARLIEST_REPORT_TIME || t > LATEST_REPORT_TIME) return undefined;
  return { value: date, flags };
}

const DOMAIN_CHARS = /^[a-z0-9_-]+(\.[a-z0-9_-]+)*$/;

/**
 * A domain in canonical form: trimmed, lower-case, no trailing dot, IDNs as A-labels; a leading `*.` wildcard
 * (MTA-STS mx patterns) is kept. Something that is not a domain is kept as it came (lower-cased), flagged.
 */
export function normalizeDomain(raw: string): Flagged<string> {
  const flags: string[] = [];
  let s = raw.trim();
  if (s.endsWith('.')) s = s.replace(/\.+$/, '');
  if (s !== raw) flags.push('domain-trimmed');
  let wildcard = '';
  if (s.startsWith('*.')) {
    wildcard = '*.';
    s = s.slice(2);
  }
  if (s === '') return { value: (wildcard + s).toLowerCase(), flags: wildcard ? ['invalid-domain'] : flags };
  let ascii = s.toLowerCase();
  // eslint-disable-next-line no-control-regex
  if (/[^\x00-\x7f]/.test(s)) {
    const converted = domainToASCII(s);
    if (converted) {
      ascii = converted;
      flags.push('idn-converted');
    }
  }
  if (!DOMAIN_CHARS.test(ascii)) flags.push('invalid-domain');
  return { value: wildcard + ascii, flags };
}

/** An IP address in canonical form (RFC 5952 for IPv6; IPv4-mapped IPv6 as plain IPv4). */
export function normalizeIp(raw: string): Flagged<string> {
  let s = raw.trim();
  if (s.startsWith('[')) s = s.replace(/^\[(.*)\]$/, '$1');
  if (isIPv4(s)) return { value: s, flags: [] };
  if (isIPv6(s)) {
    // The WHATWG URL serializer compresses IPv6 exactly as RFC 5952 asks (lower-case, longest zero run as ::).
    const canonical = new URL(`http://[${s}]/`).hostname.slice(1, -1);
    const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(canonical);
    if (mapped) {
      const hi = parseInt(mapped[1] ?? '0', 16);
      const lo = parseInt(mapped[2] ?? '0', 16);
      return { value: `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`, flags: ['ipv4-mapped-ipv6'] };
    }
    return { value: canonical, flags: [] };
  }
  return { value: s, flags: ['invalid-ip'] };
}

export interface StsPolicy {
  version: string;
  mode: string;
  maxAge: number | null;
  mx: string[];
}

/** MTA-STS policy text (RFC 8461 §3.2), one `key: value` per string; lines split further on newlines. */
export function parseStsPolicy(strings: string[]): Flagged<StsPolicy> {
  const flags = new Set<string>();
  const policy: StsPolicy = { version: '', mode: '', maxAge: null, mx: [] };
  // Most senders send one line per string: only those holding line breaks are split.
  const lines = strings.some((s) => /[\r\n]/.test(s)) ? strings.flatMap((s) => s.split(/\r?\n|\r/)) : strings;
  for (const line of lines) {
    if (line.trim() === '') continue;
    const m = /^\s*([A-Za-z_]+)\s*:\s*(.*?)\s*$/.exec(line);
    if (!m) {
      flags.add('sts-policy-unparsed-line');
      continue;
    }
    const key = (m[1] ?? '').toLowerCase();
    const value = m[2] ?? '';
    if (key === 'version') policy.version = value;
    else if (key === 'mode') policy.mode = value.toLowerCase();
    else if (key === 'mx') policy.mx.push(normalizeDomain(value).value);
    else if (key === 'max_age') {
      const n = Number(value);
      if (/^\d+$/.test(value) && Number.isSafeInteger(n) && n <= MAX_UINT32) policy.maxAge = n;
      else flags.add('sts-invalid-max-age');
    } else flags.add('sts-policy-unknown-key');
  }
  if (policy.mode && !['enforce', 'testing', 'none'].includes(policy.mode)) flags.add('sts-unknown-mode');
  return { value: policy, flags: [...flags] };
}

/**
 * TLSA records from policy strings: `usage selector mtype data`, one per string or several separated by `;`.
 * Microsoft sends one string holding a JSON-encoded array of records; that is unpacked (and flagged).
 * Records come back canonical: decimal fields, lower-case hex data.
 */
export function parseTlsaPolicy(strings: string[]): Flagged<string[]> {
  const flags = new Set<string>();
  const records: string[] = [];
  for (const s of strings) {
    let parts: string[] = [s];
    const trimmed = s.trim();
    if (trimmed.startsWith('[')) {
      try {
        const decoded: unknown = JSON.parse(trimmed);
        if (Array.isArray(decoded)) {
          parts = decoded.map((x) => String(x));
          flags.add('tlsa-json-encoded');
        }
      } catch {
        flags.add('tlsa-unparsed-record');
      }
    }
    for (const part of parts.flatMap((p) => p.split(';'))) {
      if (part.trim() === '') continue;
      const m = /^\s*(\d{1,3})\s+(\d{1,3})\s+(\d{1,3})\s+([0-9A-Fa-f\s]+?)\s*$/.exec(part);
      if (!m) {
        flags.add('tlsa-unparsed-record');
        continue;
      }
      records.push(`${Number(m[1])} ${Number(m[2])} ${Number(m[3])} ${(m[4] ?? '').replace(/\s+/g, '').toLowerCase()}`);
    }
  }
  return { value: records, flags: [...flags] };
}
