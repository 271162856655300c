/* eslint-disable @typescript-eslint/no-explicit-any, @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-member-access, @typescript-eslint/no-unsafe-call, @typescript-eslint/no-unsafe-argument, @typescript-eslint/no-unsafe-return -- response bodies are untyped JSON, checked by the assertions */
// Incidents from a history of three domains with real problems: an expired certificate on one MX that stops and
// comes back, a week of policy fetch errors, a reporter that stops, a new MX without STARTTLS; Microsoft's sts+tlsa
// twins. Written by the worker's own path in daily order, shuffled, and all at once: the same incidents each time.
// A late report extends the incident it belongs to. Then the API: list, one incident, people's acts and their rules.
import { createHash } from 'node:crypto';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../services/common/logger.ts';
import { deriveDomains, loadIncidents } from '../../services/common/incidents/load.ts';
import { byDomainAndDay } from '../../services/common/incidents/derive.ts';
import { NO_DAY, pageIncidents, readIncidents } from '../../services/common/incidents/store.ts';
import { migrate } from '../../services/common/migrations.ts';
import { createApi } from '../../services/api/server.ts';
import { evaluateIncidents } from '../../services/scheduler/incident-evaluation.ts';
import { createDb, failureBreakdown } from '../../services/api/queries.ts';
import { dailyFailuresByType } from '../../services/api/dashboard-queries.ts';
import { incidentReports } from '../../services/api/incidents.ts';
import type { TrackedIncident } from '../../services/common/incidents/acts.ts';
import { LATE, NOW, TO, day, history, openStore, options, shuffled, type Store } from '../helpers/incident-scenario.ts';
import { testConfig } from '../helpers/env.ts';

const incidentsOf = (s: Store): Promise<TrackedIncident[]> =>
  loadIncidents(createDb(s.ch, { timeoutSeconds: 30, maxRows: 1_000_000 }), undefined, TO, options, NOW);

/** What a postmaster reads of an incident. */
const brief = (i: TrackedIncident) => ({
  domain: i.domain,
  kind: i.kind,
  resultType: i.resultType,
  subject: i.subject,
  state: i.state,
  firstDay: i.firstDay,
  lastDay: i.lastDay,
  resolvedDay: i.resolvedDay,
  failedSessions: i.failedSessions,
  reporters: i.reporters,
});

const stores: Store[] = [];
let daily: Store;
let derived: TrackedIncident[];

beforeAll(async () => {
  const bodies = history();
  daily = await openStore();
  const mixed = await openStore();
  const atOnce = await openStore();
  stores.push(daily, mixed, atOnce);
  await Promise.all([daily.write(bodies), mixed.write(shuffled(bodies, 7)), atOnce.write(bodies, true)]);
  derived = await incidentsOf(daily);
});
afterAll(async () => {
  for (const s of stores) await s.close();
});

describe('incidents derived from report days', () => {
  it('are the four problems, with their days, states and counts (twins once)', () => {
    expect(derived.map(brief)).toEqual([
      {
        domain: 'acme.example',
        kind: 'failure',
        resultType: 'certificate-expired',
        subject: 'mx2.acme.example',
        state: 'resolved',
        firstDay: day(5),
        lastDay: day(9),
        resolvedDay: day(12),
        // Google 5 × 100, Microsoft 4 × 50 (its sts and tlsa entries list the same sessions).
        failedSessions: 700,
        reporters: ['Google Inc.', 'Microsoft Corporation'],
      },
      {
        domain: 'acme.example',
        kind: 'failure',
        resultType: 'certificate-expired',
        subject: 'mx2.acme.example',
        state: 'resolved',
        firstDay: day(15),
        lastDay: day(16),
        resolvedDay: day(19),
        failedSessions: 200,
        reporters: ['Google Inc.'],
      },
      {
        domain: 'beta.example',
        kind: 'failure',
        resultType: 'sts-policy-fetch-error',
        subject: 'mta-sts.beta.example',
        state: 'resolved',
        firstDay: day(3),
        lastDay: day(8),
        resolvedDay: day(11),
        failedSessions: 240,
        reporters: ['Google Inc.'],
      },
      {
        domain: 'beta.example',
        kind: 'reporter-stopped',
        resultType: '',
        subject: 'Mail.Ru',
        state: 'open',
        firstDay: day(13),
        lastDay: day(20),
        resolvedDay: null,
        failedSessions: 0,
        reporters: ['Mail.Ru'],
      },
      {
        domain: 'gamma.example',
        kind: 'failure',
        resultType: 'starttls-not-supported',
        subject: 'mx3.gamma.example',
        state: 'open',
        firstDay: day(17),
        lastDay: day(20),
        resolvedDay: null,
        failedSessions: 120,
        reporters: ['Google Inc.'],
      },
    ]);
  });

  it('link a problem that came back to the one before, and say how bad each is', () => {
    const [first, again, fetch, , starttls] = derived;
    expect(again!.previousId).toBe(first!.id);
    expect(first!.previousId).toBeNull();
    expect(first!.sendingIps).toEqual({ count: 1, top: [{ ip: '209.85.1.1', failedSessions: 500 }] });
    // 700 of 7,700 sessions on its days under enforce (9%); Google's other sessions went through.
    expect(first!.severity).toBe('high');
    expect(first!.mode).toBe('enforce');
    // 240 of 2,640 under testing.
    expect(fetch!.severity).toBe('medium');
    expect(fetch!.mode).toBe('testing');
    expect(starttls!.sessionsPerDay).toBe(30);
    expect(first!.events.map((e) => `${e.event} ${e.day}`)).toEqual([
      `opened ${day(5)}`,
      `worsened ${day(6)}`,
      `resolved ${day(12)}`,
    ]);
  });

  it('are the same whatever the order the reports arrived in', async () => {
    const [, mixed, atOnce] = stores;
    expect(await incidentsOf(mixed!)).toEqual(derived);
    expect(await incidentsOf(atOnce!)).toEqual(derived);
  });

  it("the domain's breakdowns and the incident's reports count Microsoft's sts+tlsa twins once, as it does", async () => {
    const db = createDb(daily.ch, { timeoutSeconds: 30, maxRows: 1_000_000 });
    const range = { from: day(1), to: day(20) };
    const byType = await failureBreakdown(db, 'acme.example', range, 'result-type', 10);
    // Google 7 × 100, Microsoft 4 × 50 (its two policies list the same 50).
    expect(byType.buckets).toEqual([{ key: 'certificate-expired', failedSessions: 900, details: 11, reports: 11 }]);
    expect(byType.totalFailedSessions).toBe(900);
    const byReporter = await failureBreakdown(db, 'acme.example', range, 'organization', 10);
    expect(byReporter.buckets.map((b) => [b.key, b.failedSessions])).toEqual([
      ['Google Inc.', 700],
      ['Microsoft Corporation', 200],
    ]);
    const perDay = await dailyFailuresByType(db, 'acme.example', range);
    expect(perDay.filter((r) => r.day === day(6)).map((r) => Number(r.failed))).toEqual([150]);
    const reports = await incidentReports(db, derived[0]!);
    expect(reports.filter((r) => r.organization === 'Microsoft Corporation').map((r) => r.failedSessions)).toEqual([
      50, 50, 50, 50,
    ]);
  });

  it('a late report extends the incident it belongs to and moves its resolution', async () => {
    const [, mixed] = stores;
    await mixed!.write([LATE]);
    const after = await incidentsOf(mixed!);
    const first = after[0]!;
    expect(brief(first)).toMatchObject({
      firstDay: day(5),
      lastDay: day(10),
      resolvedDay: day(13),
      failedSessions: 720,
      reporters: ['Comcast', 'Google Inc.', 'Microsoft Corporation'],
    });
    // Same first day: the same incident (id).
    expect(first.id).toBe(derived[0]!.id);
    expect(after.slice(1)).toEqual(derived.slice(1));
  });
});

describe('the incidents API', () => {
  const ADMIN = 'admin-token-incidents';
  const LIMITED = 'limited-token-incidents';
  let base: string;
  let close: () => Promise<void>;
  const call = async (path: string, token = ADMIN, init: RequestInit = {}) => {
    const res = await fetch(`${base}${path}`, {
      ...init,
      headers: { authorization: `Bearer ${token}`, ...init.headers },
    });
    return { status: res.status, body: (await res.json()) as any };
  };
  const post = (path: string, body?: unknown, token = ADMIN) =>
    call(path, token, {
      method: 'POST',
      ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
    });

  beforeAll(async () => {
    const config = {
      ...daily.config,
      API_TOKENS: JSON.stringify([
        { name: 'admin', sha256: createHash('sha256').update(ADMIN).digest('hex') },
        { name: 'gamma-team', token: LIMITED, domains: ['gamma.example'] },
      ]),
      INCIDENT_WINDOW_DAYS: 120,
    };
    const db = createDb(daily.ch, { timeoutSeconds: 30, maxRows: 1_000_000 });
    const server = await createApi(config, {
      db,
      logger: createLogger('api', 'silent'),
      registry: new Registry(),
      ready: () => Promise.resolve(true),
      clickhouse: daily.ch,
    } as unknown as Parameters<typeof createApi>[1]);
    // The lists are the scheduler's: one evaluation stores the incidents.
    let seq = 0;
    await evaluateIncidents(db, daily.ch, config, async (n) => ((seq += n), seq - n + 1), NOW);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address() as { port: number };
    base = `http://127.0.0.1:${address.port}`;
    close = () => new Promise((resolve) => server.close(() => resolve()));
  });
  afterAll(() => close());

  it('lists what is wrong now first, then what resolved in the range; pages with a cursor', async () => {
    const { status, body } = await call(`/v1/incidents?from=${day(1)}&to=${TO}`);
    expect(status).toBe(200);
    expect(body.incidents.map((i: any) => `${i.state} ${i.domain} ${i.kind} ${i.firstDay}`)).toEqual([
      `open gamma.example failure ${day(17)}`,
      `open beta.example reporter-stopped ${day(13)}`,
      // Resolved on days 19, 12 and 11.
      `resolved acme.example failure ${day(15)}`,
      `resolved acme.example failure ${day(5)}`,
      `resolved beta.example failure ${day(3)}`,
    ]);
    const first = await call(`/v1/incidents?from=${day(1)}&to=${TO}&limit=2`);
    const second = await call(`/v1/incidents?from=${day(1)}&to=${TO}&limit=2&cursor=${first.body.next}`);
    expect([...first.body.incidents, ...second.body.incidents].map((i: any) => i.id)).toEqual(
      body.incidents.slice(0, 4).map((i: any) => i.id),
    );
    // A cursor while more follow, null after the last page, also when the last page is exactly full.
    const last = await call(`/v1/incidents?from=${day(1)}&to=${TO}&limit=2&cursor=${second.body.next}`);
    expect([typeof first.body.next, typeof second.body.next, last.body.next]).toEqual(['string', 'string', null]);
    expect(last.body.incidents.map((i: any) => i.id)).toEqual([body.incidents[4].id]);
    expect((await call(`/v1/incidents?from=${day(1)}&to=${TO}&limit=5`)).body.next).toBeNull();
    expect((await call(`/v1/incidents?from=${day(1)}&to=${TO}&limit=4`)).body.next).toEqual(expect.any(String));
    const open = await call(`/v1/incidents?from=${day(1)}&to=${TO}&state=open&kind=failure`);
    expect(open.body.incidents.map((i: any) => i.subject)).toEqual(['mx3.gamma.example']);
  });

  it('shows one incident with its days, reports and events; a token sees only its domains', async () => {
    const list = (await call(`/v1/incidents?from=${day(1)}&to=${TO}&domain=gamma.example`)).body.incidents;
    const id = list[0].id as string;
    const { status, body } = await call(`/v1/incidents/${id}`);
    expect(status).toBe(200);
    expect(body.daily.map((d: any) => d.failedSessions)).toEqual([30, 30, 30, 30]);
    expect(body.reports).toHaveLength(4);
    expect(body.events.map((e: any) => e.event)).toEqual(['opened']);
    expect((await call(`/v1/incidents/${id}`, LIMITED)).status).toBe(200);
    const acme = derived[0]!.id;
    expect((await call(`/v1/incidents/${acme}`, LIMITED)).status).toBe(404);
    expect((await call(`/v1/incidents?domain=acme.example`, LIMITED)).status).toBe(403);
    const limitedList = (await call(`/v1/incidents?from=${day(1)}&to=${TO}`, LIMITED)).body.incidents;
    expect(limitedList.map((i: any) => i.domain)).toEqual(['gamma.example']);
    expect((await call('/v1/incidents/not-an-id')).status).toBe(400);
    expect((await call(`/v1/incidents/${'0'.repeat(20)}.gamma.example`)).status).toBe(404);
  });

  it("records people's acts as events with who and when, and refuses the ones the state does not allow", async () => {
    const id = (await call(`/v1/incidents?from=${day(1)}&to=${TO}&domain=gamma.example`)).body.incidents[0].id;
    const early = await post(`/v1/incidents/${id}/reopen`);
    expect([early.status, early.body]).toEqual([409, expect.objectContaining({ error: 'conflict' })]);
    expect((await post(`/v1/incidents/${id}/unmute`)).status).toBe(409);
    const acked = await post(`/v1/incidents/${id}/acknowledge`, { note: 'renewing the certificate' }, LIMITED);
    expect(acked.status).toBe(200);
    expect(acked.body.state).toBe('acknowledged');
    expect((await post(`/v1/incidents/${id}/mute`, {})).status).toBe(409);
    expect((await post(`/v1/incidents/${id}/mute`, { until: '2020-01-01T00:00:00Z' })).status).toBe(409);
    const muted = await post(`/v1/incidents/${id}/mute`, { until: '2099-01-01T00:00:00Z' });
    expect([muted.status, muted.body.state, muted.body.mutedUntil]).toEqual([200, 'muted', '2099-01-01 00:00:00']);
    // Lists filter and show the state people's acts made, not the one derived.
    const listed = async (state: string) =>
      (await call(`/v1/incidents?from=${day(1)}&to=${TO}&domain=gamma.example&state=${state}`)).body.incidents.map(
        (i: any) => `${i.id} ${i.state}`,
      );
    expect([await listed('muted'), await listed('open')]).toEqual([[`${id} muted`], []]);
    const resolved = await post(`/v1/incidents/${id}/resolve`);
    expect(resolved.body.state).toBe('resolved');
    const reopened = await post(`/v1/incidents/${id}/reopen`);
    expect(reopened.body.state).toBe('open');
    expect(reopened.body.events.filter((e: any) => e.actor).map((e: any) => `${e.event} ${e.actor}`)).toEqual([
      'acknowledged gamma-team',
      'muted admin',
      'resolved admin',
      'reopened admin',
    ]);
    expect((await post(`/v1/incidents/${id}/acknowledge`, { bogus: 1 })).status).toBe(400);
    const acme = derived[0]!.id;
    expect((await post(`/v1/incidents/${acme}/acknowledge`, undefined, LIMITED)).status).toBe(404);
    // A resolved incident cannot be acknowledged.
    expect((await post(`/v1/incidents/${acme}/acknowledge`)).status).toBe(409);
  });

  it('is in the OpenAPI document', async () => {
    const doc = (await call('/openapi.json')).body;
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining([
        '/v1/incidents',
        '/v1/incidents/{id}',
        '/v1/incidents/{id}/acknowledge',
        '/v1/incidents/{id}/mute',
      ]),
    );
  });
});

describe('incidents stored before their texts had a table of their own (migration 0017)', () => {
  it('are read with their texts after the migration, by the scheduler and by the lists', async () => {
    const older = await openStore(testConfig(), '0016');
    stores.push(older);
    await older.write(history(), true);
    const db = createDb(older.ch, { timeoutSeconds: 30, maxRows: 1_000_000 });
    const incidents = await deriveDomains(db, undefined, TO, options);
    expect(incidents.length).toBeGreaterThan(3);
    // As that release's scheduler stored them: the texts in `incidents`, a version per domain.
    const domains = [...new Set(incidents.map((i) => i.domain))];
    await older.ch.insert({
      table: 'incidents',
      format: 'JSONEachRow',
      values: incidents.map(({ daily: d, events, resume: _r, ...summary }) => ({
        domain: summary.domain,
        id: summary.id,
        kind: summary.kind,
        state: summary.state,
        first_day: summary.firstDay,
        last_day: summary.lastDay,
        resolved_day: summary.resolvedDay ?? NO_DAY,
        severity: summary.severity,
        summary: JSON.stringify(summary),
        detail: JSON.stringify({ daily: d, events }),
        version: 7,
      })),
    });
    await older.ch.insert({
      table: 'incident_domains',
      format: 'JSONEachRow',
      values: domains.map((domain) => ({ domain, version: 7 })),
    });
    expect((await migrate(older.config)).applied).toContain('0017_incident_texts.sql');
    const read = await readIncidents(db, { from: NO_DAY, to: TO, detail: true });
    expect(read.sort(byDomainAndDay)).toEqual([...incidents].sort(byDomainAndDay));
    const page = await pageIncidents(db, {
      from: day(1),
      to: TO,
      limit: 100,
      offset: 0,
      actedStates: new Map(),
      states: ['open'],
    });
    const open = incidents.filter((i) => i.state === 'open');
    expect(page.total).toBe(open.length);
    expect(page.incidents.map((i) => i.id).sort()).toEqual(open.map((i) => i.id).sort());
    expect(page.incidents.every((i) => i.reporters.length > 0)).toBe(true);
  });
});
