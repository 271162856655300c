// The job a receiver stores in Redis and the worker consumes: the raw bytes as received plus receipt metadata.
import { z } from 'zod';

export const CHANNELS = ['https', 'smtp', 'file'] as const;

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
  /** Channel-specific metadata (SMTP envelope, headers, DKIM verdict …), stored as JSON with the receipt. */
  meta: z.record(z.string(), z.unknown()).default({}),
});

export type ReportJob = z.infer<typeof reportJobSchema>;
export type ReportJobInput = z.input<typeof reportJobSchema>;
