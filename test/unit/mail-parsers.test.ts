// The receiver reads a report mail with the cheapest parser that finds its reports: mailsplit's split parse first,
// then postal-mime, then mailparser (services/common/intake/extract.ts). The split parse must find exactly what the
// two after it find, on every real mail, on crafted mails of each oddity it decides about, and on thousands of
// byte-level edits of the real ones.
import fc from 'fast-check';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { extractReports, type MailParser } from '../../services/common/intake/extract.ts';
import { corpusEmails, corpusReports } from '../helpers/corpus.ts';
import { emailBytes, emailCase } from '../helpers/fuzz.ts';
import { reportMail } from '../helpers/mail.ts';

const OPTS = { maxMimeParts: 100, maxUnzippedBytes: 1 << 24 };
const BEFORE: MailParser[] = ['postal-mime', 'mailparser'];
const rfc = corpusReports().find((r) => r.file.includes('rfc8460.json'))!.json;

/** What a parser chain makes of a mail, comparable: the extraction, or the error it refuses the mail with. */
async function extraction(raw: Buffer, parsers?: MailParser[]): Promise<unknown> {
  try {
    const mail = await extractReports(raw, OPTS, parsers);
    return { ...mail, parts: mail.parts.map((p) => ({ ...p, content: p.content.toString('base64') })) };
  } catch (err) {
    return { refused: String(err) };
  }
}

/**
 * The one difference, in mails cut off inside their last line (only edited mails are; SMTP and IMAP messages end with
 * a line break): postal-mime gives that line the line break it lacks, mailparser and the split parse keep the bytes
 * as they came. Compared without that line break.
 */
function uncut(raw: Buffer, found: unknown): unknown {
  const f = found as { parts?: Array<{ content: string }> };
  if (!f.parts || raw.at(-1) === 0x0a) return found;
  const parts = f.parts.map((p) => {
    const bytes = Buffer.from(p.content, 'base64');
    return bytes.at(-1) === 0x0a ? { ...p, content: bytes.subarray(0, -1).toString('base64') } : p;
  });
  return { ...f, parts };
}

const mail = (lines: string[]): Buffer => Buffer.from(lines.join('\r\n'));
const attachment = (headers: string[], body: string): string[] => ['--b', ...headers, '', body];
const multipart = (parts: string[][], headers: string[] = []): Buffer =>
  mail([
    'From: TLS reporter <tlsrpt@sender.example>',
    'Subject: Report Domain: example.com Submitter: sender.example',
    ...headers,
    'Content-Type: multipart/report; report-type="tlsrpt"; boundary="b"',
    '',
    ...parts.flat(),
    '--b--',
    '',
  ]);
const gz = gzipSync(rfc);

const CRAFTED: Record<string, Buffer> = {
  'base64 padded on every line': multipart([
    attachment(
      ['Content-Type: application/tlsrpt+gzip', 'Content-Transfer-Encoding: base64'],
      (gz.toString('base64').match(/.{1,60}/g) ?? [])
        .map((l) => Buffer.from(l, 'base64').toString('base64'))
        .join('\r\n'),
    ),
  ]),
  'base64 with characters outside its alphabet': multipart([
    attachment(
      ['Content-Type: application/tlsrpt+gzip', 'Content-Transfer-Encoding: base64'],
      gz.toString('base64').replace(/(.{40})/g, '$1-_!\r\n'),
    ),
  ]),
  'a quoted-printable JSON report': multipart([
    attachment(
      ['Content-Type: application/tlsrpt+json', 'Content-Transfer-Encoding: quoted-printable'],
      rfc.replace(/=/g, '=3D').replace(/\n/g, '=0A=\r\n'),
    ),
  ]),
  'a report that is the whole message': mail([
    'From: tlsrpt@sender.example',
    'Content-Type: application/tlsrpt+gzip',
    'Content-Transfer-Encoding: base64',
    'Content-Disposition: attachment; filename="r.json.gz"',
    '',
    gz.toString('base64'),
    '',
  ]),
  'a JSON report in text/plain, as an attachment and inline': multipart([
    attachment(['Content-Type: text/plain', 'Content-Disposition: attachment; filename="r.json"'], rfc),
    attachment(['Content-Type: text/plain; name="inline.json"'], rfc),
  ]),
  'a report in the text body only': multipart([attachment(['Content-Type: text/plain'], rfc)]),
  'text/json and octet-stream parts, no file names': multipart([
    attachment(['Content-Type: text/json'], rfc),
    attachment(['Content-Type: application/octet-stream', 'Content-Transfer-Encoding: base64'], gz.toString('base64')),
  ]),
  'a forwarded message holding a report': multipart([
    attachment(
      ['Content-Type: message/rfc822'],
      reportMail({ reports: [{ json: rfc }] })
        .toString()
        .replace(/\r?\n$/, ''),
    ),
  ]),
  'headers in UTF-8 and in windows-1252': Buffer.concat([
    Buffer.from('Subject: Bericht f'),
    Buffer.from([0xfc]),
    Buffer.from('r example.com\r\nTLS-Report-Submitter: s\u00e9nder.example\r\n'),
    reportMail({ reports: [{ json: rfc }] }),
  ]),
  'a CR without LF in a header': Buffer.from(
    reportMail({ reports: [{ json: rfc }] })
      .toString()
      .replace('From: TLS reporter <tlsrpt@', 'From: TLS reporter\r<tlsrpt@'),
  ),
  'an RFC 2231 file name, LF line ends, two reports': reportMail({
    reports: [
      { json: rfc, rfc2231: true },
      { json: rfc, gzip: false },
    ],
    lineEnding: '\n',
  }),
  'a zip of reports': reportMail({
    reports: [{ json: '', raw: Buffer.from('504b0304', 'hex'), contentType: 'application/zip' }],
  }),
  'no report at all': multipart([attachment(['Content-Type: text/plain'], 'Nothing to see.')]),
};

describe('the split parse finds what postal-mime and mailparser find', () => {
  it('every real report mail, the split parse alone reading each of them', async () => {
    for (const { file, raw } of corpusEmails()) {
      const before = await extraction(raw, BEFORE);
      expect(await extraction(raw), file).toEqual(before);
      // The corpus's report mails are plain enough for the split parse on its own: nothing falls through.
      if ((before as { parts?: unknown[] }).parts?.length)
        expect(await extraction(raw, ['split']), file).toEqual(before);
    }
  });

  it.each(Object.keys(CRAFTED))('%s', async (name) => {
    const raw = CRAFTED[name]!;
    expect(await extraction(raw)).toEqual(await extraction(raw, BEFORE));
  });

  it('3,000 byte-level edits of the real mails (cuts and splices)', async () => {
    const cases = fc.sample(emailCase, { numRuns: 3000, seed: 8460 });
    for (const [i, c] of cases.entries()) {
      const raw = emailBytes(c);
      expect(uncut(raw, await extraction(raw)), `case ${i}: ${JSON.stringify(c)}`).toEqual(
        uncut(raw, await extraction(raw, BEFORE)),
      );
    }
  });
});
