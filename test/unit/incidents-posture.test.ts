// Posture incidents from the live checks' days (services/common/incidents/posture.ts), and the incremental merge's
// rules (incremental.ts) that need no database; the scheduler's end-to-end comparison is in
// test/integration/incident-evaluation.test.ts.
import { describe, expect, it } from 'vitest';
import type { Incident } from '../../services/common/incidents/derive.ts';
import { addDays } from '../../services/common/days.ts';
import { mergeIncidents, settledBefore } from '../../services/common/incidents/incremental.ts';
import { postureIncidents, type PostureDay, type PostureRun } from '../../services/common/incidents/posture.ts';

const D0 = '2026-03-01';
const day = (n: number): string => addDays(D0, n);
type Seen = 'ok' | 'warning' | 'critical' | [worst: 'warning' | 'critical', last: 'ok'];
/** The mx-tls check of mx.a.example on each day: what it found, or nothing (not met that day). */
const checks = (seen: Array<Seen | null>): PostureDay[] =>
  seen.flatMap((s, n) =>
    s === null
      ? []
      : [
          {
            domain: 'a.example',
            day: day(n),
            check: 'mx-tls',
            subject: 'mx.a.example',
            worst: Array.isArray(s) ? s[0] : s,
            last: Array.isArray(s) ? s[1] : s,
            summary: Array.isArray(s) || s !== 'ok' ? `mx.a.example: found on day ${n}` : 'mx.a.example: fine',
          },
        ],
  );
const runs = (count: number, cut: number[] = []): PostureRun[] =>
  Array.from({ length: count }, (_, n) => ({ domain: 'a.example', day: day(n), cut: cut.includes(n) }));

describe('posture incidents', () => {
  it('open on the first day a check finds a problem, worsen to critical, resolve on the first fine check', () => {
    const [only, ...rest] = postureIncidents(checks(['ok', 'warning', 'warning', 'critical', 'ok']), runs(5));
    expect(rest).toEqual([]);
    expect(only).toMatchObject({
      kind: 'posture',
      resultType: 'mx-tls',
      subject: 'mx.a.example',
      firstDay: day(1),
      lastDay: day(3),
      resolvedDay: day(4),
      state: 'resolved',
      severity: 'high',
      finding: 'mx.a.example: found on day 3',
      failedSessions: 0,
    });
    expect(only!.events.map((e) => `${e.event} ${e.day}`)).toEqual([
      `opened ${day(1)}`,
      `worsened ${day(3)}`,
      `resolved ${day(4)}`,
    ]);
  });

  it('a problem fixed within a day resolves that day; one back later is a new incident linked to the first', () => {
    const found = postureIncidents(checks([['warning', 'ok'], 'ok', 'warning']), runs(3));
    expect(found.map((i) => [i.firstDay, i.resolvedDay, i.severity])).toEqual([
      [day(0), day(0), 'medium'],
      [day(2), null, 'medium'],
    ]);
    expect(found[1]!.previousId).toBe(found[0]!.id);
  });

  it('a subject a complete run no longer meets resolves; a run cut short by its deadline resolves nothing', () => {
    const cut = postureIncidents(checks(['critical', null, null]), runs(3, [1, 2]));
    expect(cut.map((i) => i.state)).toEqual(['open']);
    const gone = postureIncidents(checks(['critical', null, null]), runs(3, [1]));
    expect(gone.map((i) => i.resolvedDay)).toEqual([day(2)]);
  });

  it("leave out the run's own result (its deadline): it is about our checking, not the domain", () => {
    const run: PostureDay = { ...checks(['warning'])[0]!, check: 'run', subject: 'a.example' };
    expect(postureIncidents([run], runs(1))).toEqual([]);
  });
});

describe('the incremental merge', () => {
  const incident = (firstDay: number, resolvedDay: number | null, subject = 'mx.a.example'): Incident =>
    ({
      id: `${subject}-${firstDay}`,
      domain: 'a.example',
      kind: 'failure',
      resultType: 'certificate-expired',
      subject,
      firstDay: day(firstDay),
      resolvedDay: resolvedDay === null ? null : day(resolvedDay),
      previousId: null,
    }) as Incident;

  it('moves the start back over every incident still running on it, until none does', () => {
    // 20-30 runs on day 25; 10-21 runs on day 20; 2-5 ended before.
    const stored = [incident(2, 5), incident(10, 21), incident(20, 30, 'mx2.a.example')];
    expect(settledBefore(stored, day(25))).toBe(day(10));
    expect(settledBefore([incident(8, null)], day(25))).toBe(day(8));
    expect(settledBefore(stored, day(40))).toBe(day(40));
  });

  it('keeps the stored incidents before the start and links the derived ones after it to them', () => {
    const stored = [incident(2, 5), incident(10, 12)];
    const derived = [incident(9, 12), incident(20, null)];
    const merged = mergeIncidents(stored, derived, day(10));
    expect(merged.map((i) => [i.id, i.previousId])).toEqual([
      ['mx.a.example-2', null],
      ['mx.a.example-20', 'mx.a.example-2'],
    ]);
  });
});
