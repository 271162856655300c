// The stored incidents' lists (services/common/incidents/store.ts) page through exactly the incidents of each domain's
// newest version, each once, most urgent first: with the rows of an older version not yet merged away, versions
// written again (inserts retried; four times, more repeats than the first read of a page allows for), and the next
// version written while a page is read.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClickHouseClient } from '../../services/common/clickhouse.ts';
import { createDb } from '../../services/api/queries.ts';
import type { Incident, Severity } from '../../services/common/incidents/derive.ts';
import { NO_DAY, pageIncidents, writeIncidents } from '../../services/common/incidents/store.ts';
import { queryRows, testConfig, testDatabase } from '../helpers/env.ts';

const config = testConfig();
let ch: ClickHouseClient;

const incident = (domain: string, n: number, severity: Severity, lastDay: string, resolved = false): Incident => ({
  id: `${domain}:failure:n${String(n).padStart(3, '0')}`,
  domain,
  kind: 'failure',
  resultType: 'certificate-expired',
  subject: `mx${n}.${domain}`,
  state: resolved ? 'resolved' : 'open',
  firstDay: '2026-11-01',
  lastDay,
  resolvedDay: resolved ? '2026-11-28' : null,
  failedSessions: n + 1,
  sessionsPerDay: 1,
  reporters: ['google.com'],
  sendingIps: { count: 1, top: [{ ip: '192.0.2.1', failedSessions: n + 1 }] },
  mode: 'enforce',
  severity,
  failingShare: 0.5,
  previousId: null,
  diagnosis: 'certificate-expired',
  daily: [{ day: lastDay, failedSessions: n + 1, sessions: 2 }],
  events: [],
});

// stale.example's first version: 150 critical incidents, newer than any other, all gone from its second version.
const staleFirst = Array.from({ length: 150 }, (_, n) => incident('stale.example', n, 'critical', '2026-11-30'));
const staleNow = [
  incident('stale.example', 900, 'low', '2026-11-20'),
  incident('stale.example', 901, 'low', '2026-11-20', true),
];
const twice = [0, 1, 2].map((n) => incident('twice.example', n, 'high', `2026-11-2${n}`));
// A version written four times (inserts retried), ahead of the others: more repeats than a first read allows for.
const fourfold = Array.from({ length: 120 }, (_, n) => incident('fourfold.example', n, 'critical', '2026-11-29'));
const plain = [
  ...[0, 1, 2, 3, 4].map((n) => incident('plain.example', n, 'medium', n < 2 ? '2026-11-25' : '2026-11-22')),
  ...[5, 6].map((n) => incident('plain.example', n, 'medium', '2026-11-26', true)),
];
const SEVERITY = ['critical', 'high', 'medium', 'low'];
// The lists' order: open first, then by severity, the latest day, the id.
const expected = [...fourfold, ...twice, ...plain, ...staleNow]
  .filter((i) => i.state === 'open')
  .sort(
    (a, b) =>
      SEVERITY.indexOf(a.severity) - SEVERITY.indexOf(b.severity) ||
      b.lastDay.localeCompare(a.lastDay) ||
      a.id.localeCompare(b.id),
  )
  .map((i) => i.id);

beforeAll(async () => {
  ch = await testDatabase(config);
  // No merge may fold the older version's rows or the repeated ones away before the lists read them.
  await ch.command({ query: `SYSTEM STOP MERGES ${config.CLICKHOUSE_DATABASE}.incidents` });
  await writeIncidents(ch, ['stale.example'], staleFirst, 1, NO_DAY);
  await writeIncidents(ch, ['stale.example'], staleNow, 2, NO_DAY);
  await writeIncidents(ch, ['twice.example'], twice, 5, NO_DAY);
  await writeIncidents(ch, ['twice.example'], twice, 5, NO_DAY);
  await writeIncidents(ch, ['plain.example'], plain, 3, NO_DAY);
  for (let k = 0; k < 4; k++) await writeIncidents(ch, ['fourfold.example'], fourfold, 4, NO_DAY);
});

afterAll(async () => {
  await ch.command({ query: `DROP DATABASE IF EXISTS ${config.CLICKHOUSE_DATABASE}` });
  await ch.close();
});

describe('the stored incidents, a page at a time', () => {
  const db = () => createDb(ch, { timeoutSeconds: 30, maxRows: 100_000 });
  const open = { from: '2026-11-01', to: '2026-11-30', states: ['open'], actedStates: new Map<string, string>() };

  it('are the stored rows of the test: an older version beside the newest, versions repeated', async () => {
    const rows = await queryRows<{ domain: string; n: string }>(
      ch,
      'SELECT domain, toString(count()) AS n FROM incidents GROUP BY domain ORDER BY domain',
    );
    expect(rows).toEqual([
      { domain: 'fourfold.example', n: '480' },
      { domain: 'plain.example', n: '7' },
      { domain: 'stale.example', n: '152' },
      { domain: 'twice.example', n: '6' },
    ]);
  });

  it.each([1, 2, 3, 100])('pages of %i list each incident of the newest versions once, in order', async (limit) => {
    const seen: string[] = [];
    for (let offset = 0; ; offset += limit) {
      const page = await pageIncidents(db(), { ...open, limit, offset, count: false });
      seen.push(...page.incidents.map((i) => i.id));
      expect(page.more).toBe(offset + limit < expected.length);
      if (!page.more) break;
    }
    expect(seen).toEqual(expected);
  });

  it('counts them once, and reads their texts', async () => {
    const page = await pageIncidents(db(), { ...open, limit: 4, offset: 2 });
    expect(page.total).toBe(expected.length);
    expect(page.more).toBe(true);
    expect(page.incidents.map((i) => i.id)).toEqual(expected.slice(2, 6));
    expect(page.incidents[0]).toEqual({
      ...[...fourfold, ...twice, ...plain].find((i) => i.id === expected[2]),
      daily: [],
      events: [],
    });
  });

  it('list the resolved ones in the range after the open ones', async () => {
    const page = await pageIncidents(db(), { ...open, states: undefined, limit: 500, offset: 0 });
    const resolved = [...plain, ...staleNow].filter((i) => i.state === 'resolved').map((i) => i.id);
    expect(page.incidents.map((i) => i.id)).toEqual([...expected, ...resolved.sort()]);
    expect(page.total).toBe(expected.length + resolved.length);
  });

  it("list a domain's incidents while the scheduler writes its next version", async () => {
    // (Last: the other tests list every domain's incidents.)
    const racing = [0, 1].map((n) => incident('racing.example', n, 'high', '2026-11-29'));
    await writeIncidents(ch, ['racing.example'], racing, 10, NO_DAY);
    // The next version is written right after the page's rows are read, before anything else is asked.
    const base = db();
    let written = false;
    const writing: typeof base = {
      ...base,
      rows: async (sql) => {
        const rows = await base.rows(sql);
        if (!written && sql.includes('FROM incidents')) {
          written = true;
          await writeIncidents(ch, ['racing.example'], racing, 11, NO_DAY);
        }
        return rows as never;
      },
    };
    const page = await pageIncidents(writing, { ...open, domains: ['racing.example'], limit: 10, offset: 0 });
    expect(written).toBe(true);
    expect(page.incidents.map((i) => i.id)).toEqual(racing.map((i) => i.id));
    expect(page.total).toBe(2);
  });
});
