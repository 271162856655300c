// Each ClickHouse 18.16 workaround of services/common/clickhouse-compat.ts is still needed, and the plain form works
// on current ClickHouse: its probe fails on the suite's 18.16 server and runs on ClickHouse 26.x (chdb). When a probe
// starts passing on the oldest supported server, its workaround can go. And the migrations' CREATE OR REPLACE VIEW,
// run on 18.16 as a drop and a create, leaves the view it names.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClickHouseClient } from '../../services/common/clickhouse.ts';
import { WORKAROUNDS, type Workaround } from '../../services/common/clickhouse-compat.ts';
import { openChdbSession } from '../helpers/chdb.ts';
import { queryRows, testConfig, testDatabase } from '../helpers/env.ts';

const config = testConfig();
let ch: ClickHouseClient;
let dir: string;
let current: ReturnType<typeof openChdbSession>;

beforeAll(async () => {
  ch = await testDatabase(config);
  dir = await mkdtemp(join(tmpdir(), 'chdb-compat-'));
  current = openChdbSession(join(dir, 'session'));
  await current.run('CREATE DATABASE IF NOT EXISTS compat');
  await current.run('USE compat');
});
afterAll(async () => {
  current.session.close();
  await rm(dir, { recursive: true, force: true });
  await ch.command({ query: `DROP DATABASE IF EXISTS ${config.CLICKHOUSE_DATABASE}` });
  await ch.close();
});

/** An aggregate's alias named as the column it aggregates, then used again. */
const ALIAS_RULE = 'SELECT max(x) AS x, max(x) + 1 AS y FROM (SELECT 1 AS x)';

const probed = Object.entries(WORKAROUNDS as Record<string, Workaround>).filter(
  (e): e is [string, Workaround & { probe: NonNullable<Workaround['probe']> }] => e[1].probe !== undefined,
);

describe('the ClickHouse 18.16 workarounds', () => {
  it('has probes for the ones a statement shows (the list itself)', () => {
    expect(probed.map(([name]) => name)).toEqual(expect.arrayContaining(['queryParameters', 'replaceView', 'ttl']));
  });

  for (const [name, { probe }] of probed) {
    it(`${name}: 18.16 refuses the plain form`, async () => {
      const attempt = ch.command({
        query: probe.sql,
        ...(probe.params ? { query_params: probe.params } : {}),
      });
      // It cannot parse the form (62) or know the parameter (115): not some other failure.
      await expect(attempt).rejects.toThrow(/Code: (62|115),/);
    });

    it(`${name}: current ClickHouse runs it`, async () => {
      for (const [key, value] of Object.entries(probe.params ?? {})) await current.run(`SET param_${key} = ${value}`);
      await expect(current.run(probe.sql)).resolves.toBeTypeOf('string');
    });
  }

  it('aliases that name no column are no workaround: current ClickHouse refuses the same-named alias too', async () => {
    await expect(ch.query({ query: ALIAS_RULE, format: 'JSONEachRow' })).rejects.toThrow(/Code: 184/);
    await expect(current.run(ALIAS_RULE)).rejects.toThrow(/Code: 184/);
  });

  it("the migrations' CREATE OR REPLACE VIEW leaves the view on 18.16 (dropped and created)", async () => {
    const views = await queryRows<{ name: string; engine: string }>(
      ch,
      `SELECT name, engine FROM system.tables WHERE database = currentDatabase() AND name LIKE '%_dedup'`,
    );
    expect(views.map((v) => `${v.name} ${v.engine}`).sort()).toEqual(
      expect.arrayContaining(['failure_details_dedup View', 'policy_results_dedup View', 'reports_dedup View']),
    );
    // The newest definition (migration 0005's), not 0002's or 0004's: it names each report's latest version.
    const [def] = await queryRows<{ statement: string }>(ch, 'SHOW CREATE TABLE reports_dedup');
    expect(def?.statement).toMatch(/latest_version/);
  });
});
