// Which new events of the alert feed people are told of (services/scheduler/incident-events.ts), without a database.
import { describe, expect, it } from 'vitest';
import type { TrackedIncident } from '../../services/common/incidents/acts.ts';
import { incidentCandidates, notificationsFor } from '../../services/scheduler/incident-events.ts';
import type { Alert } from '../../services/scheduler/alert-evaluation.ts';
import { slackBody } from '../../services/scheduler/notify/messages.ts';

function incident(over: Partial<TrackedIncident> = {}): TrackedIncident {
  return {
    id: `${'a'.repeat(20)}.example.com`,
    domain: 'example.com',
    kind: 'failure',
    resultType: 'certificate-expired',
    subject: 'mx.example.com',
    state: 'open',
    firstDay: '2026-11-01',
    lastDay: '2026-11-03',
    resolvedDay: null,
    failedSessions: 30,
    sessionsPerDay: 10,
    reporters: ['Google Inc.'],
    sendingIps: { count: 0, top: [] },
    mode: 'enforce',
    severity: 'high',
    failingShare: 0.1,
    previousId: null,
    diagnosis: 'certificate-expired',
    mutedUntil: null,
    daily: [],
    events: [],
    ...over,
  };
}

/** The feed rows of the incident's events, as the store would return them new. */
const fresh = (i: TrackedIncident, idPrefix = 'alert') =>
  incidentCandidates(i).map((candidate, n) => {
    const { incident: _i, event: _e, key: _k, ...row } = candidate;
    const alert: Alert = { ...row, alert_id: `${idPrefix}-${n}`, seq: n + 1, created_at: '2026-11-04 00:00:00' };
    return { alert, candidate };
  });

const ev = (event: string, day: string, actor: string | null = null) => ({ event, day, at: null, actor, reason: '' });

describe('notifications from new incident events', () => {
  it('an incident first heard of is told as opened, once, whatever else happened to it since', () => {
    const i = incident({ events: [ev('opened', '2026-11-01'), ev('worsened', '2026-11-02')] });
    const out = notificationsFor(fresh(i), 'https://tlsrpt.example.com');
    expect(out.map((n) => n.title)).toEqual(['[opened] example.com: certificate-expired at mx.example.com']);
    expect(out[0]!.link).toBe(`https://tlsrpt.example.com/ui/incidents/${i.id}`);
  });

  it('an acknowledged or muted incident is told of when it worsens or resolves, not when someone acts on it', () => {
    const acked = incident({ state: 'acknowledged', events: [ev('acknowledged', '2026-11-02', 'ops')] });
    expect(notificationsFor(fresh(acked), '')).toEqual([]);
    const worse = incident({ state: 'muted', events: [ev('worsened', '2026-11-03')] });
    expect(notificationsFor(fresh(worse), '').map((n) => n.title)).toEqual([
      '[worsened] example.com: certificate-expired at mx.example.com',
    ]);
    const back = incident({ state: 'acknowledged', events: [ev('reopened', '2026-11-03')] });
    expect(notificationsFor(fresh(back), '')).toEqual([]);
  });

  it('incidents that began and ended in one evaluation make one summary per domain', () => {
    const a = incident({
      state: 'resolved',
      resolvedDay: '2026-11-06',
      events: [ev('opened', '2026-11-01'), ev('resolved', '2026-11-06')],
    });
    const b = incident({
      id: `${'b'.repeat(20)}.example.com`,
      subject: 'mx2.example.com',
      state: 'resolved',
      resolvedDay: '2026-11-07',
      events: [ev('opened', '2026-11-02'), ev('resolved', '2026-11-07')],
    });
    const out = notificationsFor([...fresh(a), ...fresh(b, 'alert-b')], '');
    expect(out.map((n) => [n.kind, n.domains, n.lines.length])).toEqual([['summary', ['example.com'], 2]]);
  });
});

describe("a reporter's own words in Slack", () => {
  it('never become a mention or a link: the text and its fallback are escaped', () => {
    const hostile = incident({
      kind: 'reporter-stopped',
      resultType: '',
      subject: '<!channel> <https://evil.example|Open> &',
      events: [{ event: 'opened', day: '2026-11-03', at: null, actor: null, reason: 'stopped' }],
    });
    const [n] = notificationsFor(fresh(hostile), '');
    expect(n!.title).toContain('<!channel>');
    const body = JSON.stringify(slackBody(n!));
    expect(body).not.toMatch(/<!channel>|<https:/);
    expect(body).toContain('&lt;!channel&gt; &lt;https://evil.example|Open&gt; &amp;');
  });
});
