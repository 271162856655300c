/** Machine-readable reasons a report can never be stored. Each becomes a row in the `rejects` table. */
export const REJECT_REASONS = [
  'bad-job-payload',
  'empty-body',
  'bad-gzip',
  'decompressed-too-large',
  'unsupported-archive',
  'not-json',
  // Arrays or objects nested past MAX_JSON_DEPTH (services/common/json-depth.ts); a report nests 5 deep.
  'json-too-deep',
  'not-an-object',
  'missing-organization',
  'missing-report-id',
  'missing-date-range',
  'invalid-date-range',
  'missing-policies',
  'invalid-policy',
  'invalid-count',
  // Past a per-report bound (WORKER_MAX_POLICIES, WORKER_MAX_FAILURE_DETAILS) or a field length bound.
  'too-many-policies',
  'too-many-failure-details',
  'field-too-long',
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
