// The copies of a report (schemas/clickhouse/0010): which one is counted, and the others with other figures
// (conflicts: counted nowhere until an operator chooses one) or the same figures (re-deliveries). An operator's choice
// is queued as a new copy of trust 4 (services/worker/trust.ts), which the worker stores like any report.
import { randomUUID } from 'node:crypto';
import type { ReportJobInput } from '../../schemas/job.ts';
import type { RawReportRow, ReportCopyRow, Stored } from '../../schemas/rows.ts';
import { quoteString as q } from '../common/clickhouse-compat.ts';
import type { Db } from './queries.ts';

const TRUST_NAMES: Record<number, string> = {
  1: 'https-post',
  2: 'mail-without-aligned-dkim',
  3: 'mail-dkim-aligned',
  4: 'operator-choice',
};

export interface ReportCopy {
  receiptId: string;
  /** counted: its figures are the report's; same-figures: another text or delivery of them; conflict: other figures. */
  state: 'counted' | 'same-figures' | 'conflict';
  trust: string;
  receivedAt: string;
  channel: string;
  remoteAddress: string;
  dkimResult: string;
  dkimDomain: string;
  dkimAligned: boolean;
  successfulSessions: number | null;
  failedSessions: number | null;
  policies: number;
  jsonSha256: string;
  chosenBy: string;
}

export type CopyRow = Omit<ReportCopyRow, 'day' | 'report_key' | 'organization' | 'report_id' | 'normalizer_version'>;

/** The copies of the report `key` of `day`, best first (each receipt once). */
export const copyRowsSql = (day: string, key: string): string =>
  `SELECT receipt_id, json_sha256, figures_sha256, trust, toString(received_at) AS received_at, channel,
          remote_address, dkim_result, dkim_domain, dkim_aligned, successful_sessions, failed_sessions, policy_count,
          chosen_by, version
   FROM report_copies WHERE day = toDate(${q(day)}) AND report_key = ${q(key)}
   ORDER BY version DESC, receipt_id LIMIT 1 BY receipt_id LIMIT 1000`;

/**
 * The copies as the report shows them. The counted one is the copy whose rows the reads take: the report's newest
 * version (`counted`, as its reports row says), found by that version, or by its text for a report stored before
 * report_copies (written under another version); copies with its figures are the same report, the others conflicts.
 */
export function reportCopies(rows: CopyRow[], counted: { version: number; sha: string }): ReportCopy[] {
  const countedCopy =
    rows.find((r) => Number(r.version) === Number(counted.version)) ?? rows.find((r) => r.json_sha256 === counted.sha);
  // Copies stored before report_copies carry their text's hash as their figures: the same text is the same report.
  const sameAsCounted = (r: CopyRow): boolean =>
    r.figures_sha256 === countedCopy?.figures_sha256 || r.json_sha256 === countedCopy?.json_sha256;
  return rows.map((r) => ({
    receiptId: r.receipt_id,
    state: r === countedCopy ? 'counted' : sameAsCounted(r) ? 'same-figures' : 'conflict',
    trust: TRUST_NAMES[Number(r.trust)] ?? String(r.trust),
    receivedAt: r.received_at,
    channel: r.channel,
    remoteAddress: r.remote_address,
    dkimResult: r.dkim_result,
    dkimDomain: r.dkim_domain,
    dkimAligned: Number(r.dkim_aligned) === 1,
    successfulSessions: r.successful_sessions === null ? null : Number(r.successful_sessions),
    failedSessions: r.failed_sessions === null ? null : Number(r.failed_sessions),
    policies: Number(r.policy_count),
    jsonSha256: r.json_sha256,
    chosenBy: r.chosen_by,
  }));
}

export class CopyNotFound extends Error {}

/**
 * An operator's choice: the copy `receiptId` of report `key` queued again as a copy of trust 4, whose figures are
 * then counted (until another choice). Its text is read from raw_reports; `enqueue` resolves once the job is in Redis.
 */
export async function chooseCopy(
  db: Db,
  opts: { key: string; receiptId: string; by: string; now: Date },
  enqueue: (job: ReportJobInput) => Promise<void>,
): Promise<{ receiptId: string; queued: string }> {
  const [copy] = await db.rows<Stored<ReportCopyRow, 'day' | 'json_sha256' | 'channel'>>(
    `SELECT toString(day) AS day, json_sha256, channel FROM report_copies
     WHERE report_key = ${q(opts.key)} AND receipt_id = ${q(opts.receiptId)} LIMIT 1`,
  );
  if (!copy) throw new CopyNotFound(`report ${opts.key} has no copy ${opts.receiptId}`);
  const [raw] = await db.rows<Stored<RawReportRow, 'raw_json'>>(
    `SELECT raw_json FROM raw_reports PREWHERE report_key = ${q(opts.key)}
     WHERE day = toDate(${q(copy.day)}) AND json_sha256 = ${q(copy.json_sha256)} LIMIT 1`,
  );
  if (!raw) throw new CopyNotFound(`the text of copy ${opts.receiptId} is no longer kept (RAW_REPORTS_RETENTION_DAYS)`);
  const receiptId = `chosen-${randomUUID()}`;
  await enqueue({
    v: 1,
    receiptId,
    receivedAt: opts.now.toISOString(),
    channel: copy.channel as ReportJobInput['channel'],
    contentType: 'application/tlsrpt+json',
    bodyBase64: Buffer.from(raw.raw_json).toString('base64'),
    chosen: { by: opts.by, copy: opts.receiptId },
    meta: { chosenCopy: opts.receiptId },
  });
  return { receiptId: opts.receiptId, queued: receiptId };
}
