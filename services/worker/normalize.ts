// Parsed JSON → a validated, canonical report. Accepts every deviation real senders produce (flagged), rejects
// only what carries no meaning, with a machine-readable reason.
import { hash } from 'node:crypto';
import type { z } from 'zod';
import { ReportRejectedError, type RejectReason } from '../common/errors.ts';
import { MAX_JSON_DEPTH, valueDepthExceeds } from '../common/json-depth.ts';
import {
  DETAIL_KEY_ALIASES,
  KNOWN_DATE_RANGE_KEYS,
  KNOWN_DETAIL_KEYS,
  KNOWN_ENTRY_KEYS,
  KNOWN_POLICY_KEYS,
  KNOWN_REPORT_KEYS,
  KNOWN_SUMMARY_KEYS,
  POLICY_TYPES,
  RESULT_TYPES,
  reportSchema,
  type WireFailureDetail,
  type WirePolicyEntry,
} from '../../schemas/report.ts';
import {
  normalizeDomain,
  normalizeIp,
  parseReportTime,
  parseStsPolicy,
  parseTlsaPolicy,
  type Flagged,
} from './normalize-values.ts';

/**
 * Bumped whenever normalization (or the rows made of it) changes, so re-processed rows can be told apart: a report
 * stored again from the same text by the same version is taken to have the same rows (services/worker/reprocessing.ts).
 * test/unit/normalizer-version.test.ts fails when the output changes and this does not.
 */
export const NORMALIZER_VERSION = 1;

export interface NormalizedFailureDetail {
  index: number;
  resultType: string;
  failedSessionCount: number;
  sendingMtaIp: string | null;
  receivingMxHostname: string | null;
  receivingMxHelo: string | null;
  receivingIp: string | null;
  additionalInformation: string | null;
  failureReasonCode: string | null;
  flags: string[];
  /** Keys we do not know, as they came. */
  extra: Record<string, unknown>;
}

export interface NormalizedPolicy {
  index: number;
  policyType: string;
  policyDomain: string;
  policyStrings: string[];
  mxHosts: string[];
  stsVersion: string;
  stsMode: string;
  stsMaxAge: number | null;
  stsMx: string[];
  tlsaRecords: string[];
  successfulSessions: number;
  failedSessions: number;
  details: NormalizedFailureDetail[];
  flags: string[];
  extra: Record<string, unknown>;
}

export interface NormalizedReport {
  /** Identity of a report: sender organization, report-id and date range (RFC8460-NOTES §4). */
  reportKey: string;
  organization: string;
  reportId: string;
  contactInfo: string | null;
  start: Date;
  end: Date;
  startRaw: string;
  endRaw: string;
  policies: NormalizedPolicy[];
  /** Every flag of the report and its policies and details, unique and sorted. */
  flags: string[];
  extra: Record<string, unknown>;
}

export function reportKeyOf(organization: string, reportId: string, start: Date, end: Date): string {
  const identity = `${organization}\u0000${reportId}\u0000${start.getTime() / 1000}\u0000${end.getTime() / 1000}`;
  return hash('sha256', identity, 'hex').slice(0, 32);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Keys of `obj` not in `known`. `raw` is the same object as parsed, before validation: zod's copy leaves out a key
 * named __proto__ (JSON.parse makes it an own property), which is kept too, as a property, never as a prototype.
 */
function extraKeys(obj: Record<string, unknown>, known: Set<string>, raw: unknown): Record<string, unknown> {
  const extra: Record<string, unknown> = {};
  // for-in, not Object.entries: this runs for every failure detail, and entries allocates a pair per key.
  for (const k in obj) if (!known.has(k)) extra[k] = obj[k];
  if (isPlainObject(raw) && Object.hasOwn(raw, '__proto__')) {
    Object.defineProperty(extra, '__proto__', { value: raw.__proto__, enumerable: true, writable: true });
  }
  return extra;
}

const member = (v: unknown, key: string): unknown => (isPlainObject(v) ? v[key] : undefined);

function reasonFor(issue: z.core.$ZodIssue): RejectReason {
  if (issue.code === 'too_big' && issue.origin === 'string') return 'field-too-long';
  const [top, , second, third] = issue.path;
  const last = issue.path[issue.path.length - 1];
  if (top === 'organization-name') return 'missing-organization';
  if (top === 'report-id') return 'missing-report-id';
  if (top === 'date-range') return issue.path.length === 1 ? 'missing-date-range' : 'invalid-date-range';
  if (top === 'policies') {
    if (issue.path.length === 1) return 'missing-policies';
    if (typeof last === 'string' && last.endsWith('count')) return 'invalid-count';
    if (second === 'summary' || second === 'policy' || third !== undefined) return 'invalid-policy';
    return 'invalid-policy';
  }
  return 'schema-invalid';
}

function describe(issue: z.core.$ZodIssue): string {
  const path = issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('');
  return `${path.replace(/^\./, '') || '(report)'}: ${issue.message}`;
}

const text = (v: string | number | null | undefined): string | null =>
  v === null || v === undefined ? null : String(v);

const ALIASES = Object.entries(DETAIL_KEY_ALIASES);

/** Renames draft-era and misspelled detail keys to their RFC names (the RFC name wins when both are present). */
function unaliasDetail(raw: Record<string, unknown>, flags: Set<string>): Record<string, unknown> {
  let out = raw;
  for (const [alias, name] of ALIASES) {
    if (alias in raw) {
      flags.add('legacy-key-name');
      if (out === raw) out = { ...raw };
      if (!(name in out)) out[name] = raw[alias];
      delete out[alias];
    }
  }
  return out;
}

/** Bounds on the rows one report may make (WORKER_MAX_POLICIES, WORKER_MAX_FAILURE_DETAILS). */
export interface ReportLimits {
  maxPolicies: number;
  maxFailureDetails: number;
}

export const DEFAULT_REPORT_LIMITS: ReportLimits = { maxPolicies: 10_000, maxFailureDetails: 100_000 };

/** Refuses a report past the bounds before validation, whose cost grows with every policy and detail. */
function checkBounds(policies: unknown, limits: ReportLimits): void {
  if (!Array.isArray(policies)) return;
  if (policies.length > limits.maxPolicies) {
    throw new ReportRejectedError(
      'too-many-policies',
      `the report has ${policies.length} policies; at most ${limits.maxPolicies} are taken`,
    );
  }
  let details = 0;
  for (const entry of policies) {
    if (isPlainObject(entry) && Array.isArray(entry['failure-details'])) details += entry['failure-details'].length;
  }
  if (details > limits.maxFailureDetails) {
    throw new ReportRejectedError(
      'too-many-failure-details',
      `the report has ${details} failure details; at most ${limits.maxFailureDetails} are taken`,
    );
  }
}

/**
 * Validates and normalizes a parsed report. Throws ReportRejectedError for a report that can never be stored.
 */
export function normalizeReport(parsed: unknown, limits: ReportLimits = DEFAULT_REPORT_LIMITS): NormalizedReport {
  if (!isPlainObject(parsed)) {
    throw new ReportRejectedError(
      'not-an-object',
      `the report is ${Array.isArray(parsed) ? 'an array' : typeof parsed}, not a JSON object`,
    );
  }
  checkBounds(parsed.policies, limits);
  const reportFlags = new Set<string>();
  let input: Record<string, unknown> = parsed;
  if (isPlainObject(parsed.policies)) {
    input = { ...parsed, policies: [parsed.policies] };
    reportFlags.add('policies-not-a-list');
  }
  // Detail key aliases are resolved before validation, so a count under a draft-era name is still checked.
  // Copies only what it renames: almost every report has no alias, and copying every detail cost as much as zod.
  if (Array.isArray(input.policies)) {
    let policies: unknown[] | undefined;
    input.policies.forEach((entry: unknown, p: number) => {
      if (!isPlainObject(entry) || !Array.isArray(entry['failure-details'])) return;
      let details: unknown[] | undefined;
      entry['failure-details'].forEach((d: unknown, i: number, all: unknown[]) => {
        const renamed = isPlainObject(d) ? unaliasDetail(d, reportFlags) : d;
        if (renamed !== d) (details ??= [...all])[i] = renamed;
      });
      if (details) (policies ??= [...(input.policies as unknown[])])[p] = { ...entry, 'failure-details': details };
    });
    if (policies) input = { ...input, policies };
  }

  if (hasCountAsString(input.policies)) reportFlags.add('count-as-string');

  const result = reportSchema.safeParse(input);
  if (!result.success) {
    const first = result.error.issues[0];
    if (!first) throw new ReportRejectedError('schema-invalid', 'the report does not match the schema');
    const more = result.error.issues.length > 1 ? ` (and ${result.error.issues.length - 1} more problems)` : '';
    throw new ReportRejectedError(reasonFor(first), describe(first) + more);
  }
  const report = result.data;

  const dateRange = report['date-range'];
  const start = parseReportTime(dateRange['start-datetime']);
  const end = parseReportTime(dateRange['end-datetime']);
  if (!start || !end) {
    const bad = !start ? 'start-datetime' : 'end-datetime';
    throw new ReportRejectedError(
      'invalid-date-range',
      `date-range.${bad} ${JSON.stringify(dateRange[bad])} is not a date-time from 1970-01-02 to 2105-12-31, the range the store holds`,
    );
  }
  for (const f of [...start.flags, ...end.flags]) reportFlags.add(f);
  if (end.value.getTime() < start.value.getTime()) reportFlags.add('end-before-start');
  if (end.value.getTime() - start.value.getTime() > 25 * 3600_000) reportFlags.add('multi-day-range');

  const rawContact = report['contact-info'];
  let contactInfo: string | null;
  if (rawContact === undefined) {
    contactInfo = null;
    reportFlags.add('missing-contact-info');
  } else if (rawContact === null) {
    contactInfo = null;
    reportFlags.add('null-contact-info');
  } else if (Array.isArray(rawContact)) {
    contactInfo = rawContact.join(', ');
    reportFlags.add('contact-info-list');
  } else contactInfo = rawContact;

  if (report.policies.length === 0) reportFlags.add('no-policies');

  const policies = report.policies.map((entry, index) =>
    normalizePolicy(entry, index, (input.policies as unknown[])[index]),
  );
  const seenDomains = new Set<string>();
  for (const p of policies) {
    if (seenDomains.has(p.policyDomain)) p.flags.push('overlapping-policy-entries');
    seenDomains.add(p.policyDomain);
  }
  for (const p of policies) {
    for (const f of p.flags) reportFlags.add(f);
    for (const d of p.details) for (const f of d.flags) reportFlags.add(f);
  }

  const extra = extraKeys(report, KNOWN_REPORT_KEYS, input);
  const dateRangeExtra = extraKeys(dateRange, KNOWN_DATE_RANGE_KEYS, input['date-range']);
  if (Object.keys(dateRangeExtra).length > 0) extra['date-range'] = dateRangeExtra;
  if (Object.keys(extra).length > 0) reportFlags.add('unknown-keys');

  // Unknown keys are kept as they came, so only there can arbitrary depth hide (the known fields are validated).
  if (
    valueDepthExceeds(extra) ||
    policies.some((p) => valueDepthExceeds(p.extra) || p.details.some((d) => valueDepthExceeds(d.extra)))
  ) {
    throw new ReportRejectedError('json-too-deep', `a key the report adds nests more than ${MAX_JSON_DEPTH} deep`);
  }

  const organization = report['organization-name'];
  const reportId = report['report-id'];
  return {
    reportKey: reportKeyOf(organization, reportId, start.value, end.value),
    organization,
    reportId,
    contactInfo,
    start: start.value,
    end: end.value,
    startRaw: String(dateRange['start-datetime']),
    endRaw: String(dateRange['end-datetime']),
    policies,
    flags: [...reportFlags].sort(),
    extra,
  };
}

/** Counts sent as numeric strings (seen from hand-rolled reporters); validation turns them into numbers. */
function hasCountAsString(policies: unknown): boolean {
  if (!Array.isArray(policies)) return false;
  for (const entry of policies) {
    if (!isPlainObject(entry)) continue;
    if (isPlainObject(entry.summary) && Object.values(entry.summary).some((v) => typeof v === 'string')) return true;
    const details: unknown = entry['failure-details'];
    if (!Array.isArray(details)) continue;
    for (const d of details) if (isPlainObject(d) && typeof d['failed-session-count'] === 'string') return true;
  }
  return false;
}

function listOf(v: Array<string | number> | string | null | undefined, flags: Set<string>, what: string): string[] {
  if (v === undefined || v === null) return [];
  if (typeof v === 'string') {
    flags.add(`${what}-not-a-list`);
    return [v];
  }
  return v.map(String);
}

function normalizePolicy(entry: WirePolicyEntry, index: number, raw: unknown): NormalizedPolicy {
  const flags = new Set<string>();
  const policy = entry.policy;

  const rawType = text(policy['policy-type']);
  let policyType = rawType === null ? '' : rawType.trim().toLowerCase();
  if (rawType === null) flags.add('missing-policy-type');
  else if (!(POLICY_TYPES as readonly string[]).includes(policyType)) {
    flags.add('unknown-policy-type');
    policyType = rawType.trim(); // kept as it came
  }

  const rawDomain = text(policy['policy-domain']);
  let policyDomain = '';
  if (rawDomain === null || rawDomain.trim() === '') flags.add('missing-policy-domain');
  else policyDomain = flagged(rawDomain, normalizeDomain, flags);

  const policyStrings = listOf(policy['policy-string'], flags, 'policy-string').map((s) => s.replace(/\r+$/, ''));
  const mxHosts = listOf(policy['mx-host'], flags, 'mx-host').map((raw) => {
    let s = raw;
    if (/^\s*mx\s*:/i.test(s)) {
      flags.add('mx-host-prefix');
      s = s.replace(/^\s*mx\s*:\s*/i, '');
    }
    return flagged(s, normalizeDomain, flags);
  });

  let stsVersion = '';
  let stsMode = '';
  let stsMaxAge: number | null = null;
  let stsMx: string[] = [];
  let tlsaRecords: string[] = [];
  if (policyType === 'sts' && policyStrings.length > 0) {
    const sts = parseStsPolicy(policyStrings);
    ({ version: stsVersion, mode: stsMode, maxAge: stsMaxAge, mx: stsMx } = sts.value);
    for (const f of sts.flags) flags.add(f);
  } else if (policyType === 'tlsa' && policyStrings.length > 0) {
    const tlsa = parseTlsaPolicy(policyStrings);
    tlsaRecords = tlsa.value;
    for (const f of tlsa.flags) flags.add(f);
  }

  const summary = entry.summary;
  const successful = summary['total-successful-session-count'];
  const failed = summary['total-failure-session-count'];
  if (successful === undefined && failed === undefined) {
    throw new ReportRejectedError('invalid-policy', `policies[${index}].summary has neither session count`);
  }
  if (successful === undefined) flags.add('missing-successful-count');
  if (failed === undefined) flags.add('missing-failure-count');

  const rawDetails = entry['failure-details'];
  if (rawDetails === null) flags.add('null-failure-details');
  const rawList = member(raw, 'failure-details');
  const details = (rawDetails ?? []).map((d, i) =>
    normalizeDetail(d, i, Array.isArray(rawList) ? rawList[i] : undefined),
  );
  const failedSessions = failed ?? 0;
  const detailSum = details.reduce((sum, d) => sum + d.failedSessionCount, 0);
  if (details.length > 0 && detailSum !== failedSessions) flags.add('failure-details-sum-mismatch');
  if (details.length === 0 && failedSessions > 0) flags.add('failures-without-details');

  const extra = extraKeys(entry, KNOWN_ENTRY_KEYS, raw);
  const policyExtra = extraKeys(policy, KNOWN_POLICY_KEYS, member(raw, 'policy'));
  const summaryExtra = extraKeys(summary, KNOWN_SUMMARY_KEYS, member(raw, 'summary'));
  if (Object.keys(policyExtra).length > 0) extra.policy = policyExtra;
  if (Object.keys(summaryExtra).length > 0) extra.summary = summaryExtra;
  if (Object.keys(extra).length > 0) flags.add('unknown-keys');

  return {
    index,
    policyType,
    policyDomain,
    policyStrings,
    mxHosts,
    stsVersion,
    stsMode,
    stsMaxAge,
    stsMx,
    tlsaRecords,
    successfulSessions: successful ?? 0,
    failedSessions,
    details,
    flags: [...flags].sort(),
    extra,
  };
}

function normalizeDetail(detail: WireFailureDetail, index: number, raw: unknown): NormalizedFailureDetail {
  const flags = new Set<string>();
  const rawType = text(detail['result-type']);
  let resultType = rawType?.trim() ?? '';
  if (rawType === null) flags.add('missing-result-type');
  else if (!(RESULT_TYPES as readonly string[]).includes(resultType.toLowerCase())) flags.add('unknown-result-type');
  else resultType = resultType.toLowerCase();

  const count = detail['failed-session-count'];
  if (count === undefined) flags.add('missing-failed-session-count');

  const extra = extraKeys(detail, KNOWN_DETAIL_KEYS, raw);
  if (Object.keys(extra).length > 0) flags.add('unknown-keys');
  return {
    index,
    resultType,
    failedSessionCount: count ?? 0,
    sendingMtaIp: flagged(detail['sending-mta-ip'], normalizeIp, flags),
    receivingMxHostname: flagged(detail['receiving-mx-hostname'], normalizeDomain, flags),
    receivingMxHelo: text(detail['receiving-mx-helo']),
    receivingIp: flagged(detail['receiving-ip'], normalizeIp, flags),
    additionalInformation: text(detail['additional-information']),
    failureReasonCode: text(detail['failure-reason-code']),
    flags: flags.size === 0 ? [] : [...flags].sort(),
    extra,
  };
}

/**
 * A value in canonical form, its flags added to `flags`. A module-level function, not a closure per detail: the
 * tsx/esbuild keep-names helper turned each such closure into an Object.defineProperty call (a tenth of the CPU).
 */
function flagged(v: string, normalize: (s: string) => Flagged<string>, flags: Set<string>): string;
function flagged(
  v: string | number | null | undefined,
  normalize: (s: string) => Flagged<string>,
  flags: Set<string>,
): string | null;
function flagged(
  v: string | number | null | undefined,
  normalize: (s: string) => Flagged<string>,
  flags: Set<string>,
): string | null {
  const s = text(v);
  if (s === null) return null;
  const n = normalize(s);
  for (const f of n.flags) flags.add(f);
  return n.value;
}
