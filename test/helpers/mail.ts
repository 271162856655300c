// Report mails made by the tests: RFC 8460 §5.3 multipart/report messages, optionally DKIM-signed with keys the
// tests generate and serve through their own DNS resolver.
import { generateKeyPairSync } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { zipSync } from 'fflate';
import { dkimSign } from 'mailauth';
import type { DNSResolver } from '../../services/common/intake/dkim.ts';

export interface ReportMailOptions {
  /** Each report part: JSON (gzipped unless `gzip: false`), or `raw` bytes as they are. */
  reports: Array<{
    json: string;
    raw?: Buffer;
    filename?: string;
    gzip?: boolean;
    contentType?: string;
    rfc2231?: boolean;
  }>;
  from?: string;
  domain?: string;
  submitter?: string;
  subject?: string;
  lineEnding?: '\r\n' | '\n';
  extraHeaders?: string[];
}

export function reportMail(o: ReportMailOptions): Buffer {
  const boundary = 'b-' + Math.random().toString(36).slice(2);
  const submitter = o.submitter ?? 'sender.example';
  const lines = [
    `From: TLS reporter <${o.from ?? `tlsrpt@${submitter}`}>`,
    'To: tlsrpt@localhost',
    `Subject: ${o.subject ?? `Report Domain: ${o.domain ?? 'example.com'} Submitter: ${submitter} Report-ID: <r1@${submitter}>`}`,
    'Date: Mon, 03 Feb 2025 10:00:00 +0000',
    `Message-ID: <${Math.random().toString(36).slice(2)}@${submitter}>`,
    `TLS-Report-Domain: ${o.domain ?? 'example.com'}`,
    `TLS-Report-Submitter: ${submitter}`,
    'MIME-Version: 1.0',
    ...(o.extraHeaders ?? []),
    `Content-Type: multipart/report; report-type="tlsrpt"; boundary="${boundary}"`,
    '',
    `--${boundary}`,
    'Content-Type: text/plain; charset=utf-8',
    '',
    'This is an aggregate TLS report.',
  ];
  for (const r of o.reports) {
    const gzip = r.gzip ?? true;
    const name =
      r.filename ?? `${submitter}!${o.domain ?? 'example.com'}!1738540800!1738627199!001.json${gzip ? '.gz' : ''}`;
    const type = r.contentType ?? (gzip ? 'application/tlsrpt+gzip' : 'application/tlsrpt+json');
    const body = r.raw ?? (gzip ? gzipSync(r.json) : Buffer.from(r.json));
    const disposition = r.rfc2231
      ? [
          `Content-Disposition: attachment;`,
          ` filename*0*=utf-8''${encodeURIComponent(name.slice(0, 20))};`,
          ` filename*1*=${encodeURIComponent(name.slice(20))}`,
        ]
      : [`Content-Disposition: attachment; filename="${name}"`];
    lines.push(`--${boundary}`, `Content-Type: ${type}`, 'Content-Transfer-Encoding: base64', ...disposition, '');
    lines.push(...(body.toString('base64').match(/.{1,76}/g) ?? []));
  }
  lines.push(`--${boundary}--`, '');
  return Buffer.from(lines.join(o.lineEnding ?? '\r\n'));
}

export interface TestKey {
  selector: string;
  domain: string;
  privateKey: string;
  /** The TXT record to publish, e.g. `v=DKIM1; k=rsa; s=tlsrpt; p=...`. */
  record: string;
}

export function makeKey(domain: string, selector = 'tlsrpt', serviceTypes = 'tlsrpt'): TestKey {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const p = publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
  return {
    selector,
    domain,
    privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    record: `v=DKIM1; k=rsa; s=${serviceTypes}; p=${p}`,
  };
}

/** A resolver that answers TXT look-ups for the given keys and NXDOMAIN for everything else. */
export function testResolver(keys: TestKey[]): DNSResolver {
  return async (name: string, rrtype: string) => {
    const key = keys.find((k) => `${k.selector}._domainkey.${k.domain}` === name.toLowerCase());
    if (rrtype === 'TXT' && key) return [[key.record]];
    throw Object.assign(new Error(`queryTxt ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
  };
}

export async function sign(message: Buffer, key: TestKey, maxBodyLength?: number): Promise<Buffer> {
  const signature = {
    signingDomain: key.domain,
    selector: key.selector,
    privateKey: key.privateKey,
    ...(maxBodyLength !== undefined ? { maxBodyLength } : {}),
  };
  // mailauth reads the signatures from signatureData (the top-level fields only satisfy its type).
  const res = await dkimSign(message, { ...signature, signatureData: [signature] });
  const [error] = res.errors;
  if (error) throw error;
  return Buffer.concat([Buffer.from(res.signatures), message]);
}

/** Mail that is not a TLS report, as it lands in the same mailboxes: a note, and a DMARC aggregate report. */
export const NOTE_MAIL = Buffer.from(
  'From: a@b.example\r\nTo: c@d.example\r\nSubject: lunch\r\n\r\nAt noon?\r\nFrom the desk.\r\n',
);
export const DMARC_MAIL = Buffer.from(
  [
    'From: noreply-dmarc-support@google.com',
    'To: dmarc@example.com',
    'Subject: Report domain: example.com Submitter: google.com',
    'MIME-Version: 1.0',
    'Content-Type: application/zip; name="google.com!example.com!1.zip"',
    'Content-Transfer-Encoding: base64',
    '',
    Buffer.from(zipSync({ 'google.com!example.com!1.xml': Buffer.from('<?xml version="1.0"?><feedback/>') })).toString(
      'base64',
    ),
    '',
  ].join('\r\n'),
);
