// The TLS-RPT report as it arrives on the wire (RFC 8460 §4), with the deviations real senders produce
// (../shared/docs/RFC8460-NOTES.md §4). Shape and value checks live here; canonical forms are computed by the
// worker's normalizer. Objects are loose: unknown keys pass through and are kept.
import { z } from 'zod';

/** Session counts: non-negative integers JSON can carry exactly (a numeric string is accepted and flagged). */
export const countSchema = z
  .union([z.number(), z.string().regex(/^\s*\d+\s*$/, 'a count must be a whole number')])
  .transform((v) => (typeof v === 'string' ? Number(v.trim()) : v))
  .pipe(
    z
      .number()
      .int('a count must be a whole number')
      .nonnegative('a count cannot be negative')
      .max(Number.MAX_SAFE_INTEGER, 'a count above 2^53 cannot be represented exactly'),
  );

/** Free text that some senders send as a number. */
const textish = z.union([z.string(), z.number()]).transform(String);
const optionalText = z.union([z.string(), z.number(), z.null()]).optional();
const datetimeish = z.union([z.string(), z.number()]);

export const failureDetailSchema = z.looseObject({
  'result-type': optionalText,
  'failed-session-count': countSchema.optional(),
  'sending-mta-ip': optionalText,
  'receiving-mx-hostname': optionalText,
  'receiving-mx-helo': optionalText,
  'receiving-ip': optionalText,
  'additional-information': optionalText,
  'failure-reason-code': optionalText,
});

export const policyEntrySchema = z.looseObject({
  policy: z.looseObject({
    'policy-type': optionalText,
    'policy-string': z.union([z.array(z.union([z.string(), z.number()])), z.string(), z.null()]).optional(),
    'policy-domain': optionalText,
    'mx-host': z.union([z.array(z.union([z.string(), z.number()])), z.string(), z.null()]).optional(),
  }),
  summary: z.looseObject({
    'total-successful-session-count': countSchema.optional(),
    'total-failure-session-count': countSchema.optional(),
  }),
  'failure-details': z.union([z.array(failureDetailSchema), z.null()]).optional(),
});

export const reportSchema = z.looseObject({
  // Key order is the order problems are reported in: the first one names the reject reason.
  'organization-name': textish.pipe(z.string().trim().min(1, 'organization-name is empty')),
  'report-id': textish.pipe(z.string().trim().min(1, 'report-id is empty')),
  'date-range': z.looseObject({
    'start-datetime': datetimeish,
    'end-datetime': datetimeish,
  }),
  'contact-info': z.union([z.string(), z.array(z.string()), z.null()]).optional(),
  // A lone policy object instead of a list is accepted (and flagged) by the normalizer before validation.
  policies: z.array(policyEntrySchema),
});

export type WireReport = z.infer<typeof reportSchema>;
export type WirePolicyEntry = z.infer<typeof policyEntrySchema>;
export type WireFailureDetail = z.infer<typeof failureDetailSchema>;

/** Keys the schema knows at each level; anything else is kept as `extra`. */
export const KNOWN_REPORT_KEYS = new Set(['organization-name', 'date-range', 'contact-info', 'report-id', 'policies']);
export const KNOWN_DATE_RANGE_KEYS = new Set(['start-datetime', 'end-datetime']);
export const KNOWN_ENTRY_KEYS = new Set(['policy', 'summary', 'failure-details']);
export const KNOWN_POLICY_KEYS = new Set(['policy-type', 'policy-string', 'policy-domain', 'mx-host']);
export const KNOWN_SUMMARY_KEYS = new Set(['total-successful-session-count', 'total-failure-session-count']);
export const KNOWN_DETAIL_KEYS = new Set([
  'result-type',
  'failed-session-count',
  'sending-mta-ip',
  'receiving-mx-hostname',
  'receiving-mx-helo',
  'receiving-ip',
  'additional-information',
  'failure-reason-code',
]);

/** Misspelled and draft-era key names seen in real reports, and the RFC name each stands for. */
export const DETAIL_KEY_ALIASES: Record<string, string> = {
  'receiving-mx-host-name': 'receiving-mx-hostname',
  'additional-info-uri': 'additional-information',
  'additional-info': 'additional-information',
  'failure-error-code': 'failure-reason-code',
  'failure-code': 'failure-reason-code',
  'sending-mta-ip-address': 'sending-mta-ip',
  'receiving-ip-address': 'receiving-ip',
};

export const POLICY_TYPES = ['sts', 'tlsa', 'no-policy-found'] as const;

/** RFC 8460 §4.3 result types (an open IANA registry: others are kept as they came, and flagged). */
export const RESULT_TYPES = [
  'starttls-not-supported',
  'certificate-host-mismatch',
  'certificate-expired',
  'certificate-not-trusted',
  'validation-failure',
  'tlsa-invalid',
  'dnssec-invalid',
  'dane-required',
  'sts-policy-fetch-error',
  'sts-policy-invalid',
  'sts-webpki-invalid',
] as const;
