// Property-based mutation of the real corpus (fast-check): drop, retype, duplicate and garble fields of reports;
// cut and splice the bytes of reports and e-mails. Used by the short run in the test suite and by `npm run fuzz`.
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { REJECT_REASONS } from '../../services/common/errors.ts';
import { extractReports } from '../../services/common/intake/extract.ts';
import { processReportJob, type ProcessResult } from '../../services/worker/process-job.ts';
import { emptyTableRows, INSERT_PHASES, type TableRows } from '../../schemas/rows.ts';
import { corpusEmails, corpusReports } from './corpus.ts';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

const reports = corpusReports().map((r) => JSON.parse(r.json) as Json);
const emails = corpusEmails().map((e) => e.raw);

/** Every path (list of keys and indexes) inside a JSON value. */
function paths(v: Json, prefix: Array<string | number> = []): Array<Array<string | number>> {
  const out: Array<Array<string | number>> = [prefix];
  if (Array.isArray(v)) v.forEach((x, i) => out.push(...paths(x, [...prefix, i])));
  else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) out.push(...paths(x, [...prefix, k]));
  return out;
}

function getAt(v: Json, path: Array<string | number>): Json | undefined {
  let cur: Json | undefined = v;
  for (const p of path) cur = cur && typeof cur === 'object' ? (cur as Record<string | number, Json>)[p] : undefined;
  return cur;
}

function setAt(v: Json, path: Array<string | number>, value: Json | undefined): Json {
  if (path.length === 0) return value ?? null;
  const [head, ...rest] = path;
  if (Array.isArray(v)) {
    const copy = [...v];
    if (value === undefined && rest.length === 0) copy.splice(Number(head), 1);
    else copy[Number(head)] = setAt(copy[Number(head)] ?? null, rest, value);
    return copy;
  }
  if (v && typeof v === 'object') {
    const copy = { ...v };
    if (value === undefined && rest.length === 0) delete copy[String(head)];
    else copy[String(head)] = setAt(copy[String(head)] ?? null, rest, value);
    return copy;
  }
  return v;
}

const weirdValue = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer(),
  fc.double(),
  fc.constantFrom(-1, 2 ** 53 + 2, 1e308, 0.5, Number.MAX_SAFE_INTEGER),
  fc.string(),
  fc.string({ unit: 'binary' }),
  fc.constantFrom(
    '',
    ' ',
    '2024-02-30T00:00:00Z',
    '1969-01-01',
    '::ffff:1.2.3.4',
    '*.',
    'mx: ',
    '\u0000',
    '\ud800',
    '["3 1 1 zz"]',
  ),
  fc.constant([] as Json),
  fc.constant({}),
  fc.array(fc.string(), { maxLength: 3 }),
);

export type Mutation =
  | { kind: 'drop'; pick: number }
  | { kind: 'retype'; pick: number; value: Json }
  | { kind: 'duplicate'; pick: number }
  | { kind: 'garble'; pick: number; text: string };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('drop' as const), pick: fc.nat() }),
  fc.record({ kind: fc.constant('retype' as const), pick: fc.nat(), value: weirdValue }),
  fc.record({ kind: fc.constant('duplicate' as const), pick: fc.nat() }),
  fc.record({
    kind: fc.constant('garble' as const),
    pick: fc.nat(),
    text: fc.string({ unit: 'binary', maxLength: 20 }),
  }),
);

export function mutate(report: Json, m: Mutation): Json {
  const all = paths(report).slice(1);
  if (all.length === 0) return report;
  const path = all[m.pick % all.length]!;
  const current = getAt(report, path);
  switch (m.kind) {
    case 'drop':
      return setAt(report, path, undefined);
    case 'retype':
      return setAt(report, path, m.value);
    case 'duplicate': {
      const parent = getAt(report, path.slice(0, -1));
      if (Array.isArray(parent)) return setAt(report, path.slice(0, -1), [...parent, current ?? null]);
      return setAt(report, path, [current ?? null, current ?? null]);
    }
    case 'garble':
      return setAt(
        report,
        path,
        typeof current === 'string'
          ? current.slice(0, current.length / 2) + m.text + current.slice(current.length / 2)
          : m.text,
      );
  }
}

export type ByteEdit =
  { kind: 'cut'; at: number } | { kind: 'splice'; at: number; bytes: Uint8Array } | { kind: 'none' };
const byteEdit: fc.Arbitrary<ByteEdit> = fc.oneof(
  fc.constant({ kind: 'none' as const }),
  fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('splice' as const), at: fc.nat(), bytes: fc.uint8Array({ maxLength: 32 }) }),
);

export function editBytes(b: Buffer, e: ByteEdit): Buffer {
  if (e.kind === 'none' || b.length === 0) return b;
  const at = e.at % b.length;
  if (e.kind === 'cut') return b.subarray(0, at);
  return Buffer.concat([b.subarray(0, at), e.bytes, b.subarray(at)]);
}

export const reportCase = fc.record({
  report: fc.nat({ max: reports.length - 1 }),
  mutations: fc.array(mutation, { maxLength: 4 }),
  gzip: fc.boolean(),
  edit: byteEdit,
});

export const emailCase = fc.record({
  email: fc.nat({ max: emails.length - 1 }),
  edits: fc.array(byteEdit, { maxLength: 3 }),
});

export function reportBody(c: { report: number; mutations: Mutation[]; gzip: boolean; edit: ByteEdit }): Buffer {
  const json = c.mutations.reduce<Json>((r, m) => mutate(r, m), reports[c.report]!);
  const text = Buffer.from(JSON.stringify(json) ?? 'null');
  return editBytes(c.gzip ? gzipSync(text) : text, c.edit);
}

const REASONS = new Set<string>(REJECT_REASONS);

/** The property: a stored report or a typed rejection, never an exception and never an internal error. */
export function checkBody(body: Buffer, id: string): ProcessResult {
  const job = {
    v: 1,
    receiptId: id,
    receivedAt: '2025-01-01T00:00:00.000Z',
    channel: 'https',
    bodyBase64: body.toString('base64'),
  };
  const result = processReportJob(job, id, { maxDecompressedBytes: 1 << 24 });
  if (result.outcome === 'rejected') {
    if (!REASONS.has(result.reason)) throw new Error(`untyped rejection ${result.reason}`);
    if (result.reason === 'internal-error') throw new Error(`internal error: ${result.detail}`);
  } else {
    for (const p of result.rows.policy_results) {
      if (!Number.isSafeInteger(p.successful_sessions) || p.successful_sessions < 0)
        throw new Error('bad count in a stored row');
    }
  }
  return result;
}

export async function checkEmail(raw: Buffer, id: string): Promise<ProcessResult[]> {
  let mail;
  try {
    mail = await extractReports(raw, { maxMimeParts: 100, maxUnzippedBytes: 1 << 24 });
  } catch {
    return []; // the receiver answers 5xx: a typed rejection at the SMTP level
  }
  return mail.parts.map((p, i) => checkBody(p.content, `${id}-${i}`));
}

export function emailBytes(c: { email: number; edits: ByteEdit[] }): Buffer {
  return c.edits.reduce((b, e) => editBytes(b, e), emails[c.email]!);
}

/** Collects the rows of stored results, to prove ClickHouse takes every one of them. */
export function collectRows(into: TableRows, result: ProcessResult): void {
  for (const t of INSERT_PHASES.flat()) for (const r of result.rows[t]) (into[t] as object[]).push(r);
}

export { emptyTableRows };
