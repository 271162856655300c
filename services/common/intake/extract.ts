// A report mail → the report parts in it (RFC 8460 §5.3), and the headers we keep with each.
// Every report part becomes its own job; the worker decodes and validates it like any HTTPS body.
import { FORWARDED_HEADER } from '../forwarding.ts';
import { Unzip, UnzipInflate, UnzipPassThrough } from 'fflate';
import { simpleParser, type AddressObject } from 'mailparser';
import PostalMime, { decodeWords } from 'postal-mime';
import { parseSplit } from './split-parse.ts';
import { constants as zlibConstants, gunzipSync } from 'node:zlib';

export interface ReportPart {
  content: Buffer;
  contentType: string;
  filename: string;
}

export interface ExtractedMail {
  parts: ReportPart[];
  messageId: string;
  date: string;
  subject: string;
  from: string;
  reportDomainHeader: string;
  reportSubmitterHeader: string;
  /** The deployment that forwarded this report (its tlsrpt-forwarded-by header), or empty: not forwarded again. */
  forwardedBy: string;
  /** Oddities of the message itself (the worker adds its own about each report). */
  flags: string[];
}

export class MailRejectedError extends Error {
  override readonly name = 'MailRejectedError';
  constructor(
    readonly code: number,
    readonly enhanced: string,
    message: string,
  ) {
    super(message);
  }
}

const isGzip = (b: Buffer): boolean => b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b;
const isZip = (b: Buffer): boolean => b.length >= 4 && b.readUInt32LE(0) === 0x04034b50;
/** The first characters of a part, without a byte-order mark: enough to tell JSON from XML. */
const opening = (b: Buffer): string =>
  b
    .subarray(0, 256)
    .toString('utf8')
    .replace(/^\uFEFF/, '');
const looksLikeJson = (b: Buffer): boolean => /^\s*\{/.test(opening(b));
const looksLikeXml = (b: Buffer): boolean => /^\s*</.test(opening(b));
const opensLikeReport = (b: Buffer): boolean => isGzip(b) || isZip(b) || looksLikeJson(b);

/** The first bytes of a gzip body, decompressed (what its first 256 bytes hold: deflate expands at most ~1,000x). */
function gunzipStart(body: Buffer): Buffer {
  try {
    return gunzipSync(body.subarray(0, 256), { finishFlush: zlibConstants.Z_SYNC_FLUSH, maxOutputLength: 1 << 20 });
  } catch {
    return Buffer.alloc(0);
  }
}

/** Types real senders use for the report part, registered or not. */
const REPORT_TYPES = new Set([
  'application/json',
  'text/json',
  'application/gzip',
  'application/x-gzip',
  'application/zip',
  'application/x-zip-compressed',
  'application/octet-stream',
]);
const REPORT_NAME = /\.(json|gz|gzip|zip)$/i;

/**
 * Unpacks a zip attachment into its entries, with a cap on the total unpacked size. The archive is fed in
 * small slices so that no single inflate step can produce more than a few megabytes (zip bombs).
 */
export function unzipCapped(
  zip: Buffer,
  maxBytes: number,
  maxEntries = Infinity,
): Array<{ name: string; content: Buffer }> {
  const entries: Array<{ name: string; chunks: Uint8Array[]; done: boolean }> = [];
  let total = 0;
  let failure: Error | undefined;
  const unzip = new Unzip((file) => {
    if (failure || file.name.endsWith('/')) return; // a folder
    if (entries.length >= maxEntries) {
      // Each entry becomes a job: an archive of 20,000 empty files made 20,000 from one small mail.
      failure = new MailRejectedError(554, '5.6.0', `a zip attachment holds more than ${maxEntries} files`);
      return;
    }
    const entry = { name: file.name, chunks: [] as Uint8Array[], done: false };
    entries.push(entry);
    file.ondata = (err, data, final) => {
      if (failure) return;
      if (err) {
        failure = err;
        return;
      }
      total += data.length;
      if (total > maxBytes) {
        failure = new MailRejectedError(552, '5.3.4', `a zip attachment unpacks to more than ${maxBytes} bytes`);
        file.terminate();
        return;
      }
      entry.chunks.push(data);
      if (final) entry.done = true;
    };
    file.start();
  });
  unzip.register(UnzipInflate);
  unzip.register(UnzipPassThrough);
  const SLICE = 4096;
  for (let i = 0; i < zip.length && !failure; i += SLICE) {
    unzip.push(zip.subarray(i, i + SLICE), i + SLICE >= zip.length);
  }
  if (failure) throw failure;
  return entries.filter((e) => e.done).map((e) => ({ name: e.name, content: Buffer.concat(e.chunks) }));
}

/**
 * An upper bound on the MIME parts of a message (its bytes as latin1 text), without parsing, so a message of 10,000
 * parts is refused before a parser sees it: Content-Type headers, or lines that could be boundary delimiters (`--…`:
 * a part needs no Content-Type of its own), whichever is more.
 */
export function countMimeParts(text: string): number {
  const count = (re: RegExp): number => {
    let n = 0;
    while (re.exec(text)) n++;
    return n;
  };
  return Math.max(count(/(^|\n)content-type\s*:/gi), count(/(^|\n)--[^\s-]/g));
}

/** Size of the header section: up to the first empty line. */
export function headerBytes(raw: Buffer): number {
  const crlf = raw.indexOf('\r\n\r\n');
  const lf = raw.indexOf('\n\n');
  const ends = [crlf, lf].filter((i) => i >= 0);
  return ends.length ? Math.min(...ends) : raw.length;
}

/** Header bytes of all parts together (the SMTP receiver refuses a larger top header before parsing). */
export const MAX_HEADERS_BYTES = 1 << 20;

export interface ExtractOptions {
  maxMimeParts: number;
  maxUnzippedBytes: number;
  /** Files in one zip attachment; default SMTP_MAX_ZIP_ENTRIES' default. */
  maxZipEntries?: number;
}

/** A parsed message as every parser gives it. */
export interface ParsedMail {
  attachments: Array<{ contentType: string; filename: string; content: Buffer }>;
  text: string;
  from: string;
  headerLines: ReadonlyArray<{ key: string; line: string }>;
}

/** An attachment's bytes as a Buffer over the same memory (calendar parts come as a Uint8Array). */
function bytesOf(content: ArrayBuffer | Uint8Array | string): Buffer {
  if (typeof content === 'string') return Buffer.from(content);
  if (content instanceof Uint8Array) return Buffer.from(content.buffer, content.byteOffset, content.byteLength);
  return Buffer.from(content);
}

/** postal-mime: 0.55–0.75× mailparser's CPU per report mail (bench mails), with limits on parts, nesting, headers. */
async function parseFast(raw: Buffer, maxMimeParts: number): Promise<ParsedMail> {
  const mail = await PostalMime.parse(raw, {
    maxPartCount: maxMimeParts + 1, // the message itself counts as a part
    maxHeadersSize: MAX_HEADERS_BYTES,
    forceRfc822Attachments: true, // a forwarded mail is one part, as mailparser has it
  });
  const from = mail.from?.address || mail.from?.group?.find((m) => m.address)?.address || '';
  return {
    attachments: mail.attachments.map((a) => ({
      contentType: a.mimeType || '',
      filename: a.filename ?? '',
      content: bytesOf(a.content),
    })),
    text: mail.text ?? '',
    from,
    headerLines: mail.headerLines,
  };
}

/**
 * mailparser: skips a header line that is not a header (postal-mime ends the header section there), so a mail with
 * a damaged line still yields its report. Taken only when the fast parse found no report that opens as one.
 */
async function parseLenient(raw: Buffer): Promise<ParsedMail> {
  const mail = await simpleParser(raw, { skipHtmlToText: true, skipTextToHtml: true, skipImageLinks: true });
  const senders: AddressObject[] = Array.isArray(mail.from) ? mail.from : mail.from ? [mail.from] : [];
  const from = senders.flatMap((a) => a.value).find((v) => v.address)?.address;
  return {
    attachments: mail.attachments.map((a) => ({
      contentType: (a.contentType || '').toLowerCase(),
      filename: a.filename ?? '',
      content: a.content,
    })),
    text: mail.text ?? '',
    from: from ?? '',
    headerLines: mail.headerLines,
  };
}

/** Every occurrence of a header as one value, each unfolded (a fold and its indent: one space), words decoded. */
function headerOf(mail: ParsedMail, name: string): string {
  return mail.headerLines
    .filter((h) => h.key === name)
    .map((h) => decodeWords(h.line.slice(h.line.indexOf(':') + 1).replace(/\r?\n[ \t]+/g, ' ')).trim())
    .join(', ')
    .slice(0, 2000);
}

/** The Date header in ISO form when it parses, else as sent (never the time of reading, as mailparser had it). */
function dateOf(mail: ParsedMail): string {
  const sent = headerOf(mail, 'date');
  const at = new Date(sent);
  return sent && !Number.isNaN(at.getTime()) ? at.toISOString() : sent;
}

/** A message as the parsers take it: its bytes, the same as latin1 text (made once), the cap on its parts. */
interface ParserInput {
  raw: Buffer;
  latin1: string;
  maxMimeParts: number;
}

const PARSERS = {
  split: (m: ParserInput) => parseSplit(m.raw, m.latin1),
  'postal-mime': (m: ParserInput) => parseFast(m.raw, m.maxMimeParts),
  mailparser: (m: ParserInput) => parseLenient(m.raw),
} satisfies Record<string, (m: ParserInput) => Promise<ParsedMail | undefined>>;

export type MailParser = keyof typeof PARSERS;

/** The parsers a mail goes through, cheapest first (a test compares the first with the others on every mail). */
export const MAIL_PARSERS: readonly MailParser[] = ['split', 'postal-mime', 'mailparser'];

export async function extractReports(
  raw: Buffer,
  options: ExtractOptions,
  parsers: readonly MailParser[] = MAIL_PARSERS,
): Promise<ExtractedMail> {
  const input = { raw, latin1: raw.toString('latin1'), maxMimeParts: options.maxMimeParts };
  const partCount = countMimeParts(input.latin1);
  if (partCount > options.maxMimeParts) {
    throw new MailRejectedError(554, '5.6.0', `the message has more than ${options.maxMimeParts} MIME parts`);
  }
  let mail: ParsedMail | undefined;
  let found: ReturnType<typeof reportParts> | undefined;
  // Each parser in turn until one finds report parts that open as reports; the last one's finding stands.
  for (const [i, name] of parsers.entries()) {
    const last = i === parsers.length - 1;
    mail = last ? await PARSERS[name](input) : await PARSERS[name](input).catch(() => undefined);
    found = mail ? reportParts(mail, options) : undefined;
    // A damaged header line ends postal-mime's header section: the part's body then starts with header text.
    if (found && found.parts.length > 0 && found.parts.every((p) => opensLikeReport(p.content))) break;
  }
  if (!mail || !found) throw new Error('none of the parsers read the message');
  return {
    parts: found.parts,
    messageId: headerOf(mail, 'message-id').slice(0, 1000),
    date: dateOf(mail),
    subject: headerOf(mail, 'subject'),
    from: mail.from,
    reportDomainHeader: headerOf(mail, 'tls-report-domain'),
    reportSubmitterHeader: headerOf(mail, 'tls-report-submitter'),
    forwardedBy: headerOf(mail, FORWARDED_HEADER).slice(0, 200),
    flags: found.flags,
  };
}

/** The report parts of a parsed mail (attachments, zip entries, or a report in the text body). */
function reportParts(mail: ParsedMail, options: ExtractOptions): { parts: ReportPart[]; flags: string[] } {
  const flags: string[] = [];
  const parts: ReportPart[] = [];
  for (const { contentType, filename, content } of mail.attachments) {
    const registered = contentType.startsWith('application/tlsrpt');
    const byContent = isGzip(content) || isZip(content);
    const plausible = REPORT_TYPES.has(contentType) || REPORT_NAME.test(filename);
    if (!registered && !byContent && !(plausible && looksLikeJson(content))) continue;
    // A DMARC aggregate report (XML, zipped or gzipped) in the same mailbox is not ours: left alone.
    if (!registered && isGzip(content) && looksLikeXml(gunzipStart(content))) continue;
    if (!registered) flags.push('unregistered-attachment-type');
    if (isZip(content)) {
      let entries: Array<{ name: string; content: Buffer }>;
      try {
        entries = unzipCapped(content, options.maxUnzippedBytes, options.maxZipEntries ?? 100);
      } catch (err) {
        if (err instanceof MailRejectedError) throw err;
        // A broken archive is still passed on: the worker records it as a reject with its raw bytes.
        parts.push({ content, contentType, filename });
        continue;
      }
      const reports = registered ? entries : entries.filter((e) => !looksLikeXml(e.content));
      if (reports.length === 0) continue;
      flags.push('zip-attachment');
      for (const e of reports) parts.push({ content: e.content, contentType, filename: `${filename}/${e.name}` });
      continue;
    }
    parts.push({ content, contentType, filename });
  }
  if (parts.length > options.maxMimeParts) {
    throw new MailRejectedError(554, '5.6.0', `the message holds more than ${options.maxMimeParts} reports`);
  }
  if (parts.length === 0 && mail.text && looksLikeJson(Buffer.from(mail.text)) && mail.text.includes('"policies"')) {
    parts.push({ content: Buffer.from(mail.text.trim()), contentType: 'text/plain', filename: '' });
    flags.push('report-in-text-body');
  }
  return { parts, flags };
}
