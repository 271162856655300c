// The API's SQL. Values reach SQL only as validated, typed parameters (params.ts) or through quoteString.
// Every read names its rows by a table's sort key (a domain and days, a day, a report key: schemas/clickhouse/0005)
// and keeps each report's newest processing, one row per identity (current-rows.ts), so its cost follows the
// question, not the history, and its answer is the *_dedup views' (test/integration/read-paths.test.ts): no
// duplicate ever counts.
import { copyRowsSql, reportCopies, type CopyRow } from './copies.ts';
import { jsonDepthExceeds } from '../common/json-depth.ts';
import { diagnose, type FailureEvidence } from './diagnosis.ts';
import { checksNear, noteFor } from './posture-join.ts';
import { sqlInteger } from '../common/sql.ts';
import { calendar } from '../common/days.ts';
import { inList, quoteString } from '../common/clickhouse-compat.ts';
import type { Principal } from './auth.ts';
import { FAILURE_DIMENSIONS, encodeCursor } from './params.ts';
import { DETAIL_IDENTITY, currentRows, newestOnly, perReport, twinsOnce } from '../common/current-rows.ts';
import type { Db } from '../common/db.ts';
import type {
  DetailSums,
  FailureDetailRow,
  PolicyResultRow,
  RawReportRow,
  ReceiptRow,
  RejectRow,
  ReportRow,
  SessionSums,
  Stored,
} from '../../schemas/rows.ts';

export { createDb, QueryFailedError, type Db } from '../common/db.ts';

const q = quoteString;

/** `AND column IN (…)` for a token limited to some domains; empty for the others. */
export function domainScope(principal: Principal, column: string): string {
  if (!principal.domains) return '';
  if (principal.domains.size === 0) return ' AND 0';
  return ` AND ${column} IN (${[...principal.domains].map(q).join(', ')})`;
}

const rate = (failed: number, total: number): number => (total === 0 ? 0 : failed / total);

/** Rows fetched with LIMIT n + 1 → the page of n and the cursor of the next page (null on the last). */
function paginate<T>(
  rows: T[],
  limit: number,
  cursorOf: (last: T) => Record<string, string | number>,
): { page: T[]; next: string | null } {
  const page = rows.slice(0, limit);
  const last = page[page.length - 1];
  return { page, next: rows.length > limit && last ? encodeCursor(cursorOf(last)) : null };
}

export interface Range {
  from: string;
  to: string;
}
/** `column` within the range's days (inclusive), as every read by day writes it. */
export const days = (r: Range, column = 'day'): string =>
  `${column} >= toDate(${q(r.from)}) AND ${column} <= toDate(${q(r.to)})`;

export async function listDomains(
  db: Db,
  principal: Principal,
  range: Range,
  threshold: number,
  page: { limit: number; prefix?: string | undefined; cursor?: { domain: string } | undefined } = { limit: 10_000 },
) {
  const filters = [days(range)];
  if (page.prefix) {
    // The bounds let ClickHouse skip to the prefix within each day (domain_days is sorted by day, then domain);
    // no byte of a domain name is 0xFF.
    const p = q(page.prefix);
    filters.push(`policy_domain >= ${p} AND policy_domain < concat(${p}, unhex('FF'))`);
  }
  if (page.cursor) filters.push(`policy_domain > ${q(page.cursor.domain)}`);
  // The page's domains first (from the small domain_days), then the figures of only those.
  const names = await db.rows<Stored<PolicyResultRow, 'policy_domain'>>(
    `SELECT DISTINCT policy_domain FROM domain_days
     WHERE ${filters.join(' AND ')}${domainScope(principal, 'policy_domain')}
     ORDER BY policy_domain LIMIT ${sqlInteger(page.limit + 1)}`,
  );
  const pageNames = names.slice(0, page.limit).map((r) => r.policy_domain);
  const figures = pageNames.length === 0 ? [] : await domainFigures(db, pageNames, range);
  const byName = new Map(figures.map((r) => [r.policy_domain, r]));
  // A domain whose reports were all superseded by versions without it has no figures: left out, the page shorter.
  const rows = pageNames.flatMap((name) => byName.get(name) ?? []);
  const last = pageNames[pageNames.length - 1];
  const next = names.length > page.limit && last ? encodeCursor({ domain: last }) : null;

  const domains = rows.map((r) => {
    const failureRate = rate(r.failed, r.successful + r.failed);
    return {
      domain: r.policy_domain,
      latestDay: r.latest_day,
      successfulSessions: r.successful,
      failedSessions: r.failed,
      reports: r.reports,
      failureRate,
      status: statusOf(r.failed, r.successful, threshold),
    };
  });
  return { domains, next };
}

/** The latest day with reports of each domain in the range, and its figures (sessions counted as in domain_daily). */
async function domainFigures(db: Db, domains: string[], range: Range) {
  const reports = perReport({
    table: 'domain_policies',
    days: days(range),
    domains: `policy_domain IN (${domains.map(q).join(', ')})`,
    by: ['policy_domain'],
    aggregates: ['any(day) AS report_day', 'max(successful_sessions) AS s', 'max(failed_sessions) AS f'],
  });
  return await db.rows<Stored<PolicyResultRow, 'policy_domain'> & SessionSums & { latest_day: string }>(
    `SELECT policy_domain, max(report_day) AS latest_day, argMax(s, report_day) AS successful,
            argMax(f, report_day) AS failed, argMax(reports, report_day) AS reports
     FROM (SELECT policy_domain, report_day, sum(s) AS s, sum(f) AS f, count() AS reports
           FROM (${reports}) GROUP BY policy_domain, report_day)
     GROUP BY policy_domain`,
  );
}

/**
 * Sessions counted once: within one report and domain, the largest count among its policy entries (Microsoft
 * lists the same sessions under an sts and a tlsa entry); across reports, the sum. Per policy type and STS mode
 * the same rule applies within each (type, mode).
 */
/** A domain's status from its sessions: ok without failures, failing above the threshold's rate, else degraded. */
export function statusOf(failed: number, successful: number, threshold: number): 'ok' | 'degraded' | 'failing' {
  if (failed === 0) return 'ok';
  return rate(failed, successful + failed) > threshold ? 'failing' : 'degraded';
}

/** Whether any report (on any day) was about the domain: reads one key range of domain_policies. */
export async function domainKnown(db: Db, domain: string): Promise<boolean> {
  const rows = await db.rows<Stored<PolicyResultRow, 'policy_domain'>>(
    `SELECT policy_domain FROM domain_policies WHERE policy_domain = ${q(domain)} LIMIT 1`,
  );
  return rows.length > 0;
}

export async function domainSummary(db: Db, domain: string, range: Range) {
  const one = `policy_domain = ${q(domain)}`;
  const sessions = ['max(successful_sessions) AS s', 'max(failed_sessions) AS f'];
  // The two figures side by side: each reads the same few rows by the domain's key.
  const [[total], split] = await Promise.all([
    db.rows<SessionSums & { organizations: number }>(
      `SELECT sum(s) AS successful, sum(f) AS failed, count() AS reports, uniqExact(org) AS organizations
       FROM (${perReport({ table: 'domain_policies', days: days(range), domains: one, aggregates: ['any(organization) AS org', ...sessions] })})`,
    ),
    db.rows<Stored<PolicyResultRow, 'policy_type' | 'sts_mode'> & SessionSums>(
      `SELECT policy_type, sts_mode, sum(s) AS successful, sum(f) AS failed, count() AS reports
       FROM (${perReport({ table: 'domain_policies', days: days(range), domains: one, by: ['policy_type', 'sts_mode'], aggregates: sessions })})
       GROUP BY policy_type, sts_mode ORDER BY policy_type, sts_mode`,
    ),
  ]);
  const successful = total?.successful ?? 0;
  const failed = total?.failed ?? 0;
  return {
    domain,
    from: range.from,
    to: range.to,
    successfulSessions: successful,
    failedSessions: failed,
    failureRate: rate(failed, successful + failed),
    reports: total?.reports ?? 0,
    organizations: total?.organizations ?? 0,
    byPolicy: split.map((r) => ({
      policyType: r.policy_type,
      stsMode: r.sts_mode,
      successfulSessions: r.successful,
      failedSessions: r.failed,
      failureRate: rate(r.failed, r.successful + r.failed),
      reports: r.reports,
    })),
  };
}

export async function domainDaily(db: Db, domain: string, range: Range) {
  const reports = perReport({
    table: 'domain_policies',
    days: days(range),
    domains: `policy_domain = ${q(domain)}`,
    aggregates: ['any(day) AS report_day', 'max(successful_sessions) AS s', 'max(failed_sessions) AS f'],
  });
  const rows = await db.rows<
    Stored<PolicyResultRow, 'day' | 'successful_sessions' | 'failed_sessions'> & { reports: number }
  >(
    `SELECT report_day AS day, sum(s) AS successful_sessions, sum(f) AS failed_sessions, count() AS reports
     FROM (${reports}) GROUP BY report_day ORDER BY report_day`,
  );
  const byDay = new Map(rows.map((r) => [r.day, r]));
  const series = [];
  // Every day of the range, zeros where no report covered it, so charts and pollers see a continuous series.
  for (const day of calendar(range.from, range.to)) {
    const r = byDay.get(day);
    const s = r?.successful_sessions ?? 0;
    const f = r?.failed_sessions ?? 0;
    series.push({
      day,
      successfulSessions: s,
      failedSessions: f,
      failureRate: rate(f, s + f),
      reports: r?.reports ?? 0,
    });
  }
  return { domain, from: range.from, to: range.to, days: series };
}

/** Top N failure buckets by failed sessions (failure-detail counts, sts and tlsa twins once), the rest as "other". */
export async function failureBreakdown(
  db: Db,
  domain: string,
  range: Range,
  by: keyof typeof FAILURE_DIMENSIONS,
  limit: number,
) {
  const details = `(${twinsOnce(
    currentRows({
      table: 'failure_details',
      identity: DETAIL_IDENTITY,
      columns: ['policy_type', `${FAILURE_DIMENSIONS[by]} AS key`, 'failed_session_count'],
      days: days(range),
      domains: `policy_domain = ${q(domain)}`,
    }),
    ['key'],
  )})`;
  const [top, [total]] = await Promise.all([
    db.rows<DetailSums & { key: string | null; reports: number }>(
      `SELECT key, sum(failed_once) AS failed, sum(details_once) AS details, uniqExact(report_key) AS reports
       FROM ${details} GROUP BY key ORDER BY failed DESC, key LIMIT ${sqlInteger(limit)}`,
    ),
    db.rows<DetailSums>(`SELECT sum(failed_once) AS failed, sum(details_once) AS details FROM ${details}`),
  ]);
  const topFailed = top.reduce((a, r) => a + r.failed, 0);
  const topDetails = top.reduce((a, r) => a + r.details, 0);
  return {
    domain,
    by,
    from: range.from,
    to: range.to,
    totalFailedSessions: total?.failed ?? 0,
    buckets: top.map((r) => ({ key: r.key, failedSessions: r.failed, details: r.details, reports: r.reports })),
    other: { failedSessions: (total?.failed ?? 0) - topFailed, details: (total?.details ?? 0) - topDetails },
  };
}

type ReportListRow = Stored<
  ReportRow,
  | 'report_key'
  | 'day'
  | 'organization'
  | 'report_id'
  | 'start_time'
  | 'end_time'
  | 'policy_count'
  | 'flags'
  | 'channel'
  | 'dkim_result'
>;

/**
 * The order in which reports_dedup (schemas/clickhouse/0004 and 0005) picks a report's delivery: the best DKIM
 * verdict, then the first received, then the greatest receipt id. Fixed width (11 digits), so the text orders as the
 * number.
 */
const DELIVERY_RANK = `concat(toString(multiIf(dkim_result = 'pass' AND dkim_aligned = 1, 5, dkim_result = 'pass', 4,
    dkim_result = 'temperror', 3, dkim_result != '', 2, 1) * 10000000000 + (4294967295 - toUInt32(received_at))),
  receipt_id)`;

/** `columns` of each report's delivery (DELIVERY_RANK) among its stored receipts, for `report_key ${keys}`. */
const deliverySql = (keys: string, columns: string[]): string =>
  `SELECT report_key, ${columns.map((c) => `argMax(${c}, delivery_rank) AS ${c}`).join(', ')}
   FROM (SELECT report_key, ${columns.join(', ')}, ${DELIVERY_RANK} AS delivery_rank
         FROM receipts_by_report WHERE report_key ${keys} AND outcome = 'stored')
   GROUP BY report_key`;

type ReportRef = Stored<ReportRow, 'day' | 'report_key'>;

/**
 * The next `limit + 1` reports (newest day first, then key), as (day, key). For a domain (or a token's domains),
 * from that domain's current rows; otherwise from report_days, in windows of 1, 2, 4 … days going back from the
 * cursor, so a page reads about the days it shows and not the whole range.
 */
async function reportKeysPage(
  db: Db,
  principal: Principal,
  range: Range,
  opts: { domain?: string | undefined; limit: number; cursor?: { day: string; key: string } | undefined },
): Promise<ReportRef[]> {
  const cursor = opts.cursor
    ? ` AND (day < toDate(${q(opts.cursor.day)}) OR (day = toDate(${q(opts.cursor.day)}) AND report_key < ${q(opts.cursor.key)}))`
    : '';
  // GROUP BY, not DISTINCT: over a join, ClickHouse 18.16's DISTINCT kept a report once per version.
  const pageOf = (source: string, where: string): Promise<ReportRef[]> =>
    db.rows<ReportRef>(
      `SELECT day, report_key FROM ${source} WHERE ${where}${cursor}
       GROUP BY day, report_key ORDER BY day DESC, report_key DESC LIMIT ${sqlInteger(opts.limit + 1)}`,
    );
  if (opts.domain || principal.domains) {
    const domain = opts.domain ? ` AND policy_domain = ${q(opts.domain)}` : '';
    // ` AND …` conditions on policy_domain alone: the marks looked up are those of these domains.
    const scope = `${domain}${domainScope(principal, 'policy_domain')}`;
    const newest = newestOnly(days(range), scope.replace(/^ AND /, ''));
    return await pageOf(`domain_policies ${newest.join}`, `${days(range)}${scope} AND ${newest.keep}`);
  }
  const first = Date.parse(`${range.from}T00:00:00Z`);
  let end = Math.min(Date.parse(`${opts.cursor?.day ?? range.to}T00:00:00Z`), Date.parse(`${range.to}T00:00:00Z`));
  const found: ReportRef[] = [];
  for (let span = 1; end >= first && found.length <= opts.limit; span *= 2) {
    const start = Math.max(first, end - (span - 1) * 86400_000);
    const window = { from: new Date(start).toISOString().slice(0, 10), to: new Date(end).toISOString().slice(0, 10) };
    found.push(...(await pageOf('report_days', days(window))));
    end = start - 86400_000;
  }
  return found.slice(0, opts.limit + 1);
}

/**
 * The list's columns for some reports: their newest version in report_days, and the delivery facts (channel, DKIM)
 * chosen as reports_dedup chooses them (DELIVERY_RANK).
 */
async function reportListRows(db: Db, refs: ReportRef[]): Promise<ReportListRow[]> {
  const tuples = refs.map((r) => `(toDate(${q(r.day)}), ${q(r.report_key)})`).join(', ');
  const keys = refs.map((r) => q(r.report_key)).join(', ');
  return await db.rows<ReportListRow>(
    `SELECT report_key, day, organization, report_id, start_time, end_time, policy_count, flags, channel, dkim_result
     FROM (
       SELECT report_key, day, argMax(organization, version) AS organization,
         argMax(report_id, version) AS report_id, argMax(start_time, version) AS start_time,
         argMax(end_time, version) AS end_time, argMax(policy_count, version) AS policy_count,
         argMax(flags, version) AS flags
       FROM report_days WHERE (day, report_key) IN (${tuples}) GROUP BY report_key, day
     ) AS content ANY LEFT JOIN (${deliverySql(`IN (${keys})`, ['channel', 'dkim_result'])}) AS delivery USING report_key`,
  );
}

export async function listReports(
  db: Db,
  principal: Principal,
  range: Range,
  opts: { domain?: string | undefined; limit: number; cursor?: { day: string; key: string } | undefined },
) {
  const keys = await reportKeysPage(db, principal, range, opts);
  const shown = keys.slice(0, opts.limit);
  const rows = shown.length === 0 ? [] : await reportListRows(db, shown);
  const byKey = new Map(rows.map((r) => [r.report_key, r]));
  // A report whose `reports` row is not written yet (its processing is between insert phases) waits for the next call.
  const page = shown.flatMap((k) => byKey.get(k.report_key) ?? []);
  const last = shown[shown.length - 1];
  const next = keys.length > opts.limit && last ? encodeCursor({ day: last.day, key: last.report_key }) : null;
  return {
    reports: page.map((r) => ({
      reportKey: r.report_key,
      day: r.day,
      organization: r.organization,
      reportId: r.report_id,
      start: r.start_time,
      end: r.end_time,
      policies: r.policy_count,
      flags: r.flags,
      channel: r.channel,
      dkim: r.dkim_result,
    })),
    next,
  };
}

/**
 * One report as `reports_dedup` shows it (schemas/clickhouse/0005_*.sql: the newest version's content; the delivery
 * facts of its stored receipt with the best DKIM verdict, then the first received), over only that report's rows:
 * ClickHouse 18.16 does not push a WHERE into a view's GROUP BY, so the view itself would group every report.
 * Deliveries come from receipts_by_report, sorted by report key.
 */
const reportSql = (key: string, day: string): string => `
  SELECT report_key, organization, report_id, contact_info, start_time, end_time, start_raw, end_raw, day,
    policy_count, flags, extra, json_sha256, receipt_id, received_at, channel, dkim_result, dkim_domain,
    dkim_aligned, normalizer_version, latest_version
  FROM (
    SELECT report_key,
      any(organization) AS organization, any(report_id) AS report_id,
      any(contact_info) AS contact_info, any(start_time) AS start_time,
      any(end_time) AS end_time, any(start_raw) AS start_raw,
      any(end_raw) AS end_raw, day, any(policy_count) AS policy_count,
      any(flags) AS flags, any(extra) AS extra, any(json_sha256) AS json_sha256,
      any(normalizer_version) AS normalizer_version, max(version) AS latest_version
    FROM reports WHERE day = ${day} AND report_key = ${key}
      AND version = (SELECT max(version) FROM reports WHERE day = ${day} AND report_key = ${key})
    GROUP BY report_key, day
  ) AS content ANY LEFT JOIN (${deliverySql(`= ${key}`, [
    'receipt_id',
    'received_at',
    'channel',
    'dkim_result',
    'dkim_domain',
    'dkim_aligned',
  ])}) AS delivery USING report_key`;

/** A report's row as reportSql reads it: its newest version's content, its delivery, and that version's number. */
type StoredReport = Omit<ReportRow, 'version'> & { latest_version: number };

/** A delivery of the report, as its page shows it. */
type ReportReceipt = Stored<
  ReceiptRow,
  | 'receipt_id'
  | 'received_at'
  | 'channel'
  | 'remote_address'
  | 'envelope_from'
  | 'message_id'
  | 'attachment_name'
  | 'tls_protocol'
  | 'dkim_result'
  | 'dkim_domain'
  | 'dkim_selector'
  | 'dkim_aligned'
  | 'dkim_key_tlsrpt'
  | 'flags'
>;

/**
 * Each signed delivery with why its DKIM verdict is what it is (`dkim_reason`: "no key", "body hash did not
 * verify"): the verifier's comment, kept in the receipt's meta (receipts, by receipt id; the report's page reads
 * at most 1,000).
 */
async function withDkimReasons(
  db: Db,
  receipts: ReportReceipt[],
): Promise<Array<ReportReceipt & { dkim_reason: string }>> {
  const signed = receipts.filter((r) => r.dkim_result !== '' && r.dkim_result !== 'none').map((r) => r.receipt_id);
  const reasons = new Map<string, string>();
  if (signed.length > 0) {
    const rows = await db.rows<Stored<ReceiptRow, 'receipt_id' | 'meta'>>(
      `SELECT receipt_id, meta FROM receipts WHERE receipt_id IN ${inList(signed)} LIMIT 1 BY receipt_id`,
    );
    for (const r of rows) reasons.set(r.receipt_id, dkimReasonOf(r.meta));
  }
  return receipts.map((r) => ({ ...r, dkim_reason: reasons.get(r.receipt_id) ?? '' }));
}

/** The DKIM verifier's comment in a receipt's meta JSON ('' when there is none or the meta is not JSON). */
export function dkimReasonOf(meta: string): string {
  try {
    const m = JSON.parse(meta) as { smtp?: { dkim?: { comment?: unknown } } };
    const c = m.smtp?.dkim?.comment;
    return typeof c === 'string' ? c.slice(0, 500) : '';
  } catch {
    return '';
  }
}

/** The stored text of a report's newest version ('' when larger than MAX_INLINE_RAW_BYTES) and its length. */
type StoredText = Stored<RawReportRow, 'raw_json'> & { bytes: number };

/** Raw JSON larger than this is not inlined in the answer (`rawOmitted` says why). */
export const MAX_INLINE_RAW_BYTES = 5 * 1024 * 1024;

/**
 * One report, read by its day and key alone (never through a view that groups the whole table): the rows of its
 * newest processing. A token limited to some domains sees only the policies, failure details and raw policies of those,
 * and not the delivery fields that name the others (attachment names, message ids).
 */
export async function getReport(
  db: Db,
  principal: Principal,
  key: string,
  opts: { detailLimit: number; detailsAfter?: { policy: number; detail: number } | undefined },
) {
  const k = q(key);
  // Every table is found by the report's day and key (report_keys: the day of each key).
  const [found] = await db.rows<Stored<ReportRow, 'day'>>(
    `SELECT day FROM report_keys WHERE report_key = ${k} LIMIT 1`,
  );
  if (!found) return undefined;
  const day = `toDate(${q(found.day)})`;
  const thisReport = `day = ${day} AND report_key = ${k}`;
  // The policy and detail tables are sorted by domain and day: policy_days (by day and key) names the domains and
  // report_versions the newest version (as for every other read), which find the report's rows by key. All in one
  // round of queries, side by side.
  const where = `policy_domain IN (SELECT policy_domain FROM policy_days WHERE ${thisReport}) AND ${thisReport}
    AND version = (SELECT max(version) FROM report_versions WHERE ${thisReport})`;
  const after = opts.detailsAfter;
  const [[report], receipts, allPolicies, details, [raw], copyRows] = await Promise.all([
    db.rows<StoredReport>(reportSql(k, day)),
    db.rows<ReportReceipt>(
      `SELECT receipt_id, received_at, channel, remote_address, envelope_from, message_id, attachment_name,
              tls_protocol, dkim_result, dkim_domain, dkim_selector, dkim_aligned, dkim_key_tlsrpt, flags
       FROM receipts_by_report WHERE report_key = ${k}
       ORDER BY received_at, receipt_id LIMIT 1 BY receipt_id LIMIT 1000`,
    ),
    db.rows<PolicyResultRow>(
      `SELECT * FROM policy_results WHERE ${where} ORDER BY policy_index LIMIT 1 BY policy_index LIMIT 100000`,
    ),
    db.rows<FailureDetailRow>(
      `SELECT * FROM failure_details WHERE ${where}${domainScope(principal, 'policy_domain')}
         ${after ? `AND (policy_index, detail_index) > (${sqlInteger(after.policy)}, ${sqlInteger(after.detail)})` : ''}
       ORDER BY policy_index, detail_index LIMIT 1 BY policy_index, detail_index
       LIMIT ${sqlInteger(opts.detailLimit + 1)}`,
    ),
    // The text of the newest version (reports.json_sha256 says which of the report's texts that is). PREWHERE by key:
    // otherwise ClickHouse moves `day = …` there, which every row of the partition passes, and reads the texts of a
    // granule (8,192 reports) in every part of the month (22 → 4 ms for a 20-policy report).
    db.rows<StoredText>(
      `SELECT if(length(raw_json) > ${MAX_INLINE_RAW_BYTES}, '', raw_json) AS raw_json, length(raw_json) AS bytes
       FROM raw_reports PREWHERE report_key = ${k} WHERE ${thisReport}
         AND json_sha256 = (SELECT argMax(json_sha256, version) FROM reports WHERE ${thisReport}) LIMIT 1`,
    ),
    db.rows<CopyRow>(copyRowsSql(found.day, key)),
  ]);
  if (!report) return undefined;
  const copies = reportCopies(copyRows, { version: Number(report.latest_version), sha: report.json_sha256 });
  const visible = (domain: string): boolean => !principal.domains || principal.domains.has(domain);
  const policies = allPolicies.filter((p) => visible(p.policy_domain));
  // A token limited to some domains sees a report only when it covers one of them.
  if (policies.length === 0 && principal.domains) return undefined;
  const shared = policies.length < allPolicies.length;
  const { page: detailPage, next: detailsNext } = paginate(details, opts.detailLimit, (last) => ({
    policy: last.policy_index,
    detail: last.detail_index,
  }));
  const rawJson = readStoredJson(raw, visible, shared);
  // Grouped once (Node 20 has no Map.groupBy): a report may have 10,000 policies and a page 5,000 details.
  const detailsOf = new Map<number, typeof detailPage>();
  for (const d of detailPage) {
    const list = detailsOf.get(d.policy_index);
    if (list) list.push(d);
    else detailsOf.set(d.policy_index, [d]);
  }
  // What our live checks found nearest the report's day, for the domains with failures on this page.
  const failing = policies.filter((p) => detailsOf.has(p.policy_index)).map((p) => p.policy_domain);
  const checks = failing.length > 0 ? await checksNear(db, failing, found.day) : new Map<string, never>();
  return {
    report,
    policies: policies.map((p) => ({
      ...p,
      failureDetails: (detailsOf.get(p.policy_index) ?? []).map((d) => {
        const e = evidence(d);
        const posture = noteFor(e, checks.get(p.policy_domain));
        return {
          ...d,
          diagnosis: diagnose(e, { policyDomain: p.policy_domain, organization: report.organization }),
          ...(posture ? { posture } : {}),
        };
      }),
    })),
    failureDetailsNext: detailsNext,
    receipts: (await withDkimReasons(db, receipts)).map((r) =>
      shared ? { ...r, message_id: '', attachment_name: '' } : r,
    ),
    // Every copy received (services/api/copies.ts); a conflict's figures are counted nowhere. A token that sees only
    // some of the report's domains is not shown totals that include the others.
    conflicts: copies.filter((c) => c.state === 'conflict').length,
    copies: shared ? copies.map((c) => ({ ...c, successfulSessions: null, failedSessions: null })) : copies,
    raw: rawJson.value,
    ...(rawJson.omitted ? { rawOmitted: rawJson.omitted } : {}),
  };
}

/** A failure_details row as the diagnosis reads it. */
function evidence(d: FailureDetailRow): FailureEvidence {
  return {
    resultType: d.result_type,
    failedSessionCount: Number(d.failed_session_count),
    receivingMxHostname: d.receiving_mx_hostname,
    receivingIp: d.receiving_ip,
    sendingMtaIp: d.sending_mta_ip,
    failureReasonCode: d.failure_reason_code,
    additionalInformation: d.additional_information,
  };
}

/**
 * The stored report text, read back as hostile as when it arrived: too large or too deep and it is not parsed;
 * for a token limited to some domains, only the policies of those domains.
 */
function readStoredJson(
  raw: StoredText | undefined,
  visible: (domain: string) => boolean,
  shared: boolean,
): { value: unknown; omitted?: string } {
  if (!raw) return { value: null };
  if (raw.bytes > MAX_INLINE_RAW_BYTES) return { value: null, omitted: `the report text is ${raw.bytes} bytes` };
  if (jsonDepthExceeds(raw.raw_json)) return { value: null, omitted: 'the report text nests too deep' };
  let value: unknown;
  try {
    value = JSON.parse(raw.raw_json);
  } catch {
    return { value: null, omitted: 'the stored text is not JSON' };
  }
  if (!shared) return { value };
  const report = value as { policies?: unknown };
  const list = Array.isArray(report.policies) ? report.policies : [report.policies];
  const mine = list.filter((p) => {
    const domain = (p as { policy?: { 'policy-domain'?: unknown } } | null)?.policy?.['policy-domain'];
    return typeof domain === 'string' && visible(domain.trim().toLowerCase().replace(/\.+$/, ''));
  });
  return { value: { ...(value as object), policies: mine } };
}

export async function listRejects(
  db: Db,
  range: Range,
  opts: { limit: number; cursor?: { at: string; id: string } | undefined },
) {
  const dates = `toDate(received_at) >= toDate(${q(range.from)}) AND toDate(received_at) <= toDate(${q(range.to)})`;
  // A receipt stored since (npm run replay-rejects, after a fix) is no longer a reject; its reject row is history.
  // GLOBAL: on a cluster, rejects are sharded by receipt id and a stored receipt goes with its report.
  const filters = [
    dates,
    `receipt_id GLOBAL NOT IN (SELECT receipt_id FROM receipts WHERE outcome = 'stored' AND ${dates})`,
  ];
  if (opts.cursor) {
    const at = `toDateTime(${q(opts.cursor.at)}, 'UTC')`;
    filters.push(`(received_at < ${at} OR (received_at = ${at} AND receipt_id < ${q(opts.cursor.id)}))`);
  }
  const rows = await db.rows<
    Stored<
      RejectRow,
      'receipt_id' | 'received_at' | 'channel' | 'reason' | 'detail' | 'remote_address' | 'content_type' | 'body_bytes'
    >
  >(
    // A reject row written twice (a retried batch) is one reject: LIMIT 1 BY receipt_id.
    `SELECT receipt_id, received_at, channel, reason, detail, remote_address, content_type, body_bytes
     FROM rejects WHERE ${filters.join(' AND ')}
     ORDER BY received_at DESC, receipt_id DESC LIMIT 1 BY receipt_id LIMIT ${sqlInteger(opts.limit + 1)}`,
  );
  const { page, next } = paginate(rows, opts.limit, (last) => ({ at: last.received_at, id: last.receipt_id }));
  return {
    rejects: page.map((r) => ({
      receiptId: r.receipt_id,
      receivedAt: r.received_at,
      channel: r.channel,
      reason: r.reason,
      detail: r.detail,
      remoteAddress: r.remote_address,
      contentType: r.content_type,
      bytes: r.body_bytes,
    })),
    next,
  };
}
