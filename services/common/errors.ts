/** Machine-readable reasons a report can never be stored. Each becomes a row in the `rejects` table. */
export const REJECT_REASONS = [
  'bad-job-payload',
  'empty-body',
  'bad-gzip',
  'decompressed-too-large',
  'unsupported-archive',
  'not-json',
  'not-an-object',
  'missing-organization',
  'missing-report-id',
  'missing-date-range',
  'invalid-date-range',
  'missing-policies',
  'invalid-policy',
  'invalid-count',
  'schema-invalid',
  // SMTP_DKIM_POLICY=require and the mail had no valid DKIM signature by the report's submitter.
  'dkim-required',
  // A bug of ours met this report: it is kept with its raw bytes, to be replayed once fixed.
  'internal-error',
] as const;

export type RejectReason = (typeof REJECT_REASONS)[number];

/** A report that can never succeed, however often it is retried. */
export class ReportRejectedError extends Error {
  override readonly name = 'ReportRejectedError';
  constructor(
    readonly reason: RejectReason,
    readonly detail: string,
  ) {
    super(`${reason}: ${detail}`);
  }
}
