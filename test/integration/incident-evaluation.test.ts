// The scheduler derives a domain again only from the first day new reports can change (services/common/incidents/
// incremental.ts). Here a seeded 100-day history of three domains (problems that start, stop and come back, twins, a
// reporter that pauses and one that stops, reports days late) arrives over time; after each evaluation the stored
// incidents must be exactly those a derivation of the whole window gives, and the evaluations must have read less.
// A problem running for weeks goes on from its checkpoint instead of being read again from its first day.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb } from '../../services/api/queries.ts';
import type { Db } from '../../services/common/db.ts';
import { byDomainAndDay, type Incident } from '../../services/common/incidents/derive.ts';
import { addDays } from '../../services/common/days.ts';
import { deriveDomains, incidentOptions, windowStart } from '../../services/common/incidents/load.ts';
import { NO_DAY, readIncidents } from '../../services/common/incidents/store.ts';
import type { AlertWatermark } from '../../services/scheduler/alert-evaluation.ts';
import { evaluateIncidents } from '../../services/scheduler/incident-evaluation.ts';
import { toClickHouseDateTime } from '../../services/common/sql.ts';
import { openStore, report, seeded, type Policy, type Store } from '../helpers/incident-scenario.ts';

const FIRST = '2026-07-20';
const DAYS = 100;
const DOMAINS = ['one.example', 'two.example', 'three.example'];
const PROBLEMS = ['certificate-expired', 'starttls-not-supported', 'sts-policy-fetch-error'];

interface Sent {
  body: string;
  /** The day it arrives: its report day, or some days later. */
  arrives: string;
}

/** Each day's reports of the three domains, with failures in runs and the reporters' pauses, seeded. */
function history(seed: number): Sent[] {
  const random = seeded(seed);
  const out: Sent[] = [];
  const failing = new Map<string, number>();
  for (let n = 0; n < DAYS; n++) {
    const d = addDays(FIRST, n);
    for (const domain of DOMAINS) {
      // A problem runs for some days once it starts; some come back.
      const failures = PROBLEMS.flatMap((rt, k) => {
        const key = `${domain} ${rt}`;
        const left = failing.get(key) || (random() < 0.04 ? 1 + Math.floor(random() * 9) : 0);
        failing.set(key, Math.max(0, left - 1));
        return left > 0 ? [{ rt, mx: `mx${k}.${domain}`, n: 5 + Math.floor(random() * 40) }] : [];
      });
      const sts = (ok: number, fails = failures): Policy => ({ type: 'sts', mode: 'enforce', ok, failures: fails });
      const late = (): string => addDays(d, random() < 0.08 ? 1 + Math.floor(random() * 20) : 0);
      if (random() < 0.95) out.push({ body: report('Google Inc.', domain, d, [sts(500)]), arrives: late() });
      // Microsoft's twins; it pauses for a week in the middle and misses some days.
      if ((n < 40 || n > 47) && random() < 0.9)
        out.push({
          body: report('Microsoft Corporation', domain, d, [sts(300), { ...sts(300), type: 'tlsa' }]),
          arrives: late(),
        });
      // Mail.Ru stops for good after day 70 on one domain.
      if (!(domain === 'two.example' && n > 70))
        out.push({ body: report('Mail.Ru', domain, d, [sts(100, [])]), arrives: late() });
    }
  }
  return out;
}

/** A Db that keeps the SQL it ran. */
function recording(db: Db): Db & { sql: string[] } {
  const sql: string[] = [];
  return { ...db, sql, rows: (text) => (sql.push(text), db.rows(text)) };
}

/** Each of the incidents' events (`id event day`) has its alert, and no alert of an incident is there twice. */
async function expectAlertedOnce(db: Db, events: Set<string>): Promise<void> {
  const alerted = await db.rows<{ e: string; n: number }>(
    `SELECT concat(visitParamExtractString(detail, 'incidentId'), ' ', visitParamExtractString(detail, 'event'),
       ' ', toString(day)) AS e, count() AS n FROM alerts WHERE rule LIKE 'incident-%' GROUP BY e`,
  );
  expect(alerted.filter((a) => Number(a.n) !== 1)).toEqual([]);
  const withAlert = new Set(alerted.map((a) => a.e));
  expect([...events].filter((e) => !withAlert.has(e))).toEqual([]);
}

const eventsOf = (incidents: Incident[]) =>
  new Set(incidents.flatMap((i) => i.events.map((e) => `${i.id} ${e.event} ${e.day}`)));

let store: Store;
let quiet: Store;
beforeAll(async () => {
  [store, quiet] = await Promise.all([openStore(), openStore()]);
});
afterAll(() => Promise.all([store.close(), quiet.close()]));

/**
 * An evaluator of its own (watermark, alert numbers) on the store, and the incidents it stored and derives in full;
 * `chunks`, the domains derived per query.
 */
function evaluator(s: Store, chunks?: { full: number; since: number }) {
  const config = { ...s.config, INCIDENT_WINDOW_DAYS: 120 };
  const options = incidentOptions(config);
  const db = recording(createDb(s.ch, { timeoutSeconds: 30, maxRows: 1_000_000 }));
  let mark: string | undefined;
  const watermark: AlertWatermark = { read: async () => mark, write: async (at) => void (mark = at) };
  let seq = 0;
  const reserve = async (n: number): Promise<number> => ((seq += n), seq - n + 1);
  return {
    db,
    options,
    evaluate: async (today: string, client = s.ch) => {
      // The evaluation sees what was written as stored before its start (the clocks count seconds).
      await new Promise((r) => setTimeout(r, 1100));
      db.sql.length = 0;
      await evaluateIncidents(db, client, config, reserve, new Date(`${today}T06:00:00Z`), watermark, 0, chunks);
      return {
        stored: (await readIncidents(db, { from: NO_DAY, to: today, detail: true })).sort(byDomainAndDay),
        whole: await deriveDomains(db, undefined, today, options),
      };
    },
  };
}

describe('the scheduler evaluation after new reports', () => {
  it('stores what a derivation of the whole window gives, reading fewer days (a domain per query)', async () => {
    const sent = history(26);
    // Each domain its own chunk: one read while the one before is derived and stored.
    const { db, options, evaluate } = evaluator(store, { full: 1, since: 1 });
    const narrowFrom: string[] = [];
    let evaluations = 0;
    let eventsBefore = new Set<string>();
    let windowBefore = '';
    // Every 9 days of arrivals, then an evaluation the next morning.
    for (let n = 8; n < DAYS + 21; n += 9) {
      const upTo = addDays(FIRST, n);
      const batch = sent.filter((s) => s.arrives <= upTo && s.arrives > addDays(upTo, -9));
      await store.write(
        batch.map((s) => s.body),
        true,
      );
      const today = addDays(upTo, 1);
      const { stored, whole } = await evaluate(today);
      expect(stored, `after the arrivals up to ${upTo}`).toEqual(whole);
      evaluations++;
      // Every event of the stored incidents has its alert, once; only the events new since the evaluation before
      // were looked up among the stored alerts (those of stored incidents have theirs), but all of them when the
      // window moved on (every domain derived again, from no stored incidents).
      const events = eventsOf(stored);
      await expectAlertedOnce(db, events);
      const lookedUp = db.sql
        .filter((q) => q.includes('FROM alerts WHERE alert_id IN'))
        .reduce((sum, q) => sum + (q.match(/'[0-9a-f]{32}'/g)?.length ?? 0), 0);
      const windowMoved = windowStart(today, options.windowDays) !== windowBefore;
      expect(lookedUp, `alert ids looked up after the arrivals up to ${upTo}`).toBe(
        [...events].filter((e) => windowMoved || !eventsBefore.has(e)).length,
      );
      eventsBefore = events;
      windowBefore = windowStart(today, options.windowDays);
      // The days the evaluation's facts started from, when later than the window's first.
      const from = windowStart(today, options.windowDays);
      for (const q of db.sql.filter((x) => x.includes('FROM failure_details')))
        for (const [, d] of q.matchAll(/day >= toDate\('(\d{4}-\d\d-\d\d)'\)/g)) if (d! > from) narrowFrom.push(d!);
    }
    expect(evaluations).toBe(13);
    // The later evaluations read from weeks before their day, not from the window's start.
    expect(narrowFrom.length).toBeGreaterThan(0);
    expect(sent.length).toBeGreaterThan(700);
  }, 120_000);

  it("stores every event's alert once after an evaluation failed at its alerts, or between them and its incidents", async () => {
    const own = await openStore();
    try {
      const { db, evaluate } = evaluator(own);
      const policy = (mx: string[]): Policy[] => [
        {
          type: 'sts',
          mode: 'enforce',
          ok: 400,
          failures: mx.map((host) => ({ rt: 'certificate-expired', mx: host, n: 30 })),
        },
      ];
      await own.write(
        Array.from({ length: 10 }, (_, n) => report('Google Inc.', 'six.example', addDays(FIRST, n), policy([]))),
        true,
      );
      await evaluate(addDays(FIRST, 10));
      // Each round a new MX starts failing: an incident opens, its alert due, when the insert of `table` fails once.
      for (const [k, table] of ['alerts', 'incidents'].entries()) {
        const failing = ['mx0.six.example', 'mx1.six.example'].slice(0, k + 1);
        await own.write(
          [10, 11].map((n) => report('Google Inc.', 'six.example', addDays(FIRST, n + 2 * k), policy(failing))),
        );
        const today = addDays(FIRST, 12 + 2 * k);
        let calls = 0;
        const faulty = Object.assign(Object.create(own.ch) as typeof own.ch, {
          insert: (params: Parameters<typeof own.ch.insert>[0]) =>
            params.table === table && calls++ === 0
              ? Promise.reject(new Error(`injected: the insert of ${table} failed`))
              : own.ch.insert(params),
        });
        await expect(evaluate(today, faulty)).rejects.toThrow(`injected: the insert of ${table} failed`);
        const { stored, whole } = await evaluate(today);
        expect(stored).toEqual(whole);
        expect(stored.filter((i) => i.state === 'open').map((i) => i.subject)).toEqual(failing);
        await expectAlertedOnce(db, eventsOf(stored));
      }
    } finally {
      await own.close();
    }
  }, 60_000);

  it('finds a reporter that stopped before the first day of the new reports', async () => {
    const { evaluate } = evaluator(quiet);
    const days = (from: number, to: number) =>
      Array.from({ length: to - from + 1 }, (_, i) => addDays(FIRST, from + i));
    const ok: Policy[] = [{ type: 'sts', mode: 'enforce', ok: 100, failures: [] }];
    // Mail.Ru reports days 0-20, Google every day; after day 21 one day without Mail.Ru is not yet a stop.
    await quiet.write(
      [
        ...days(0, 21).map((d) => report('Google Inc.', 'four.example', d, ok)),
        ...days(0, 20).map((d) => report('Mail.Ru', 'four.example', d, ok)),
      ],
      true,
    );
    const before = await evaluate(addDays(FIRST, 22));
    expect(before.stored).toEqual([]);
    // Days 22 and 23 arrive: three days without it, the first of them (21) before the new reports.
    await quiet.write(days(22, 23).map((d) => report('Google Inc.', 'four.example', d, ok)));
    const after = await evaluate(addDays(FIRST, 24));
    expect(after.stored).toEqual(after.whole);
    expect(after.stored.map((i) => [i.kind, i.subject, i.firstDay])).toEqual([
      ['reporter-stopped', 'Mail.Ru', addDays(FIRST, 21)],
    ]);
  }, 60_000);

  it('goes on from a checkpoint with a problem running for weeks, reading its facts from days before, not from its start', async () => {
    const { db, evaluate } = evaluator(quiet);
    const failing: Policy[] = [
      {
        type: 'sts',
        mode: 'enforce',
        ok: 400,
        failures: [{ rt: 'certificate-expired', mx: 'mx1.five.example', n: 30 }],
      },
    ];
    // 36 days of failures; the first thirty arrive at once, then one day at a time, each evaluated the next day.
    // Mail.Ru reports the first 15 days and stops: a reporter-stopped incident open from day 15, which moves back
    // only the start of the reporters' derivation, not the failures'.
    const ok: Policy[] = [{ type: 'sts', mode: 'enforce', ok: 100, failures: [] }];
    await quiet.write(
      [
        ...Array.from({ length: 30 }, (_, n) => report('Google Inc.', 'five.example', addDays(FIRST, n), failing)),
        ...Array.from({ length: 15 }, (_, n) => report('Mail.Ru', 'five.example', addDays(FIRST, n), ok)),
      ],
      true,
    );
    const first = await evaluate(addDays(FIRST, 30));
    expect(first.stored).toEqual(first.whole);
    const readFrom: string[] = [];
    for (let n = 30; n < 36; n++) {
      // A second reporter joins on day 33: the incident worsens after its checkpoint.
      const sent = [report('Google Inc.', 'five.example', addDays(FIRST, n), failing)];
      if (n >= 33) sent.push(report('Microsoft Corporation', 'five.example', addDays(FIRST, n), failing));
      await quiet.write(sent);
      const { stored, whole } = await evaluate(addDays(FIRST, n + 1));
      expect(stored, `after day ${n}`).toEqual(whole);
      for (const q of db.sql.filter((x) => x.includes('FROM failure_details') && x.includes("'five.example'")))
        readFrom.push(/day >= toDate\('(\d{4}-\d\d-\d\d)'\)/.exec(q)![1]!);
    }
    const [incident, stopped] = (await evaluate(addDays(FIRST, 37))).stored.filter((i) => i.domain === 'five.example');
    expect([stopped!.kind, stopped!.subject, stopped!.firstDay, stopped!.state]).toEqual([
      'reporter-stopped',
      'Mail.Ru',
      addDays(FIRST, 15),
      'open',
    ]);
    expect([incident!.firstDay, incident!.lastDay, incident!.state, incident!.failedSessions]).toEqual([
      FIRST,
      addDays(FIRST, 35),
      'open',
      30 * 33 + 2 * 30 * 3,
    ]);
    expect(incident!.events.map((e) => e.event)).toEqual(['opened', 'worsened']);
    // Each evaluation read the failures from the day after the last one's checkpoint: that one ran on day 30 + k,
    // its checkpoint is a week before (23 + k).
    expect(readFrom).toEqual(Array.from({ length: 6 }, (_, k) => addDays(FIRST, 24 + k)));
  }, 60_000);

  it('opens and resolves a posture incident from the live checks alone, as a whole derivation does', async () => {
    const { evaluate } = evaluator(quiet);
    // Checks are stored as they run: at the clock's time (what tells the scheduler they are new).
    const check = (severity: string, summary: string) => {
      const at = toClickHouseDateTime(new Date());
      return {
        day: at.slice(0, 10),
        row: {
          domain: 'four.example',
          checked_at: at,
          check_name: 'mx-tls',
          subject: 'mx1.four.example',
          severity,
          summary,
          detail: '{}',
          policy_id: '',
          policy_text: '',
        },
      };
    };
    const write = (c: { row: object }) =>
      quiet.ch.insert({ table: 'posture_checks', values: [c.row], format: 'JSONEachRow' });
    const warning = check('warning', 'mx1.four.example: the certificate expires in 20 day(s)');
    await write(warning);
    const found = await evaluate(warning.day);
    expect(found.stored).toEqual(found.whole);
    const posture = found.stored.filter((i) => i.kind === 'posture');
    expect(posture.map((i) => [i.subject, i.state, i.firstDay, i.severity, i.finding])).toEqual([
      ['mx1.four.example', 'open', warning.day, 'medium', 'mx1.four.example: the certificate expires in 20 day(s)'],
    ]);
    // The certificate renewed: the next check finds it fine.
    const fine = check('ok', 'mx1.four.example: STARTTLS, TLSv1.3, trusted, expires in 89 days');
    await write(fine);
    const fixed = await evaluate(fine.day);
    expect(fixed.stored).toEqual(fixed.whole);
    expect(fixed.stored.filter((i) => i.kind === 'posture').map((i) => [i.state, i.resolvedDay])).toEqual([
      ['resolved', fine.day],
    ]);
  }, 60_000);
});
