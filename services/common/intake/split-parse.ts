// The first of the mail parsers (extract.ts): mailsplit, the splitter mailparser is built on, gives a message's
// structure and each part's raw body; only the attachments are decoded, base64 or none. It finds exactly what
// postal-mime and mailparser after it find (test/unit/mail-parsers.test.ts compares them on every real mail, crafted
// ones and thousands of edits), and leaves every mail they would read differently to them.
import { isUtf8 } from 'node:buffer';
import type { Transform } from 'node:stream';
import { Splitter, type MimeNode, type SplitterChunk } from '@zone-eu/mailsplit';
import { addressParser } from 'postal-mime';
import { MAX_HEADERS_BYTES, type ParsedMail } from './extract.ts';

/** Transfer encodings decoded here; a report part in any other goes to the parsers after this one. */
const IDENTITY_ENCODINGS = new Set(['', '7bit', '8bit', 'binary']);

/**
 * Base64 as postal-mime decodes it: characters outside the alphabet dropped, and each `=`-terminated unit decoded on
 * its own (some mailers pad every line; node's decoder would stop at the first pad).
 */
function decodeBase64(body: Buffer): Buffer {
  const text = body.toString('latin1').replace(/[^a-zA-Z0-9+/=]+/g, '');
  const end = text.replace(/=+$/, '');
  if (!end.includes('=')) return Buffer.from(end, 'base64');
  return Buffer.concat(
    end
      .split(/=+/)
      .filter((unit) => unit.length > 0)
      .map((unit) => Buffer.from(unit.slice(0, unit.length - (unit.length % 4 === 1 ? 1 : 0)), 'base64')),
  );
}

const utf8Header = new TextDecoder('utf-8', { ignoreBOM: true });
const EIGHT_BIT = /[\x80-\xff]/;
/** Control characters: postal-mime and mailparser read a header holding one differently. */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/;

/**
 * A header line (mailsplit gives its bytes as latin1) as postal-mime and mailparser both read it, or undefined
 * where they differ (8-bit bytes that are not UTF-8, control characters).
 */
function headerText(latin1: string): string | undefined {
  if (CONTROL.test(latin1)) return undefined;
  if (!EIGHT_BIT.test(latin1)) return latin1;
  const bytes = Buffer.from(latin1, 'latin1');
  return isUtf8(bytes) ? utf8Header.decode(bytes) : undefined;
}

/** A message's nodes as mailsplit splits it: the root, and each leaf with its raw body. */
function split(raw: Buffer): Promise<{ root: MimeNode | undefined; leaves: Map<MimeNode, Buffer[]> }> {
  return new Promise((resolve, reject) => {
    const splitter = new Splitter({ ignoreEmbedded: true, maxHeadSize: MAX_HEADERS_BYTES });
    const leaves = new Map<MimeNode, Buffer[]>();
    let root: MimeNode | undefined;
    let last: SplitterChunk | undefined;
    splitter.on('data', (d: SplitterChunk) => {
      last = d;
      if (d.type === 'node') {
        root ??= d;
        if (!d.multipart) leaves.set(d, []);
      } else if (d.type === 'body') leaves.get(d.node)?.push(d.value);
    });
    // A last line without its line break (a mail cut short) is given one, so that a boundary there counts, as it
    // does for postal-mime; where the line is body, the body keeps only the bytes sent, as mailparser keeps them.
    const cut = raw.at(-1) !== 0x0a;
    // Its typings name only 'data'; it is a Transform stream.
    const stream = splitter as unknown as Transform;
    stream.on('error', reject);
    stream.on('end', () => {
      if (cut && last?.type === 'body') {
        const body = leaves.get(last.node);
        const end = body?.at(-1);
        if (body && end?.at(-1) === 0x0a) body[body.length - 1] = end.subarray(0, -1);
      }
      resolve({ root, leaves });
    });
    splitter.end(cut ? Buffer.concat([raw, Buffer.from('\n')]) : raw);
  });
}

/** The attachments among the leaves, decoded; undefined where the other parsers may read one differently. */
function attachmentsOf(leaves: Map<MimeNode, Buffer[]>): ParsedMail['attachments'] | undefined {
  const attachments: ParsedMail['attachments'] = [];
  for (const [node, body] of leaves) {
    // A part without a Content-Type is text/plain to all (a closing boundary without its `--` leaves an empty one),
    // unless mailsplit guesses a type from a file name, or it is in a digest: then the others read it.
    const typed = node.headers && node.headers.hasHeader('content-type');
    const digest = node.parentNode && node.parentNode.multipart === 'digest';
    if (!typed && (node.disposition || node.filename || digest)) return undefined;
    const contentType = (typed && node.contentType) || 'text/plain';
    const inlineText =
      (contentType === 'text/plain' || contentType === 'text/html') && node.disposition !== 'attachment';
    if (inlineText) continue;
    // An attachment's own headers, as the root's: where the other parsers read them differently, they decide.
    if (node.headers && node.headers.getList().some(({ line }) => headerText(line) === undefined)) return undefined;
    const encoding = node.encoding || '';
    if (encoding !== 'base64' && !IDENTITY_ENCODINGS.has(encoding)) return undefined;
    const bytes = Buffer.concat(body);
    attachments.push({
      contentType,
      filename: node.filename || '',
      content: encoding === 'base64' ? decodeBase64(bytes) : bytes,
    });
  }
  return attachments;
}

/**
 * The common report mail at a third of postal-mime's CPU: the attachments (the parts postal-mime takes as such: every
 * leaf but inline text/plain and text/html, a forwarded message as one part) decoded, the root's headers, the From
 * address. Text bodies are not read: a report in one goes to the parsers after this one, as does a report part in
 * quoted-printable, and any mail the others read differently (undefined). `latin1`: the same bytes as text.
 */
export async function parseSplit(raw: Buffer, latin1: string): Promise<ParsedMail | undefined> {
  // A CR without LF ends a line for postal-mime and mailparser but not for mailsplit: such a mail goes to them.
  if (/\r(?!\n)/.test(latin1)) return undefined;
  const { root, leaves } = await split(raw);
  const attachments = attachmentsOf(leaves);
  if (!attachments) return undefined;
  const headerLines: Array<{ key: string; line: string }> = [];
  for (const { key, line } of root?.headers ? root.headers.getList() : []) {
    const text = headerText(line);
    if (text === undefined) return undefined;
    headerLines.push({ key, line: text });
  }
  const fromLine = headerLines.find((h) => h.key === 'from')?.line ?? '';
  const from = addressParser(fromLine.slice(fromLine.indexOf(':') + 1).replace(/\r?\n([ \t])/g, '$1'))[0];
  return {
    attachments,
    text: '',
    from: from?.address || from?.group?.find((m) => m.address)?.address || '',
    headerLines,
  };
}
