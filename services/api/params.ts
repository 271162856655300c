// Query and path parameters of the API, validated with zod. Every value that reaches SQL passes through here
// (typed: dates, integers, enums, hex keys, domains) or through quoteString (common/clickhouse-compat.ts).
import { z } from 'zod';
import { FORWARD_STATES } from './forwards.ts';

const DAY = /^\d{4}-\d{2}-\d{2}$/;

export const dateParam = z
  .string()
  .regex(DAY, 'a date YYYY-MM-DD')
  .refine(
    (s) => !Number.isNaN(Date.parse(`${s}T00:00:00Z`)) && new Date(`${s}T00:00:00Z`).toISOString().startsWith(s),
    'not a calendar date',
  );

export const rangeParams = z.object({
  from: dateParam.optional().describe('First report day (UTC), inclusive. Default: 6 days before `to`.'),
  to: dateParam.optional().describe('Last report day (UTC), inclusive. Default: today.'),
});

export const limitParam = (max: number, def: number) =>
  z.coerce.number().int().min(1).max(max).default(def).describe(`At most this many rows (1–${max}).`);

export const domainParam = z
  .string()
  .max(253)
  .transform((s) => s.trim().toLowerCase().replace(/\.$/, ''))
  .pipe(z.string().regex(/^[a-z0-9_-]+(\.[a-z0-9_-]+)*$/, 'a domain name in A-label form'));

export const reportKeyParam = z.string().regex(/^[0-9a-f]{32}$/, 'a report key: 32 hex digits');

/** A receipt id as the receivers make them (a UUID, `smtp-…`, `import-…`, `chosen-…`). */
export const receiptIdParam = z.string().regex(/^[A-Za-z0-9._:@+=-]{1,200}$/, 'a receipt id');

export const FAILURE_DIMENSIONS = {
  'result-type': 'result_type',
  organization: 'organization',
  'receiving-mx': 'receiving_mx_hostname',
  'receiving-ip': 'receiving_ip',
  'sending-ip': 'sending_mta_ip',
  'reason-code': 'failure_reason_code',
} as const;

export const failureQuery = rangeParams.extend({
  by: z
    .enum(Object.keys(FAILURE_DIMENSIONS) as [keyof typeof FAILURE_DIMENSIONS])
    .default('result-type')
    .describe('What to break failures down by.'),
  limit: limitParam(100, 10).describe('The top N; the rest is summed into an "other" bucket.'),
});

/** An opaque cursor: base64url of a small JSON object. */
export function encodeCursor(value: Record<string, string | number>): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

export function cursorParam<T extends z.ZodType>(shape: T) {
  return z
    .string()
    .max(500)
    .transform((s, ctx) => {
      try {
        return JSON.parse(Buffer.from(s, 'base64url').toString('utf8')) as unknown;
      } catch {
        ctx.addIssue({ code: 'custom', message: 'not a cursor this API gave out' });
        return z.NEVER;
      }
    })
    .pipe(shape);
}

export const domainsQuery = rangeParams.extend({
  prefix: z
    .string()
    .max(253)
    .transform((s) => s.trim().toLowerCase())
    .pipe(z.string().regex(/^[a-z0-9_.-]*$/, 'the start of a domain name in A-label form'))
    .optional()
    .describe('Only domains whose name starts with this.'),
  limit: limitParam(1000, 1000),
  cursor: cursorParam(z.object({ domain: z.string().max(253) }))
    .optional()
    .describe('`next` of the previous page.'),
});

export const reportsQuery = rangeParams.extend({
  domain: domainParam.optional().describe('Only reports with a policy for this domain.'),
  limit: limitParam(500, 50),
  cursor: cursorParam(z.object({ day: dateParam, key: reportKeyParam }))
    .optional()
    .describe('`next` of the previous page.'),
});

export const reportQuery = z.object({
  detailLimit: limitParam(5000, 1000).describe('At most this many failure details (1–5000).'),
  detailsAfter: cursorParam(
    z.object({
      policy: z
        .number()
        .int()
        .min(0)
        .max(2 ** 32),
      detail: z
        .number()
        .int()
        .min(0)
        .max(2 ** 32),
    }),
  )
    .optional()
    .describe('`failureDetailsNext` of the previous page.'),
});

export const rejectsQuery = rangeParams.extend({
  limit: limitParam(500, 50),
  cursor: cursorParam(
    z.object({
      at: z.string().regex(/^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$/),
      id: z.string().regex(/^[A-Za-z0-9-]{1,200}$/),
    }),
  )
    .optional()
    .describe('`next` of the previous page.'),
});

export const alertsQuery = z.object({
  since: z
    .string()
    .regex(/^\d{1,16}$/, 'a cursor: the `next` of the previous answer')
    .refine((s) => Number.isSafeInteger(Number(s)), 'a cursor: the `next` of the previous answer')
    .optional()
    .describe('Return alerts after this cursor (the `next` of the previous answer). Default: from the first alert.'),
  limit: limitParam(1000, 100),
});

export class ParamError extends Error {
  constructor(
    readonly field: string,
    readonly reason: string,
  ) {
    super(`${field}: ${reason}`);
  }
}

export function parseParams<T extends z.ZodType>(schema: T, input: Record<string, string | undefined>): z.infer<T> {
  const r = schema.safeParse(input);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  throw new ParamError(issue?.path.join('.') || '(query)', issue?.message ?? 'invalid');
}

/** The day range of a request, defaulting to the last 7 days, at most `maxDays` (aggregates: a year). */
export function dayRange(
  q: { from?: string | undefined; to?: string | undefined },
  maxDays = 366,
  now = new Date(),
): { from: string; to: string } {
  const to = q.to ?? now.toISOString().slice(0, 10);
  const from = q.from ?? new Date(Date.parse(`${to}T00:00:00Z`) - 6 * 86400_000).toISOString().slice(0, 10);
  if (from > to) throw new ParamError('from', 'after `to`');
  if (Date.parse(`${to}T00:00:00Z`) - Date.parse(`${from}T00:00:00Z`) > maxDays * 86400_000) {
    throw new ParamError('from', `the range is longer than ${maxDays} days`);
  }
  return { from, to };
}

export const incidentIdParam = z
  .string()
  .max(300)
  .regex(/^[0-9a-f]{20}\.[a-z0-9_-]+(\.[a-z0-9_-]+)*$/, 'an incident id: 20 hex digits, a dot, its domain');

export const incidentsQuery = rangeParams.extend({
  domain: domainParam.optional().describe('Only this domain.'),
  state: z.enum(['open', 'acknowledged', 'muted', 'resolved']).optional().describe('Only incidents in this state.'),
  kind: z.enum(['failure', 'reporter-stopped', 'posture']).optional().describe('Only incidents of this kind.'),
  limit: limitParam(500, 100),
  cursor: cursorParam(z.object({ o: z.number().int().min(0).max(1_000_000) }))
    .optional()
    .describe('`next` of the previous page.'),
});

export const incidentActBody = z
  .object({
    note: z.string().max(1000).optional().describe("Why, for the incident's events."),
    until: z
      .string()
      .datetime({ offset: true })
      .optional()
      .describe('For mute: until when (ISO 8601). Required there, in the future.'),
  })
  .strict()
  // No body at all is no note and no time.
  .nullish();

/** A forward's id (services/common/forwarding.ts forwardId): 32 hex digits. */
export const forwardIdParam = z.string().regex(/^[0-9a-f]{32}$/, 'a forward id: 32 hex digits');

export const forwardsQuery = z.object({
  state: z.enum(FORWARD_STATES).optional().describe('Only deliveries in this state now.'),
  days: z.coerce
    .number()
    .int()
    .min(1)
    .max(366)
    .default(30)
    .describe('Deliveries recorded in the last N days (1–366, default 30).'),
  limit: limitParam(1000, 100),
});
