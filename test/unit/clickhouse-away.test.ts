import { describe, expect, it } from 'vitest';
import { ClickHouseAway, FREE_RETRIES, isUnreachable, pauseMs } from '../../services/worker/clickhouse-away.ts';

const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:8123'), { code: 'ECONNREFUSED' });

describe('ClickHouse out of reach', () => {
  it('tells a server out of reach from one that refused the rows', () => {
    expect(isUnreachable(refused)).toBe(true);
    expect(isUnreachable(Object.assign(new Error('read'), { code: 'ECONNRESET' }))).toBe(true);
    expect(isUnreachable(new Error('Timeout error.'))).toBe(true);
    expect(isUnreachable(new Error('socket hang up'))).toBe(true);
    // ClickHouse answered: a parse error, a missing table. These count as attempts.
    expect(isUnreachable(Object.assign(new Error('Cannot parse input'), { code: '27' }))).toBe(false);
    expect(isUnreachable(new Error('Table faults.receipts does not exist'))).toBe(false);
    expect(isUnreachable(undefined)).toBe(false);
    expect(isUnreachable('ECONNREFUSED')).toBe(false);
  });

  it('pauses 1 s at first, growing to 5 s, and forgets the outage once a write succeeds', () => {
    expect([0, 5_000, 20_000, 50_000, 600_000].map(pauseMs)).toEqual([1_000, 1_000, 2_000, 5_000, 5_000]);
    const away = new ClickHouseAway();
    expect(away.isAway).toBe(false);
    expect(away.failed(refused, 0, 1_000)).toBe(1_000);
    expect(away.isAway).toBe(true);
    expect(away.failed(refused, 3, 31_000)).toBe(3_000);
    expect(away.reached(41_000)).toBe(40_000);
    expect(away.isAway).toBe(false);
    expect(away.reached(42_000)).toBeUndefined();
    expect(away.failed(refused, 0, 50_000)).toBe(1_000);
  });

  it('counts the failure as an attempt when ClickHouse answered, or after the job came back too often', () => {
    const away = new ClickHouseAway();
    expect(away.failed(new Error('Cannot parse input'), 0)).toBeUndefined();
    expect(away.isAway).toBe(false);
    expect(away.failed(refused, FREE_RETRIES - 1)).toBeDefined();
    expect(away.failed(refused, FREE_RETRIES)).toBeUndefined();
  });
});
