// A processed job → the rows it adds to each table.
// crypto.hash: one call, no Hash object (Node 20.12+); the worker hashes every body and every report text.
import { hash } from 'node:crypto';
import type { ReportJob } from '../../schemas/job.ts';
import { emptyTableRows, type ReceiptRow, type TableRows } from '../../schemas/rows.ts';
import type { ReportRejectedError } from '../common/errors.ts';
import { NORMALIZER_VERSION, type NormalizedReport } from './normalize.ts';
import { toClickHouseDate, toClickHouseDateTime } from '../common/sql.ts';
import { copyVersion, trustOf } from './trust.ts';

const json = (v: Record<string, unknown>): string => (Object.keys(v).length === 0 ? '' : JSON.stringify(v));

function receiptBase(
  job: ReportJob,
  body: Buffer,
  now: Date,
  version: number,
): Omit<ReceiptRow, 'outcome' | 'report_key' | 'reject_reason' | 'flags'> {
  const smtp = job.smtp;
  return {
    envelope_from: smtp?.envelopeFrom ?? '',
    envelope_to: smtp?.envelopeTo ?? [],
    helo: smtp?.helo ?? '',
    tls_protocol: smtp?.tlsProtocol ?? '',
    tls_cipher: smtp?.tlsCipher ?? '',
    message_id: smtp?.messageId ?? '',
    subject: smtp?.subject ?? '',
    attachment_name: smtp?.attachmentName ?? '',
    dkim_result: smtp?.dkim.result ?? '',
    dkim_domain: smtp?.dkim.signingDomain ?? '',
    dkim_selector: smtp?.dkim.selector ?? '',
    dkim_aligned: smtp?.dkim.submitterAligned ? 1 : 0,
    dkim_key_tlsrpt: smtp?.dkim.keyAllowsTlsrpt ? 1 : 0,
    receipt_id: job.receiptId,
    received_at: toClickHouseDateTime(new Date(job.receivedAt)),
    processed_at: toClickHouseDateTime(now),
    channel: job.channel,
    remote_address: job.remoteAddress,
    user_agent: job.userAgent,
    content_type: job.contentType,
    content_encoding: job.contentEncoding,
    path: job.path,
    body_bytes: body.length,
    body_sha256: hash('sha256', body, 'hex'),
    meta: json({ ...job.meta, ...(smtp ? { smtp } : {}) }),
    version,
  };
}

/**
 * What a report says, apart from how it is written: each policy's type, domain, strings, MX hosts and session counts,
 * each failure detail's type, count and hosts, in order. Two copies with the same figures are the same report (a
 * re-delivery, another serializer); other figures make a conflict (services/worker/trust.ts).
 */
export function figuresDigest(report: NormalizedReport): string {
  // JSON per entry: no value can pass for another's boundary (a forged copy must not hash like the counted one), and
  // it measured faster than length-prefixed templates. JSON holds no raw newline.
  const lines: string[] = [];
  for (const p of report.policies) {
    lines.push(
      JSON.stringify([
        p.policyType,
        p.policyDomain,
        p.policyStrings,
        p.mxHosts,
        p.successfulSessions,
        p.failedSessions,
      ]),
    );
    for (const d of p.details)
      lines.push(
        JSON.stringify([
          d.resultType,
          d.failedSessionCount,
          d.sendingMtaIp,
          d.receivingMxHostname,
          d.receivingMxHelo,
          d.receivingIp,
          d.failureReasonCode,
        ]),
      );
  }
  return hash('sha256', lines.join('\n'), 'hex');
}

export function storedRows(
  job: ReportJob,
  body: Buffer,
  report: NormalizedReport,
  rawText: string,
  extraFlags: string[],
  now: Date,
): TableRows {
  // The report's rows are written under its copy's rank (services/worker/trust.ts); the receipt's under the time of
  // processing, as every receipt (its latest outcome is the one kept).
  const trust = trustOf(job);
  const version = copyVersion(trust, Date.parse(job.receivedAt), NORMALIZER_VERSION);
  const rows = emptyTableRows();
  const day = toClickHouseDate(report.start);
  const start = toClickHouseDateTime(report.start);
  const end = toClickHouseDateTime(report.end);
  const receipt = receiptBase(job, body, now, now.getTime());
  const flags = [...new Set([...report.flags, ...extraFlags])].sort();
  const jsonSha256 = hash('sha256', rawText, 'hex');
  rows.reports.push({
    report_key: report.reportKey,
    organization: report.organization,
    report_id: report.reportId,
    contact_info: report.contactInfo,
    start_time: start,
    end_time: end,
    start_raw: report.startRaw,
    end_raw: report.endRaw,
    day,
    policy_count: report.policies.length,
    flags,
    extra: json(report.extra),
    json_sha256: jsonSha256,
    receipt_id: job.receiptId,
    received_at: receipt.received_at,
    channel: job.channel,
    dkim_result: receipt.dkim_result,
    dkim_domain: receipt.dkim_domain,
    dkim_aligned: receipt.dkim_aligned,
    normalizer_version: NORMALIZER_VERSION,
    version,
  });
  for (const p of report.policies) {
    rows.policy_results.push({
      report_key: report.reportKey,
      policy_index: p.index,
      day,
      organization: report.organization,
      report_id: report.reportId,
      start_time: start,
      end_time: end,
      policy_type: p.policyType,
      policy_domain: p.policyDomain,
      policy_strings: p.policyStrings,
      mx_hosts: p.mxHosts,
      sts_version: p.stsVersion,
      sts_mode: p.stsMode,
      sts_max_age: p.stsMaxAge,
      sts_mx: p.stsMx,
      tlsa_records: p.tlsaRecords,
      successful_sessions: p.successfulSessions,
      failed_sessions: p.failedSessions,
      failure_detail_count: p.details.length,
      flags: p.flags,
      extra: json(p.extra),
      version,
    });
    for (const d of p.details) {
      rows.failure_details.push({
        report_key: report.reportKey,
        policy_index: p.index,
        detail_index: d.index,
        day,
        organization: report.organization,
        report_id: report.reportId,
        policy_type: p.policyType,
        policy_domain: p.policyDomain,
        result_type: d.resultType,
        failed_session_count: d.failedSessionCount,
        sending_mta_ip: d.sendingMtaIp,
        receiving_mx_hostname: d.receivingMxHostname,
        receiving_mx_helo: d.receivingMxHelo,
        receiving_ip: d.receivingIp,
        additional_information: d.additionalInformation,
        failure_reason_code: d.failureReasonCode,
        flags: d.flags,
        extra: json(d.extra),
        version,
      });
    }
  }
  rows.raw_reports.push({
    report_key: report.reportKey,
    json_sha256: jsonSha256,
    day,
    receipt_id: job.receiptId,
    received_at: receipt.received_at,
    raw_json: rawText,
    version,
  });
  rows.receipts.push({ ...receipt, outcome: 'stored', report_key: report.reportKey, reject_reason: '', flags });
  const total = (k: 'successfulSessions' | 'failedSessions') => report.policies.reduce((n, p) => n + p[k], 0);
  rows.report_copies.push({
    day,
    report_key: report.reportKey,
    receipt_id: job.receiptId,
    json_sha256: jsonSha256,
    figures_sha256: figuresDigest(report),
    trust,
    received_at: receipt.received_at,
    channel: job.channel,
    remote_address: job.remoteAddress,
    dkim_result: receipt.dkim_result,
    dkim_domain: receipt.dkim_domain,
    dkim_aligned: receipt.dkim_aligned,
    organization: report.organization,
    report_id: report.reportId,
    policy_count: report.policies.length,
    successful_sessions: total('successfulSessions'),
    failed_sessions: total('failedSessions'),
    normalizer_version: NORMALIZER_VERSION,
    chosen_by: job.chosen?.by ?? '',
    version,
  });
  // The content the reads see: the report's text and the normalizer that made its rows (NORMALIZER_VERSION is bumped
  // whenever they change: test/unit/normalizer-version.test.ts). Hashing the rows themselves cost a third of the
  // worker's time per report.
  rows.report_fingerprints.push({
    day,
    report_key: report.reportKey,
    fingerprint: `${NORMALIZER_VERSION}:${jsonSha256}`,
    version,
  });
  return rows;
}

/**
 * The rows of a reject. Its raw body is kept whole when it is at most `maxRawBytes` or the reject is our bug
 * (internal-error, to replay once fixed); otherwise its first `maxRawBytes`, and the detail says so (junk bodies
 * of 10 MiB each filled the disk before).
 */
export function rejectedRows(
  job: ReportJob,
  body: Buffer,
  error: ReportRejectedError,
  now: Date,
  maxRawBytes = Infinity,
): TableRows {
  const version = now.getTime();
  const whole = body.length <= maxRawBytes || error.reason === 'internal-error';
  const rows = emptyTableRows();
  const receipt = receiptBase(job, body, now, version);
  // The reject row repeats the receipt's fields, under the same names, from the one place that computes them.
  const { receipt_id, received_at, channel, remote_address, user_agent, content_type, content_encoding, path } =
    receipt;
  rows.rejects.push({
    receipt_id,
    received_at,
    rejected_at: receipt.processed_at,
    channel,
    remote_address,
    user_agent,
    content_type,
    content_encoding,
    path,
    reason: error.reason,
    detail: whole ? error.detail : `${error.detail} [raw body kept: the first ${maxRawBytes} of ${body.length} bytes]`,
    body_bytes: receipt.body_bytes,
    body_sha256: receipt.body_sha256,
    raw_base64: whole ? job.bodyBase64 : body.subarray(0, maxRawBytes).toString('base64'),
    meta: receipt.meta,
    version,
  });
  rows.receipts.push({ ...receipt, outcome: 'rejected', report_key: '', reject_reason: error.reason, flags: [] });
  return rows;
}
