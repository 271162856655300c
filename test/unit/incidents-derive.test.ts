// The incident rules that need no database: when a run of failures resolves, when a reporter counts as stopped, and
// severity. The end-to-end scenarios (twins, arrival orders, late reports) are in test/integration/incidents.test.ts.
import { addDays } from '../../services/common/days.ts';
import { describe, expect, it } from 'vitest';
import {
  deriveIncidents,
  domainOfId,
  severityOf,
  type FailureFact,
  type ReporterDay,
} from '../../services/common/incidents/derive.ts';

const D0 = '2026-03-01';
const day = (n: number): string => addDays(D0, n);
const reported = (days: number[], organization = 'Google Inc.', ok = 100): ReporterDay[] =>
  days.map((n) => ({ domain: 'a.example', day: day(n), organization, successful: ok, failed: 0, mode: 'enforce' }));
const failed = (days: number[], n = 10): FailureFact[] =>
  days.map((d) => ({
    domain: 'a.example',
    day: day(d),
    resultType: 'certificate-expired',
    subject: 'mx.a.example',
    failed: n,
    reporters: ['Google Inc.'],
    ips: [['192.0.2.1', n]],
  }));
const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe('deriveIncidents', () => {
  it('resolves after three consecutive clean days with reports; a day without reports restarts the count', () => {
    const [only] = deriveIncidents(failed([0, 1]), reported([0, 1, 2, 3, 5, 6, 7]));
    // Days 2 and 3 were clean, day 4 had no report: 5, 6, 7 are the three.
    expect([only!.state, only!.lastDay, only!.resolvedDay]).toEqual(['resolved', day(1), day(7)]);
    const [open] = deriveIncidents(failed([0, 1]), reported([0, 1, 2, 3]));
    expect([open!.state, open!.resolvedDay]).toEqual(['open', null]);
  });

  it('a failure back after the resolution is a new incident linked to the one before; before it, the same one', () => {
    const twice = deriveIncidents(failed([0, 5]), reported(range(0, 6)));
    expect(twice.map((i) => [i.firstDay, i.lastDay, i.state])).toEqual([
      [day(0), day(0), 'resolved'],
      [day(5), day(5), 'open'],
    ]);
    expect(twice[1]!.previousId).toBe(twice[0]!.id);
    const once = deriveIncidents(failed([0, 3]), reported(range(0, 6)));
    expect(once.map((i) => [i.firstDay, i.lastDay])).toEqual([[day(0), day(3)]]);
  });

  it('a regular reporter that stops while others report is an incident; an occasional one is not', () => {
    const others = reported(range(0, 20), 'Microsoft Corporation');
    const stopped = deriveIncidents([], [...others, ...reported(range(0, 13))]);
    expect(stopped.map((i) => [i.kind, i.subject, i.firstDay, i.lastDay, i.state])).toEqual([
      ['reporter-stopped', 'Google Inc.', day(14), day(20), 'open'],
    ]);
    // Two days without it: not yet (INCIDENT_STOPPED_AFTER_DAYS = 3).
    expect(
      deriveIncidents([], [...reported(range(0, 15), 'Microsoft Corporation'), ...reported(range(0, 13))]),
    ).toEqual([]);
    // Back on day 18: resolved then.
    const back = deriveIncidents([], [...others, ...reported([...range(0, 13), 18, 19, 20])]);
    expect(back.map((i) => [i.state, i.lastDay, i.resolvedDay])).toEqual([['resolved', day(17), day(18)]]);
    // Weekly: never regular.
    expect(deriveIncidents([], [...others, ...reported([0, 7, 14])])).toEqual([]);
  });

  it('rates severity by the failing share, the mode and whether the same reporters delivered otherwise', () => {
    expect(severityOf(0.3, 'enforce', false)).toBe('critical');
    expect(severityOf(0.3, 'enforce', true)).toBe('high');
    expect(severityOf(0.06, 'enforce', true)).toBe('high');
    expect(severityOf(0.6, 'testing', true)).toBe('high');
    expect(severityOf(0.06, 'testing', true)).toBe('medium');
    expect(severityOf(0.001, 'testing', true)).toBe('low');
  });

  it('names the domain in the id', () => {
    const [i] = deriveIncidents(failed([0]), reported([0]));
    expect(domainOfId(i!.id)).toBe('a.example');
    expect(domainOfId('x.a.example')).toBeUndefined();
  });
});
