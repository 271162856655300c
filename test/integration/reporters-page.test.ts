// The reporters page: the quirks flagged belong to (domain, reporter), from that domain's reports only. Microsoft's
// sts+tlsa twins are flagged overlapping-policy-entries on the domain they were sent for, not on every domain
// Microsoft reports.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb } from '../../services/api/queries.ts';
import { reportersPage } from '../../services/api/ui/pages/others.ts';
import { openStore, report, type Policy, type Store } from '../helpers/incident-scenario.ts';

const DAY = '2026-11-20';
let store: Store;

beforeAll(async () => {
  store = await openStore();
  const ok = (type: 'sts' | 'tlsa'): Policy => ({ type, mode: 'enforce', ok: 10, failures: [] });
  await store.write(
    [
      report('Microsoft Corporation', 'twins.example', DAY, [ok('sts'), ok('tlsa')]),
      report('Microsoft Corporation', 'single.example', DAY, [ok('sts')]),
    ],
    true,
  );
});
afterAll(() => store.close());

describe('the reporters page', () => {
  it("shows a quirk on the domain whose reports carried it, not on the reporter's other domains", async () => {
    const page = await reportersPage({
      db: createDb(store.ch, { timeoutSeconds: 30, maxRows: 1_000_000 }),
      principal: { name: 'admin', domains: undefined },
      query: new URLSearchParams(`from=${DAY}&to=${DAY}`),
      params: {},
      threshold: 0.05,
      readinessDays: 14,
      incidents: { resolveDays: 3, stoppedAfterDays: 3, regularShare: 0.6, windowDays: 120 },
      now: new Date(`${DAY}T12:00:00Z`),
    });
    const t = page.tables![0]!;
    const quirks = t.columns.find((c) => c.label === 'Quirks flagged')!;
    const rows = (t.rows as Array<{ policy_domain: string }>).map((r) => [r.policy_domain, quirks.value(r as never)]);
    expect(rows).toEqual([
      ['single.example', ''],
      ['twins.example', 'overlapping-policy-entries (1)'],
    ]);
  });
});
