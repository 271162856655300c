// The incident rules that need no database: when a run of failures resolves, when a reporter counts as stopped, and
// severity. The end-to-end scenarios (twins, arrival orders, late reports) are in test/integration/incidents.test.ts.
import { addDays } from '../../services/common/days.ts';
import { describe, expect, it } from 'vitest';
import {
  deriveIncidents,
  domainOfId,
  resumeKey,
  severityOf,
  type FailureFact,
  type ReporterDay,
} from '../../services/common/incidents/derive.ts';
import { mergeIncidents } from '../../services/common/incidents/incremental.ts';

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

describe('checkpoints: going on from the end of a day without reading the days before it', () => {
  /** A seeded history of one domain: two reporters, three problems at two hosts, gaps without reports. */
  function history(seed: number, days: number): { failures: FailureFact[]; reporterDays: ReporterDay[] } {
    let x = seed;
    const random = (): number => (x = (x * 1103515245 + 12345) % 2147483648) / 2147483648;
    const failures: FailureFact[] = [];
    const reporterDays: ReporterDay[] = [];
    const left = new Map<string, number>();
    for (let n = 0; n < days; n++) {
      if (random() < 0.1) continue; // a day without any report
      for (const org of ['Google Inc.', 'Microsoft Corporation'])
        if (random() < 0.85)
          reporterDays.push({
            domain: 'a.example',
            day: day(n),
            organization: org,
            successful: Math.floor(random() * 500),
            failed: Math.floor(random() * 50),
            mode: random() < 0.3 ? 'testing' : 'enforce',
          });
      for (const [rt, subject] of [
        ['certificate-expired', 'mx1.a.example'],
        ['starttls-not-supported', 'mx2.a.example'],
        ['sts-policy-fetch-error', 'mta-sts.a.example'],
      ] as const) {
        const key = `${rt} ${subject}`;
        const runLeft = left.get(key) || (random() < 0.06 ? 1 + Math.floor(random() * 25) : 0);
        left.set(key, Math.max(0, runLeft - 1));
        if (runLeft === 0 || random() < 0.2) continue; // some failing runs skip a day
        const n1 = 1 + Math.floor(random() * 60);
        failures.push({
          domain: 'a.example',
          day: day(n),
          resultType: rt,
          subject,
          failed: n1,
          reporters: random() < 0.5 ? ['Google Inc.'] : ['Google Inc.', 'Microsoft Corporation'],
          ips: [[`192.0.2.${Math.floor(random() * 20)}`, n1]],
        });
      }
    }
    return { failures, reporterDays };
  }

  it('a derivation resumed from any day’s checkpoints gives what a derivation of every day gives', () => {
    let resumedRuns = 0;
    for (let seed = 1; seed <= 40; seed++) {
      const { failures, reporterDays } = history(seed, 90);
      const whole = deriveIncidents(failures, reporterDays);
      for (const cut of [10, 33, 47, 70, 89]) {
        const c = day(cut);
        // First the days up to the cut, checkpointed at its end; then only the facts after it.
        const before = deriveIncidents(
          failures.filter((f) => f.day <= c),
          reporterDays.filter((r) => r.day <= c),
          undefined,
          { checkpointDay: c },
        );
        const from = new Map(
          before.flatMap((i) =>
            i.resume && i.kind === 'failure'
              ? [[resumeKey(i.domain, i.resultType, i.subject), i as typeof i & { resume: typeof i.resume }]]
              : [],
          ),
        );
        resumedRuns += from.size;
        const resumed = deriveIncidents(
          failures.filter((f) => f.day > c),
          reporterDays.filter((r) => r.day > c),
          undefined,
          { from },
        );
        // As the scheduler merges them: the incidents that ended by the cut as derived then, the rest as resumed.
        const merged = mergeIncidents(before, resumed, day(cut + 1), new Set([...from.values()].map((i) => i.id)))
          .filter((i) => i.kind === 'failure')
          .map(({ resume: _resume, ...i }) => i);
        const wholeFailures = whole.filter((i) => i.kind === 'failure');
        const key = (i: { id: string }) => i.id;
        expect(
          merged.sort((a, b) => key(a).localeCompare(key(b))),
          `seed ${seed}, cut ${c}`,
        ).toEqual(wholeFailures.sort((a, b) => key(a).localeCompare(key(b))));
      }
    }
    // The histories have problems running across the cuts.
    expect(resumedRuns).toBeGreaterThan(50);
  });

  it('checkpoints only what is running at the end of the day, and nothing past CHECKPOINT_MAX_NAMES', () => {
    const running = deriveIncidents(failed([0, 1, 2, 5]), reported(range(0, 6)), undefined, { checkpointDay: day(3) });
    expect(running.map((i) => [i.firstDay, i.resume?.day, i.resume?.failingDays, i.resume?.clean])).toEqual([
      [day(0), day(3), 3, 1],
    ]);
    const ended = deriveIncidents(failed([0]), reported(range(0, 6)), undefined, { checkpointDay: day(4) });
    expect(ended[0]!.resume).toBeUndefined();
    const later = deriveIncidents(failed([5]), reported(range(0, 6)), undefined, { checkpointDay: day(4) });
    expect(later[0]!.resume).toBeUndefined();
    const manyIps = failed([0, 1]).map((f, k) => ({
      ...f,
      ips: Array.from({ length: 600 }, (_, i) => [`198.51.${k}.${i % 250}-${i}`, 1] as [string, number]),
    }));
    const crowded = deriveIncidents(manyIps, reported(range(0, 3)), undefined, { checkpointDay: day(2) });
    expect(crowded[0]!.sendingIps.count).toBe(1200);
    expect(crowded[0]!.resume).toBeUndefined();
  });
});
