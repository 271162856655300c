// What each flag the normalizer and the receivers raise means, for people reading a report (the dashboard). A flag
// records a quirk the pipeline accepted and worked around; none of them lost data. Data, one entry per flag.

export interface FlagExplanation {
  /** What the sender did. */
  meaning: string;
  /** Who should act, if anyone. */
  impact: 'none' | 'sender' | 'check';
}

export const FLAG_EXPLANATIONS: Record<string, FlagExplanation> = {
  'contact-info-list': { meaning: 'contact-info was a list; its entries were joined.', impact: 'sender' },
  'count-as-string': { meaning: 'A session count was sent as a string ("12"), read as a number.', impact: 'sender' },
  'date-without-time': { meaning: 'A date-time was a bare date; midnight UTC was assumed.', impact: 'sender' },
  'datetime-as-number': { meaning: 'A date-time was a Unix timestamp, not RFC 3339 text.', impact: 'sender' },
  'datetime-without-zone': { meaning: 'A date-time had no time zone; UTC was assumed.', impact: 'sender' },
  'dkim-not-submitter': {
    meaning: 'The mail was DKIM-signed by a domain other than the reporting organization.',
    impact: 'check',
  },
  'domain-trimmed': { meaning: 'A domain had spaces or a trailing dot, removed.', impact: 'none' },
  'double-gzip': { meaning: 'The report was gzip-compressed twice.', impact: 'sender' },
  'end-before-start': { meaning: 'The date range ends before it starts; kept as sent.', impact: 'sender' },
  'failure-details-sum-mismatch': {
    meaning: 'The failure details add up to more or fewer sessions than the summary says (RFC 8460 allows overlap).',
    impact: 'none',
  },
  'failures-without-details': {
    meaning: 'Failed sessions were counted but no failure detail says why.',
    impact: 'none',
  },
  'filename-dates-mismatch': {
    meaning: "The attachment's file name names other dates than the report.",
    impact: 'sender',
  },
  'filename-domain-mismatch': {
    meaning: "The attachment's file name names another policy domain than the report.",
    impact: 'sender',
  },
  'filename-submitter-mismatch': {
    meaning: "The attachment's file name names another submitter than the mail's sender.",
    impact: 'sender',
  },
  'gzip-trailing-garbage': { meaning: 'Bytes followed the end of the gzip stream; ignored.', impact: 'sender' },
  'header-domain-mismatch': {
    meaning: 'The TLS-Report-Domain header names another domain than the report.',
    impact: 'sender',
  },
  'idn-converted': { meaning: 'An internationalized domain name was converted to its A-label form.', impact: 'none' },
  'invalid-domain': { meaning: 'A domain is not a valid host name; kept as sent.', impact: 'sender' },
  'invalid-utf8': { meaning: 'The text had invalid UTF-8 bytes, replaced with U+FFFD.', impact: 'sender' },
  'leap-second': { meaning: 'A time had second 60; read as the next second.', impact: 'none' },
  'legacy-key-name': { meaning: 'A field used a pre-RFC key name, read as the RFC name.', impact: 'sender' },
  'lone-surrogate': { meaning: 'The JSON had an unpaired UTF-16 surrogate escape, replaced.', impact: 'sender' },
  'missing-contact-info': { meaning: 'The report has no contact-info.', impact: 'sender' },
  'missing-failed-session-count': {
    meaning: 'A failure detail has no failed-session-count; 0 was stored.',
    impact: 'sender',
  },
  'missing-failure-count': { meaning: 'A summary has no failure count; 0 was stored.', impact: 'sender' },
  'missing-policy-domain': { meaning: 'A policy entry has no policy-domain.', impact: 'sender' },
  'missing-policy-type': { meaning: 'A policy entry has no policy-type.', impact: 'sender' },
  'missing-result-type': { meaning: 'A failure detail has no result-type.', impact: 'sender' },
  'missing-successful-count': { meaning: 'A summary has no success count; 0 was stored.', impact: 'sender' },
  'missing-tls-report-headers': {
    meaning: 'The mail lacks the TLS-Report-Domain / TLS-Report-Submitter headers RFC 8460 asks for.',
    impact: 'sender',
  },
  'multi-day-range': { meaning: 'The report covers more than one day (over 25 hours).', impact: 'none' },
  'mx-host-prefix': { meaning: 'An mx-host had a "*." or similar prefix form; read as a pattern.', impact: 'none' },
  'no-policies': { meaning: 'The report lists no policies.', impact: 'sender' },
  'null-contact-info': { meaning: 'contact-info was null.', impact: 'sender' },
  'null-failure-details': { meaning: 'failure-details was null instead of a list.', impact: 'sender' },
  'overlapping-policy-entries': {
    meaning:
      'Several policy entries of one domain count the same sessions (Microsoft sends sts and tlsa); counted once.',
    impact: 'none',
  },
  'policies-not-a-list': { meaning: 'policies was a single object, not a list.', impact: 'sender' },
  'report-in-text-body': { meaning: 'The report was in the mail body, not an attachment.', impact: 'sender' },
  'sts-invalid-max-age': { meaning: "The reported policy's max_age is not a valid number.", impact: 'check' },
  'sts-policy-unknown-key': {
    meaning: 'The reported MTA-STS policy has a key RFC 8461 does not define.',
    impact: 'check',
  },
  'sts-policy-unparsed-line': { meaning: 'A line of the reported MTA-STS policy could not be read.', impact: 'check' },
  'sts-unknown-mode': { meaning: "The reported policy's mode is not enforce, testing or none.", impact: 'check' },
  'subject-domain-mismatch': { meaning: 'The mail subject names another domain than the report.', impact: 'sender' },
  'subject-report-id-mismatch': { meaning: 'The mail subject names another report-id.', impact: 'sender' },
  'tlsa-json-encoded': { meaning: 'TLSA records came as JSON text, decoded.', impact: 'sender' },
  'tlsa-unparsed-record': { meaning: 'A TLSA record in the policy could not be read; kept as sent.', impact: 'check' },
  'unknown-keys': { meaning: 'The report has fields RFC 8460 does not define; kept in `extra`.', impact: 'none' },
  'unknown-policy-type': { meaning: 'A policy-type other than sts, tlsa or no-policy-found.', impact: 'sender' },
  'unknown-result-type': { meaning: 'A result-type outside the RFC 8460 registry.', impact: 'sender' },
  'unregistered-attachment-type': {
    meaning: 'The attachment had a media type other than application/tlsrpt+gzip or +json.',
    impact: 'sender',
  },
  utf16: { meaning: 'The report was UTF-16 text, converted.', impact: 'sender' },
  'utf8-bom': { meaning: 'The text began with a UTF-8 byte order mark, removed.', impact: 'none' },
  'zip-attachment': { meaning: 'The report came in a zip archive, not gzip.', impact: 'sender' },
};

/** A flag's explanation; `dkim-<result>` and `<field>-not-a-list` are families. */
export function explainFlag(flag: string): FlagExplanation {
  const known = FLAG_EXPLANATIONS[flag];
  if (known && Object.hasOwn(FLAG_EXPLANATIONS, flag)) return known;
  const dkim = /^dkim-(.+)$/.exec(flag);
  if (dkim) return { meaning: `The mail's DKIM verdict was "${dkim[1]}", not pass.`, impact: 'check' };
  const list = /^(.+)-not-a-list$/.exec(flag);
  if (list) return { meaning: `${list[1]} was a single value, not a list; read as a list of one.`, impact: 'sender' };
  return { meaning: 'A flag this version does not describe.', impact: 'check' };
}
