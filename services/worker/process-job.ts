// One queued receipt → the rows it adds. Pure and synchronous: no I/O, so it is tested without services.
import { CHANNELS, reportJobSchema, type ReportJob } from '../../schemas/job.ts';
import type { TableRows } from '../../schemas/rows.ts';
import { ReportRejectedError } from '../common/errors.ts';
import { decodeReport } from './decode.ts';
import { mailMismatchFlags } from './mail-checks.ts';
import { normalizeReport, type ReportLimits } from './normalize.ts';
import { rejectedRows, storedRows } from './rows.ts';

export type ProcessResult =
  | { outcome: 'stored'; reportKey: string; flags: string[]; rows: TableRows }
  | { outcome: 'rejected'; reason: string; detail: string; rows: TableRows };

export interface ProcessOptions {
  maxDecompressedBytes: number;
  /** Per-report bounds; DEFAULT_REPORT_LIMITS when not given. */
  limits?: ReportLimits;
  /** A reject keeps at most this much of its raw body (REJECT_MAX_RAW_BYTES); all of it when not given. */
  maxRejectRawBytes?: number;
}

/** A job whose payload is not even ours still becomes a reject row, with whatever it carried. */
function salvage(data: unknown, jobId: string): ReportJob {
  const d = (typeof data === 'object' && data !== null ? data : {}) as Record<string, unknown>;
  const str = (v: unknown): string => (typeof v === 'string' ? v : '');
  const receivedAt = str(d.receivedAt);
  return {
    v: 1,
    receiptId: str(d.receiptId) || jobId,
    receivedAt: Number.isNaN(Date.parse(receivedAt)) ? new Date().toISOString() : receivedAt,
    channel: (CHANNELS as readonly unknown[]).includes(d.channel) ? (d.channel as ReportJob['channel']) : 'https',
    remoteAddress: str(d.remoteAddress),
    userAgent: str(d.userAgent),
    contentType: str(d.contentType),
    contentEncoding: str(d.contentEncoding),
    path: str(d.path),
    bodyBase64: str(d.bodyBase64),
    smtp: undefined,
    meta: {},
  };
}

export function processReportJob(
  data: unknown,
  jobId: string,
  options: ProcessOptions,
  now = new Date(),
): ProcessResult {
  const parsedJob = reportJobSchema.safeParse(data);
  if (!parsedJob.success) {
    const job = salvage(data, jobId);
    const error = new ReportRejectedError(
      'bad-job-payload',
      parsedJob.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '),
    );
    return {
      outcome: 'rejected',
      reason: error.reason,
      detail: error.detail,
      rows: rejectedRows(job, Buffer.from(job.bodyBase64, 'base64'), error, now, options.maxRejectRawBytes),
    };
  }
  const job = parsedJob.data;
  const body = Buffer.from(job.bodyBase64, 'base64');
  try {
    const smtp = job.smtp;
    if (smtp?.dkimPolicy === 'require' && !(smtp.dkim.result === 'pass' && smtp.dkim.submitterAligned)) {
      const by = smtp.dkim.signingDomain ? ` by ${smtp.dkim.signingDomain}` : '';
      const why = smtp.dkim.comment ? `: ${smtp.dkim.comment}` : '';
      throw new ReportRejectedError(
        'dkim-required',
        `no valid DKIM signature by the submitter (${smtp.dkim.result}${by}${why})`,
      );
    }
    const decoded = decodeReport(body, options.maxDecompressedBytes);
    const report = normalizeReport(decoded.json, options.limits);
    const flags = smtp ? [...decoded.flags, ...mailMismatchFlags(smtp, report)] : decoded.flags;
    const rows = storedRows(job, body, report, decoded.text, flags, now);
    return { outcome: 'stored', reportKey: report.reportKey, flags: rows.reports[0]?.flags ?? [], rows };
  } catch (err) {
    const error =
      err instanceof ReportRejectedError
        ? err
        : new ReportRejectedError('internal-error', err instanceof Error ? `${err.name}: ${err.message}` : String(err));
    return {
      outcome: 'rejected',
      reason: error.reason,
      detail: error.detail,
      rows: rejectedRows(job, body, error, now, options.maxRejectRawBytes),
    };
  }
}
