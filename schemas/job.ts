// The job a receiver stores in Redis and the worker consumes: the raw bytes as received plus receipt metadata.
import { z } from 'zod';
import type { RejectRow } from './rows.ts';

// `import`: npm run import (files, mbox, Maildir); `file`: kept for receipts written before it.
export const CHANNELS = ['https', 'smtp', 'import', 'file', 'imap'] as const;

export const DKIM_RESULTS = ['pass', 'fail', 'none', 'temperror'] as const;

/** The DKIM verdict of a report mail (RFC 8460 §3), decided by the SMTP receiver. */
export const dkimVerdictSchema = z.object({
  result: z.enum(DKIM_RESULTS),
  /** The signature the verdict rests on: the passing one by the submitter where there is one. */
  signingDomain: z.string().default(''),
  selector: z.string().default(''),
  /** The signing domain is the submitter's domain (TLS-Report-Submitter, else From), or a parent or child of it. */
  submitterAligned: z.boolean().default(false),
  /** The key's `s=` tag allows service type `tlsrpt` (or all services). */
  keyAllowsTlsrpt: z.boolean().default(false),
  /** The signature had an `l=` tag: it does not count. */
  lengthLimited: z.boolean().default(false),
  comment: z.string().default(''),
  signatures: z.number().int().nonnegative().default(0),
});
export type DkimVerdict = z.infer<typeof dkimVerdictSchema>;

/** What the SMTP receiver records with each report part. */
export const smtpMetaSchema = z.object({
  envelopeFrom: z.string().default(''),
  envelopeTo: z.array(z.string()).default([]),
  helo: z.string().default(''),
  tlsProtocol: z.string().default(''),
  tlsCipher: z.string().default(''),
  messageId: z.string().default(''),
  date: z.string().default(''),
  subject: z.string().default(''),
  reportDomainHeader: z.string().default(''),
  reportSubmitterHeader: z.string().default(''),
  attachmentName: z.string().default(''),
  /** Position of this report among the reports of its message (0-based), and how many there were. */
  partIndex: z.number().int().nonnegative().default(0),
  partCount: z.number().int().positive().default(1),
  /** Oddities of the message (unregistered attachment type, report in the text body, zip …). */
  mailFlags: z.array(z.string()).default([]),
  dkim: dkimVerdictSchema,
  /** DKIM policy at receipt: `require` turns a report without a valid signature by the submitter into a reject. */
  dkimPolicy: z.enum(['record', 'require']).default('record'),
});
export type SmtpMeta = z.infer<typeof smtpMetaSchema>;
export type SmtpMetaInput = z.input<typeof smtpMetaSchema>;

export const reportJobSchema = z.object({
  /** Payload format version, so older jobs still queued after an upgrade are read correctly. */
  v: z.literal(1),
  /** Unique per receipt (one HTTP request, one attachment of one mail); also the BullMQ job id. */
  receiptId: z.string().min(1).max(200),
  receivedAt: z.string().datetime(),
  channel: z.enum(CHANNELS),
  remoteAddress: z.string().max(100).default(''),
  userAgent: z.string().max(1000).default(''),
  contentType: z.string().max(1000).default(''),
  contentEncoding: z.string().max(200).default(''),
  /** HTTP: the request path with its query string. */
  path: z.string().max(4000).default(''),
  /** The body exactly as received, base64. */
  bodyBase64: z.string(),
  /** SMTP receipts: envelope, headers, TLS and the DKIM verdict. */
  smtp: smtpMetaSchema.optional(),
  /**
   * An operator chose this copy of a report to be the one counted (POST /v1/reports/{key}/copies/{receipt}/choose):
   * it outranks every copy, and a later choice outranks it (services/worker/trust.ts).
   */
  chosen: z.object({ by: z.string().max(200), copy: z.string().max(200) }).optional(),
  /** Anything else a channel wants kept with the receipt (stored as JSON). */
  meta: z.record(z.string(), z.unknown()).default({}),
});

export type ReportJob = z.infer<typeof reportJobSchema>;
export type ReportJobInput = z.input<typeof reportJobSchema>;

/** What a reject row keeps of its job, as ClickHouse returns it (the row's other columns are derived). */
export type RejectedReceipt = Pick<
  RejectRow,
  | 'receipt_id'
  | 'received_at'
  | 'channel'
  | 'remote_address'
  | 'user_agent'
  | 'content_type'
  | 'content_encoding'
  | 'path'
  | 'raw_base64'
  | 'body_bytes'
  | 'meta'
>;

/**
 * The job a reject row was made from (services/worker/rows.ts rejectedRows, reversed; npm run replay-rejects), to process it again: the same receipt id, body and
 * receipt metadata (received_at to the second, as stored). Throws when the row cannot make a valid job.
 */
export function jobFromReject(row: RejectedReceipt): ReportJob {
  // A body kept only in part (REJECT_MAX_RAW_BYTES) cannot be processed again.
  if (Buffer.byteLength(row.raw_base64, 'base64') !== Number(row.body_bytes)) {
    throw new Error(`the raw body was kept only in part (${row.body_bytes} bytes received)`);
  }
  const meta = row.meta === '' ? {} : (JSON.parse(row.meta) as Record<string, unknown>);
  const { smtp, ...rest } = meta;
  return reportJobSchema.parse({
    v: 1,
    receiptId: row.receipt_id,
    receivedAt: new Date(`${row.received_at.replace(' ', 'T')}Z`).toISOString(),
    channel: row.channel,
    remoteAddress: row.remote_address,
    userAgent: row.user_agent,
    contentType: row.content_type,
    contentEncoding: row.content_encoding,
    path: row.path,
    bodyBase64: row.raw_base64,
    smtp,
    meta: rest,
  });
}
