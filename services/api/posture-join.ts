// A reported failure next to what our own live check of the domain found nearest in time (services/common/posture):
// "Google reported 12 sts-policy-fetch-error sessions on 2026-11-28; our check at 06:00 that day got HTTP 404".
import { nearestRun, type StoredCheck } from '../common/posture-store.ts';
import type { Db } from './queries.ts';
import { plural } from './ui/html.ts';

export interface PostureNote {
  checkedAt: string;
  check: string;
  subject: string;
  severity: string;
  summary: string;
  /** The note as one sentence. */
  sentence: string;
}

/** The check runs nearest to midday of `day` for some domains (at most 20: a report may name thousands). */
export async function checksNear(db: Db, domains: string[], day: string): Promise<Map<string, StoredCheck[]>> {
  const list = [...new Set(domains)].slice(0, 20);
  const runs = await Promise.all(list.map((d) => nearestRun(db, d, `${day} 12:00:00`)));
  return new Map(list.map((d, i) => [d, runs[i]!]));
}

/** Which check speaks to a failure: the policy for sts-* types, the MX host's TLS (and coverage) for the others. */
export function noteFor(
  failure: { resultType: string; receivingMxHostname: string | null },
  run: StoredCheck[] | undefined,
): PostureNote | undefined {
  if (!run || run.length === 0) return undefined;
  const type = failure.resultType.toLowerCase();
  const mx = (failure.receivingMxHostname ?? '').toLowerCase().replace(/\.$/, '');
  const pick =
    type.startsWith('sts-') || type === 'no-policy-found'
      ? run.find((r) => r.check_name === 'policy')
      : (run.find((r) => r.check_name === 'mx-tls' && r.subject === mx) ??
        (type === 'validation-failure' ? run.find((r) => r.check_name === 'mx-coverage') : undefined));
  if (!pick) return undefined;
  return {
    checkedAt: pick.checked_at,
    check: pick.check_name,
    subject: pick.subject,
    severity: pick.severity,
    summary: pick.summary,
    sentence: `Our check at ${pick.checked_at} UTC ${pick.severity === 'ok' ? 'found this in order' : 'found'}: ${pick.summary}.`,
  };
}

/**
 * When a live check ran, next to a failure's last day: a check of today beside a failure of five weeks ago answers
 * for now, not for then.
 */
export function checkedRelative(checkedAt: string, lastDay: string): string {
  const days = Math.round(
    (Date.parse(`${checkedAt.slice(0, 10)}T00:00:00Z`) - Date.parse(`${lastDay}T00:00:00Z`)) / 86_400_000,
  );
  if (days === 0) return '(the day of its last failure)';
  return days > 0
    ? `(${plural(days, 'day')} after its last failure)`
    : `(${plural(-days, 'day')} before its last failure)`;
}

/** A live check's note, saying when it ran next to the failure's last day. */
export const noteInTime = (note: PostureNote | undefined, lastDay: string): PostureNote | undefined =>
  note && { ...note, sentence: `${note.sentence} ${checkedRelative(note.checkedAt, lastDay)}` };
