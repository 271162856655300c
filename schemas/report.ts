// The TLS-RPT report as it arrives on the wire (RFC 8460 §4), with the deviations real senders produce
// (docs/rfc8460-notes.md §4). Shape and value checks live here; canonical forms are computed by the
// worker's normalizer. Objects are loose: unknown keys pass through and are kept.
import { z } from 'zod';

/**
 * The largest session count one entry may carry: 2^32 - 1, more than any reporter sees for one policy in a day.
 * Sums of such counts in ClickHouse's UInt64 cannot wrap (it would take 2^32 entries), and stay exact in JSON
 * (below 2^53) up to two million entries at the maximum.
 */
export const MAX_SESSION_COUNT = 4_294_967_295;

/**
 * Longest organization-name, report-id, policy-type and policy-domain: they are copied into every row of the
 * report, so their length multiplies (a 10 MiB name in 10 KB of gzip made 860 MB of rows).
 */
export const MAX_COPIED_FIELD_LENGTH = 1024;

/** Session counts: non-negative integers up to MAX_SESSION_COUNT (a numeric string is accepted and flagged). */
export const countSchema = z
  .union([z.number(), z.string().regex(/^\s*\d+\s*$/, 'a count must be a whole number')])
  .transform((v) => (typeof v === 'string' ? Number(v.trim()) : v))
  .pipe(
    z
      .number()
      .int('a count must be a whole number')
      .nonnegative('a count cannot be negative')
      .max(MAX_SESSION_COUNT, `a count above ${MAX_SESSION_COUNT} is not a real session count`),
  );

/** Free text that some senders send as a number. */
const textish = z.union([z.string(), z.number()]).transform(String);
const optionalText = z.union([z.string(), z.number(), z.null()]).optional();
const tooLong = `longer than ${MAX_COPIED_FIELD_LENGTH} characters`;
const copiedText = textish.pipe(z.string().trim().max(MAX_COPIED_FIELD_LENGTH, tooLong));
const optionalCopiedText = z.union([z.string().max(MAX_COPIED_FIELD_LENGTH, tooLong), z.number(), z.null()]).optional();
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
    'policy-type': optionalCopiedText,
    'policy-string': z.union([z.array(z.union([z.string(), z.number()])), z.string(), z.null()]).optional(),
    'policy-domain': optionalCopiedText,
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
  'organization-name': copiedText.pipe(z.string().min(1, 'organization-name is empty')),
  'report-id': copiedText.pipe(z.string().min(1, 'report-id is empty')),
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
