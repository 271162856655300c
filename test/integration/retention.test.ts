// Retention: reject rows older than REJECTS_RETENTION_DAYS (and raw report text, when set) are deleted by the
// worker's scheduled job; newer rows, and every row when retention is 0, stay.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClickHouseClient } from '../../services/common/clickhouse.ts';
import { createLogger } from '../../services/common/logger.ts';
import { applyRetention, startRetention } from '../../services/scheduler/retention.ts';
import { queryRows, testConfig, testDatabase, until } from '../helpers/env.ts';

const config = testConfig({ REJECTS_RETENTION_DAYS: '30', RETENTION_INTERVAL_MS: '200' });
let ch: ClickHouseClient;

const at = (daysAgo: number) => new Date(Date.now() - daysAgo * 86400_000).toISOString().slice(0, 19).replace('T', ' ');

async function insertRejects(ages: number[]) {
  await ch.insert({
    table: 'rejects',
    format: 'JSONEachRow',
    values: ages.map((d, i) => ({
      receipt_id: `r-${d}-${i}`,
      received_at: at(d),
      rejected_at: at(d),
      reason: 'not-json',
      raw_base64: 'eA==',
      version: 1,
    })),
  });
}

const remaining = async () =>
  (await queryRows<{ receipt_id: string }>(ch, 'SELECT receipt_id FROM rejects ORDER BY receipt_id')).map(
    (r) => r.receipt_id,
  );
const mutationsDone = () =>
  until('mutations', async () => {
    const [m] = await queryRows<{ n: number }>(
      ch,
      'SELECT count() AS n FROM system.mutations WHERE is_done = 0 AND database = currentDatabase()',
    );
    return m!.n === 0 ? true : undefined;
  });

beforeAll(async () => (ch = await testDatabase(config)));
afterAll(async () => {
  await ch.command({ query: `DROP DATABASE IF EXISTS ${config.CLICKHOUSE_DATABASE}` });
  await ch.close();
});

describe('retention', () => {
  it('deletes only rejects past the retention; issues nothing when none is due; 0 keeps everything', async () => {
    await insertRejects([60, 31, 29, 1]);
    expect(await applyRetention(ch, { ...config, REJECTS_RETENTION_DAYS: 0 })).toEqual([]);
    expect(await applyRetention(ch, config)).toHaveLength(1);
    await mutationsDone();
    expect(await remaining()).toEqual(['r-1-3', 'r-29-2']);
    expect(await applyRetention(ch, config)).toEqual([]);
  });

  it('runs by itself on its BullMQ schedule', async () => {
    await insertRejects([90]);
    const connection = new Redis(config.REDIS_URL, { maxRetriesPerRequest: null });
    const running = startRetention(connection, ch, config, createLogger('t', 'silent'));
    await until('old reject deleted', async () => ((await remaining()).includes('r-90-0') ? undefined : true));
    expect(await remaining()).toEqual(['r-1-3', 'r-29-2']);
    await running.close();
    connection.disconnect();
  });
});
