// What a reported failure means and how to fix it: one entry per RFC 8460 result type (and the summary's
// no-policy-found), and the free-text failure-reason-codes real senders use, mapped to canonical causes. Data, not
// scattered strings; `diagnose` renders an entry with the evidence of one failure detail. Values from reports are
// hostile: only a well-formed host name or IP address is ever put into a suggested command.
import { isIP } from 'node:net';
import { plural } from './ui/html.ts';

/** Whose side the failure is on, as far as the report can tell. */
export type Fault = 'your-mx' | 'your-policy-host' | 'your-dns' | 'your-policy' | 'sender' | 'unclear';

export interface Entry {
  title: string;
  /** What happened, in one or two sentences. */
  meaning: string;
  fault: Fault;
  causes: string[];
  /** Commands to check it yourself; {mx}, {domain} and {ip} are filled from the report where it is safe. */
  checks: string[];
  fix: string[];
}

const OPENSSL_MX =
  'openssl s_client -starttls smtp -connect {mx}:25 -servername {mx} -verify_hostname {mx} -verify_return_error </dev/null';
/** Without -verify_return_error: the handshake completes on a bad certificate, so the certificate can be read. */
const OPENSSL_MX_CERT = 'openssl s_client -starttls smtp -connect {mx}:25 -servername {mx} </dev/null 2>/dev/null';
const POLICY_FETCH = 'curl -sv --max-time 10 https://mta-sts.{domain}/.well-known/mta-sts.txt';

export const RESULT_TYPE_DIAGNOSES = {
  'starttls-not-supported': {
    title: 'STARTTLS not offered',
    meaning:
      'The receiving MX did not offer STARTTLS (or the TLS handshake could not start), so the sender could not encrypt the session.',
    fault: 'your-mx',
    causes: [
      'STARTTLS is disabled or not configured on this MX',
      'a firewall or "SMTP fixup" middlebox strips STARTTLS from the EHLO reply',
      'the MX offers STARTTLS but has no certificate or key loaded',
    ],
    checks: ['swaks --server {mx} --quit-after EHLO', OPENSSL_MX],
    fix: [
      'enable STARTTLS with a valid certificate on every MX',
      'disable SMTP inspection on firewalls in front of the MX',
    ],
  },
  'certificate-host-mismatch': {
    title: 'certificate name does not match the MX',
    meaning:
      "The MX's certificate does not cover the host name the sender connected to (the MX name from DNS or the policy).",
    fault: 'your-mx',
    causes: [
      'the certificate was issued for another name (a default or load-balancer certificate)',
      'a new MX host was added without adding it to the certificate',
      'the MX serves a different certificate depending on SNI',
    ],
    checks: [OPENSSL_MX],
    fix: ['issue a certificate whose subjectAltName covers every MX host name listed in DNS and in the policy'],
  },
  'certificate-expired': {
    title: 'certificate expired',
    meaning: "The MX's certificate (or one in its chain) was past its expiry date when the sender connected.",
    fault: 'your-mx',
    causes: [
      'automatic renewal failed or the renewed certificate was not reloaded',
      'an intermediate in the chain expired',
    ],
    checks: [`${OPENSSL_MX_CERT} | openssl x509 -noout -subject -dates`],
    fix: ['renew the certificate and reload the MTA; monitor expiry (renew at least 14 days before)'],
  },
  'certificate-not-trusted': {
    title: 'certificate not trusted',
    meaning: "The sender could not build a chain from the MX's certificate to a trusted root.",
    fault: 'your-mx',
    causes: [
      'the intermediate certificates are not sent (incomplete chain)',
      'a self-signed or private-CA certificate',
      'the chain is sent in the wrong order',
    ],
    checks: ['openssl s_client -starttls smtp -connect {mx}:25 -servername {mx} -showcerts </dev/null'],
    fix: ['serve the full chain (leaf and intermediates) from a public CA'],
  },
  'validation-failure': {
    title: 'validation failed',
    meaning:
      'A general failure to validate the MX or its certificate, for a reason none of the other result types names; the failure-reason-code often says more.',
    fault: 'unclear',
    causes: [
      'certificate chain or name problems the sender does not classify',
      'an MX host not matching the policy mx patterns',
    ],
    checks: [OPENSSL_MX, 'dig +short MX {domain}'],
    fix: ['check the certificate chain and name, and that every MX matches an mx: line of the MTA-STS policy'],
  },
  'tlsa-invalid': {
    title: 'TLSA record invalid',
    meaning:
      'The DANE TLSA record for the MX could not be used: it is malformed or matches no certificate the MX presents.',
    fault: 'your-dns',
    causes: ['the certificate or key changed without updating the TLSA record', 'a malformed TLSA record'],
    checks: ['dig +dnssec +short TLSA _25._tcp.{mx}', OPENSSL_MX],
    fix: ['publish TLSA records for the new key before rolling it (3 1 1 pins the key and survives renewals)'],
  },
  'dnssec-invalid': {
    title: 'DNSSEC validation failed',
    meaning: 'The DNSSEC signatures for the MX or its TLSA records did not validate, so DANE could not be applied.',
    fault: 'your-dns',
    causes: [
      'expired RRSIGs',
      'a broken chain of trust (DS record at the parent does not match)',
      'a key rollover gone wrong',
    ],
    checks: ['delv @1.1.1.1 TLSA _25._tcp.{mx}', 'dig +dnssec DS {domain}'],
    fix: ['re-sign the zone and check the DS record at the registrar'],
  },
  'dane-required': {
    title: 'DANE required but unusable',
    meaning: 'The sender requires DANE for this destination, but no usable TLSA records were found.',
    fault: 'your-dns',
    causes: ['TLSA records removed while DNSSEC is on', 'the MX host name is in an unsigned zone'],
    checks: ['dig +dnssec +short TLSA _25._tcp.{mx}'],
    fix: ['publish TLSA records in a DNSSEC-signed zone, or remove the DANE requirement'],
  },
  'sts-policy-fetch-error': {
    title: 'MTA-STS policy could not be fetched',
    meaning:
      'The sender could not retrieve https://mta-sts.<domain>/.well-known/mta-sts.txt (DNS, connection, TLS or HTTP failure).',
    fault: 'your-policy-host',
    causes: [
      'the policy host has no DNS record, or it does not answer on 443',
      'the policy file is missing (HTTP 404) or the server errors (5xx)',
      'a redirect (not allowed by RFC 8461) or a timeout',
    ],
    checks: [POLICY_FETCH, 'dig +short mta-sts.{domain}'],
    fix: ['serve the policy with status 200 and no redirect, over HTTPS with a valid certificate for mta-sts.<domain>'],
  },
  'sts-policy-invalid': {
    title: 'MTA-STS policy invalid',
    meaning: 'The policy was fetched but does not parse as an RFC 8461 policy.',
    fault: 'your-policy',
    causes: [
      'a missing version, mode or max_age line',
      'a wrong media type (must be text/plain)',
      'an HTML error page served with status 200',
    ],
    checks: [POLICY_FETCH],
    fix: ['serve "version: STSv1", "mode:", one "mx:" per pattern and "max_age:" lines, as text/plain, CRLF line ends'],
  },
  'sts-webpki-invalid': {
    title: 'MTA-STS policy host certificate invalid',
    meaning: 'The HTTPS certificate of mta-sts.<domain> did not validate, so the policy could not be trusted.',
    fault: 'your-policy-host',
    causes: ['the certificate does not cover mta-sts.<domain>', 'it expired', 'an incomplete chain'],
    checks: [
      'openssl s_client -connect mta-sts.{domain}:443 -servername mta-sts.{domain} -verify_hostname mta-sts.{domain} -verify_return_error </dev/null',
    ],
    fix: ['serve a publicly trusted certificate for mta-sts.<domain> with its full chain'],
  },
  'no-policy-found': {
    title: 'no policy found',
    meaning:
      'The sender found neither an MTA-STS policy nor DANE TLSA records for the domain: it may deliver without verifying TLS.',
    fault: 'your-dns',
    causes: [
      'no _mta-sts TXT record, or it is malformed',
      'no TLSA records',
      'the policy is published but the TXT record id is missing',
    ],
    checks: ['dig +short TXT _mta-sts.{domain}', 'dig +short TXT _smtp._tls.{domain}'],
    fix: ['publish an MTA-STS policy (start in mode: testing) or DANE TLSA records'],
  },
} satisfies Record<string, Entry>;

export type DiagnosedType = keyof typeof RESULT_TYPE_DIAGNOSES;

/** A free-text failure-reason-code, as real senders write them, and the cause it names. */
export interface ReasonCode {
  cause: string;
  pattern: RegExp;
  explanation: string;
}

/** Most specific first: the first match wins. */
export const REASON_CODES: ReasonCode[] = [
  {
    cause: 'certificate-expired',
    pattern: /X509_V_ERR_CERT_HAS_EXPIRED|certificate has expired|expired/i,
    explanation: 'a certificate in the chain has expired',
  },
  {
    cause: 'certificate-self-signed',
    pattern: /SELF_SIGNED|self[- ]signed/i,
    explanation: 'the certificate is self-signed (or the chain ends in one)',
  },
  {
    cause: 'certificate-chain-incomplete',
    pattern:
      /UNABLE_TO_GET_ISSUER_CERT|unable to get (local )?issuer|UNABLE_TO_VERIFY_LEAF_SIGNATURE|unknown authority/i,
    explanation: 'the intermediate certificates are missing or the issuer is unknown',
  },
  {
    cause: 'certificate-name-mismatch',
    pattern: /HOSTNAME_MISMATCH|hostname mismatch|doesn't match|not valid for/i,
    explanation: 'the certificate does not cover the host name',
  },
  {
    cause: 'certificate-path-length',
    pattern: /X509_V_ERR_(PROXY_)?PATH_LENGTH_EXCEEDED/i,
    explanation: 'the chain is longer than a CA certificate allows (a basicConstraints pathlen violation)',
  },
  {
    cause: 'certificate-verify-failed',
    pattern: /^X509_V_ERR_|certificate verify failed/i,
    explanation: 'the certificate chain failed verification (OpenSSL code as given)',
  },
  {
    cause: 'policy-http-404',
    pattern: /\b(response code|status)[: ]+404\b/i,
    explanation: 'the policy host answered 404: no policy file at /.well-known/mta-sts.txt',
  },
  {
    cause: 'policy-http-3xx',
    pattern: /\b(response code|status)[: ]+3\d\d\b|redirect/i,
    explanation: 'the policy host redirected, which RFC 8461 forbids',
  },
  {
    cause: 'policy-http-5xx',
    pattern: /\b(response code|status)[: ]+5\d\d\b/i,
    explanation: 'the policy host answered with a server error',
  },
  {
    cause: 'policy-http-status',
    pattern: /\b(response code|status)[: ]+\d{3}\b/i,
    explanation: 'the policy host answered with a status other than 200',
  },
  {
    cause: 'timeout',
    pattern: /deadline exceeded|timed? ?out|timeout/i,
    explanation: 'the connection or request timed out',
  },
  {
    cause: 'dns-failure',
    pattern: /no such host|NXDOMAIN|SERVFAIL|lookup .* failed|name resolution/i,
    explanation: 'a DNS lookup failed',
  },
  {
    cause: 'connection-refused',
    pattern: /connection refused|ECONNREFUSED/i,
    explanation: 'nothing accepted the connection',
  },
  {
    cause: 'connection-reset',
    pattern: /connection reset|ECONNRESET|broken pipe/i,
    explanation: 'the connection was reset',
  },
];

/** The canonical cause of a failure-reason-code; undefined for codes we do not know (shown as they came). */
export function reasonCause(code: string | null | undefined): ReasonCode | undefined {
  if (!code) return undefined;
  return REASON_CODES.find((r) => r.pattern.test(code));
}

const HOST = /^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*$/i;
/** A value safe to print inside a shell command: a plain host name or IP address, else undefined. */
export function safeHost(value: string | null | undefined): string | undefined {
  if (!value) return undefined;
  const v = value.replace(/\.$/, '');
  return isIP(v) !== 0 || HOST.test(v) ? v : undefined;
}

export interface FailureEvidence {
  resultType: string;
  failedSessionCount: number;
  receivingMxHostname: string | null;
  receivingIp: string | null;
  sendingMtaIp: string | null;
  /** Several failures together (an incident): how many sending IPs the reports named, and the most failing. */
  sendingIps?: { count: number; top: string[] } | undefined;
  failureReasonCode: string | null;
  additionalInformation: string | null;
}

export interface RenderedDiagnosis extends Omit<Entry, 'checks'> {
  resultType: string;
  /** The failure in one sentence, with its evidence. */
  sentence: string;
  checks: string[];
  reasonCode: { raw: string; cause: string | null; explanation: string | null } | null;
  /** False for a result type outside RFC 8460's registry: shown as it came, with the general advice. */
  known: boolean;
}

const UNKNOWN: Entry = {
  title: 'unregistered result type',
  meaning:
    'The sender used a result type outside the RFC 8460 registry; its failure-reason-code and additional information are the best evidence.',
  fault: 'unclear',
  causes: ['a sender-specific failure class'],
  checks: [OPENSSL_MX],
  fix: ['read the failure-reason-code and the additional-information link, or ask the sender (contact-info)'],
};

/** The sending side as the reports named it: one IP, or how many and the most failing; nothing when none was named. */
function sendersOf(detail: FailureEvidence): string {
  if (detail.sendingMtaIp) return ` from ${detail.sendingMtaIp}`;
  const ips = detail.sendingIps;
  if (!ips || ips.count === 0) return '';
  if (ips.count === 1) return ` from ${ips.top[0] ?? '1 sending IP'}`;
  return ` from ${plural(ips.count, 'sending IP')} (most: ${ips.top.slice(0, 3).join(', ')})`;
}

/** One failure detail, explained with its evidence, for a policy domain and the organization that reported it. */
export function diagnose(
  detail: FailureEvidence,
  context: { policyDomain: string; organization: string },
): RenderedDiagnosis {
  const type = detail.resultType.toLowerCase();
  const known = Object.hasOwn(RESULT_TYPE_DIAGNOSES, type);
  const entry: Entry = known ? RESULT_TYPE_DIAGNOSES[type as DiagnosedType] : UNKNOWN;
  const mx = safeHost(detail.receivingMxHostname);
  const ip = safeHost(detail.receivingIp);
  const domain = safeHost(context.policyDomain);
  const fill = (command: string): string =>
    command
      .replaceAll('{mx}', mx ?? ip ?? '<mx-host>')
      .replaceAll('{domain}', domain ?? '<domain>')
      .replaceAll('{ip}', ip ?? '<ip>');
  const where = [detail.receivingMxHostname, detail.receivingIp && `(${detail.receivingIp})`].filter(Boolean).join(' ');
  const from = sendersOf(detail);
  const who = context.organization || 'The reporter';
  const target = where ? ` at ${where}` : context.policyDomain ? ` for ${context.policyDomain}` : '';
  const cause = reasonCause(detail.failureReasonCode);
  return {
    resultType: detail.resultType,
    known,
    ...entry,
    sentence: `${who} reported ${plural(detail.failedSessionCount, 'failed session')}${target}${from}: ${entry.title}.`,
    checks: entry.checks.map(fill),
    reasonCode: detail.failureReasonCode
      ? { raw: detail.failureReasonCode, cause: cause?.cause ?? null, explanation: cause?.explanation ?? null }
      : null,
  };
}
