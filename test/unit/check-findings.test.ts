// The checks page's history of each finding (services/api/ui/pages/checks.ts): what it is in the newest run, since
// which run, what it was before, and an MX host the newest run no longer found.
import { describe, expect, it } from 'vitest';
import { findings, type CheckRow } from '../../services/api/ui/pages/checks.ts';

const runs = ['2026-12-07 12:00:00', '2026-12-07 06:00:00', '2026-12-07 00:00:00'];
const row = (at: number, subject: string, severity: string, check_name = 'mx-tls'): CheckRow => ({
  at: runs[at]!,
  check_name,
  subject,
  severity,
  summary: `${subject} ${severity} at run ${at}`,
});

describe('each finding over the runs shown', () => {
  it('is as the newest run found it, since the start of that streak, with what it was before', () => {
    const rows = [
      row(0, 'mx1.a.example', 'critical'),
      row(1, 'mx1.a.example', 'critical'),
      row(2, 'mx1.a.example', 'ok'),
      // Gone from the newest run: the MX record no longer names it.
      row(1, 'mx2.a.example', 'ok'),
      row(2, 'mx2.a.example', 'ok'),
      row(0, 'a.example', 'ok', 'policy'),
      row(1, 'a.example', 'ok', 'policy'),
      row(2, 'a.example', 'ok', 'policy'),
      row(0, 'mx3.a.example', 'warning'),
    ];
    expect(findings(rows, runs)).toEqual([
      {
        check: 'mx-tls',
        subject: 'mx1.a.example',
        now: 'critical',
        summary: 'mx1.a.example critical at run 0',
        since: runs[1],
        before: { at: runs[2], severity: 'ok' },
        badRuns: 2,
      },
      {
        check: 'mx-tls',
        subject: 'mx3.a.example',
        now: 'warning',
        summary: 'mx3.a.example warning at run 0',
        since: runs[0],
        before: { at: runs[1], severity: 'absent' },
        badRuns: 1,
      },
      {
        check: 'mx-tls',
        subject: 'mx2.a.example',
        now: 'gone',
        summary: 'mx2.a.example ok at run 1',
        since: runs[0],
        before: { at: runs[1], severity: 'ok' },
        badRuns: 0,
      },
      {
        check: 'policy',
        subject: 'a.example',
        now: 'ok',
        summary: 'a.example ok at run 0',
        since: runs[2],
        before: undefined,
        badRuns: 0,
      },
    ]);
  });
});
