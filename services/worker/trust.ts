// Which copy of a report is counted. A report can arrive more than once under one identity (organization, report-id,
// range): by mail and by HTTPS as the DNS record asks, re-sent, or forged: anyone can POST, and some report-ids are
// predictable (Google's are `<date>T00:00:00Z_<domain>`). A copy never replaces one whose origin is better
// authenticated, and among equals the first received stays:
//   4  an operator's choice (the latest choice first)
//   3  mail with a valid DKIM signature aligned with the submitter (RFC 8460 §3)
//   2  mail without one
//   1  an HTTPS POST, or a report file imported (nothing authenticates its origin)
// A copy with the counted copy's figures changes nothing (a re-delivery, or another serializer's text of the same
// report); a copy with other figures that does not outrank it is a conflict: kept (report_copies, raw_reports), shown,
// counted nowhere. One that outranks it replaces it.
//
// The order is one number, the copy's `version`, under which its rows are written when it is counted: the reads take
// a report's greatest version, so whichever order copies are processed in, by however many workers, the counted one
// is the best, and a retried processing writes the same version again.
import type { ReportJob } from '../../schemas/job.ts';

export type Trust = 1 | 2 | 3 | 4;

export function trustOf(job: Pick<ReportJob, 'smtp' | 'chosen'>): Trust {
  if (job.chosen) return 4;
  if (!job.smtp) return 1;
  return job.smtp.dkim.result === 'pass' && job.smtp.dkim.submitterAligned ? 3 : 2;
}

const TIME_SPAN = 2 ** 42; // milliseconds: until the year 2109
const NORMALIZERS = 2 ** 8;

/**
 * trust · 2^50 + time · 2^8 + normalizer, under 2^53 (exact in a JavaScript number): time is the receipt's milliseconds
 * inverted (the first received ranks higher), but for operators' choices, where the latest ranks higher. The
 * normalizer only orders processings of the same receipt (a re-processing by a newer normalizer replaces the rows).
 * schemas/clickhouse/0010 computes the same for the copies stored before.
 */
export function copyVersion(trust: Trust, receivedAtMs: number, normalizerVersion: number): number {
  const ms = Math.min(Math.max(0, Math.trunc(receivedAtMs)), TIME_SPAN - 1);
  const time = trust === 4 ? ms : TIME_SPAN - 1 - ms;
  return (trust * TIME_SPAN + time) * NORMALIZERS + (normalizerVersion % NORMALIZERS);
}

/**
 * One copy as the decision sees it: its rank, its figures (rows.ts figuresDigest) and its text's hash. Two copies are
 * the same report when either is equal (the copies stored before migration 0010 have their text's hash as figures).
 */
export interface Copy {
  version: number;
  sha: string;
  text: string;
}

const same = (a: Copy, b: Copy): boolean => a.sha === b.sha || a.text === b.text;

/**
 * What becomes of `copy` among the copies known (itself among them or not): `store` when it is the best (its rows are
 * written), `duplicate` when the best has its figures (nothing to write but its receipt), else `conflict`. Ties of rank
 * (two receipts in the same millisecond) go to the smaller hash, so every processing decides alike.
 */
export function decideCopy(copy: Copy, known: Copy[]): 'store' | 'duplicate' | 'conflict' {
  let best = copy;
  for (const k of known) if (k.version > best.version || (k.version === best.version && k.sha < best.sha)) best = k;
  if (!same(best, copy)) return 'conflict';
  return best.version === copy.version ? 'store' : 'duplicate';
}
