// Raw body → report text → parsed JSON, with a cap on decompressed size against gzip bombs.
// node's zlib, not pako: about 4× faster on these reports and it caps output natively (see bench/).
import * as zlib from 'node:zlib';
import { gunzipSync, inflateRawSync } from 'node:zlib';
import { ReportRejectedError } from '../common/errors.ts';
import { jsonDepthExceeds, MAX_JSON_DEPTH } from '../common/json-depth.ts';

export interface DecodedReport {
  text: string;
  json: unknown;
  flags: string[];
}

export function isGzip(body: Uint8Array): boolean {
  return body.length >= 2 && body[0] === 0x1f && body[1] === 0x8b;
}

export function isZip(body: Uint8Array): boolean {
  return body.length >= 4 && body[0] === 0x50 && body[1] === 0x4b && body[2] === 0x03 && body[3] === 0x04;
}

function tooLarge(maxBytes: number): ReportRejectedError {
  return new ReportRejectedError('decompressed-too-large', `the report decompresses to more than ${maxBytes} bytes`);
}

function gunzipCapped(body: Buffer, maxBytes: number, flags: string[]): Buffer {
  try {
    return gunzipSync(body, { maxOutputLength: maxBytes });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ERR_BUFFER_TOO_LARGE' || e instanceof RangeError) throw tooLarge(maxBytes);
    // zlib fails on bytes after the last member that are not another member; gzip(1) ignores them with a warning.
    // A checksum failure is corruption, not trailing bytes.
    const members = /data check/.test(e.message) ? undefined : gzipMembers(body, maxBytes);
    if (members) {
      flags.push('gzip-trailing-garbage');
      return members;
    }
    throw new ReportRejectedError('bad-gzip', `gzip data is corrupt or truncated (${e.code ?? e.message})`);
  }
}

/** End of the gzip header (RFC 1952 §2.3) that starts at `at`, or undefined when it is not one. */
function gzipHeaderEnd(b: Buffer, at: number): number | undefined {
  if (b.length < at + 10 || b[at] !== 0x1f || b[at + 1] !== 0x8b || b[at + 2] !== 8) return undefined;
  const flg = b[at + 3] ?? 0;
  let i = at + 10;
  if (flg & 4) i += 2 + b.readUInt16LE(Math.min(i, b.length - 2)); // FEXTRA
  for (const bit of [8, 16]) {
    if (!(flg & bit)) continue; // FNAME, FCOMMENT: zero-terminated
    const end = b.indexOf(0, i);
    if (end < 0) return undefined;
    i = end + 1;
  }
  if (flg & 2) i += 2; // FHCRC
  return i <= b.length ? i : undefined;
}

// zlib.crc32 is in Node from 20.15 and 22.2; before that the length trailer is the check.
const crc32 = (zlib as { crc32?: (data: Uint8Array) => number }).crc32;

/**
 * The complete gzip members at the start of `body`, each checked against its length trailer, ignoring what follows
 * them; undefined when not even the first member is complete.
 */
function gzipMembers(body: Buffer, maxBytes: number): Buffer | undefined {
  const out: Buffer[] = [];
  let total = 0;
  let at = 0;
  for (;;) {
    const start = gzipHeaderEnd(body, at);
    if (start === undefined) break;
    let inflated: { buffer: Buffer; engine: { bytesWritten: number } };
    try {
      inflated = inflateRawSync(body.subarray(start), { info: true, maxOutputLength: maxBytes - total }) as never;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError) {
        throw tooLarge(maxBytes);
      }
      break;
    }
    const trailer = start + inflated.engine.bytesWritten;
    if (trailer + 8 > body.length || body.readUInt32LE(trailer + 4) !== inflated.buffer.length % 2 ** 32) break;
    if (crc32 && body.readUInt32LE(trailer) !== crc32(inflated.buffer)) break;
    out.push(inflated.buffer);
    total += inflated.buffer.length;
    at = trailer + 8;
  }
  return out.length > 0 ? Buffer.concat(out) : undefined;
}

// Made once: a decoder per report cost more than decoding a small report (decode() without `stream` keeps no state).
const UTF8_STRICT = new TextDecoder('utf-8', { fatal: true });
const UTF8_LENIENT = new TextDecoder('utf-8');
const UTF16LE = new TextDecoder('utf-16le');
const UTF16BE = new TextDecoder('utf-16be');

/** Decompresses (when gzip), decodes text and parses JSON. Throws ReportRejectedError for what never parses. */
export function decodeReport(body: Buffer, maxDecompressedBytes: number): DecodedReport {
  const flags: string[] = [];
  if (body.length === 0) throw new ReportRejectedError('empty-body', 'the report body is empty');
  let data = body;
  if (isGzip(data)) {
    data = gunzipCapped(data, maxDecompressedBytes, flags);
    // Gzip inside gzip (Content-Encoding: gzip over application/tlsrpt+gzip) is unwrapped once more.
    if (isGzip(data)) {
      data = gunzipCapped(data, maxDecompressedBytes, flags);
      flags.push('double-gzip');
    }
  } else if (isZip(data)) {
    throw new ReportRejectedError('unsupported-archive', 'zip archives are not accepted on this channel');
  } else if (data.length > maxDecompressedBytes) {
    throw new ReportRejectedError('decompressed-too-large', `the report is larger than ${maxDecompressedBytes} bytes`);
  }

  let text: string;
  if (data[0] === 0xff && data[1] === 0xfe) {
    text = UTF16LE.decode(data.subarray(2));
    flags.push('utf16');
  } else if (data[0] === 0xfe && data[1] === 0xff) {
    text = UTF16BE.decode(data.subarray(2));
    flags.push('utf16');
  } else {
    if (data[0] === 0xef && data[1] === 0xbb && data[2] === 0xbf) {
      data = data.subarray(3);
      flags.push('utf8-bom');
    }
    try {
      text = UTF8_STRICT.decode(data);
    } catch {
      // Invalid UTF-8 in a free-text field still leaves a meaningful report: keep it, with U+FFFD, flagged.
      text = UTF8_LENIENT.decode(data);
      flags.push('invalid-utf8');
    }
  }

  let json: unknown;
  try {
    // A \uD800-style escape with no partner decodes to a lone surrogate, which ClickHouse refuses (and with it
    // the whole batch). Such reports are rare: only they take the slower path that makes every string well-formed.
    if (text.includes('\\u') && /\\u[dD][89a-fA-F]/.test(text)) {
      // The reviver recurses: past the depth a report can have, refuse before it overflows the stack.
      if (jsonDepthExceeds(text)) {
        throw new ReportRejectedError('json-too-deep', `the report nests more than ${MAX_JSON_DEPTH} deep`);
      }
      let replaced = false;
      json = JSON.parse(text, (_key, value: unknown) => {
        if (typeof value !== 'string' || value.isWellFormed()) return value;
        replaced = true;
        return value.toWellFormed();
      });
      if (replaced) flags.push('lone-surrogate');
    } else json = JSON.parse(text);
  } catch (err) {
    if (err instanceof ReportRejectedError) throw err;
    const message = err instanceof Error ? err.message : String(err);
    const what = isGzip(body) ? 'the decompressed report' : 'the report';
    throw new ReportRejectedError('not-json', `${what} is not JSON (${message.slice(0, 200)})`);
  }
  return { text, json, flags };
}
