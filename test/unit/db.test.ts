// The API's reads (createDb): a read ClickHouse before 20.12 fails with "Unexpected packet Data received from client"
// on a cluster (ClickHouse/ClickHouse#17254) is asked again once; any other failure is a QueryFailedError at once.
import { describe, expect, it } from 'vitest';
import { createDb, QueryFailedError } from '../../services/api/queries.ts';
import type { ClickHouseClient } from '../../services/common/clickhouse.ts';

/** A client whose queries fail with `failures` in turn (the fault injected), then answer `[{ n: 1 }]`. */
function client(failures: string[]): { client: ClickHouseClient; calls: () => number } {
  let calls = 0;
  const fake = {
    query: async () => {
      const failure = failures[calls++];
      if (failure) throw new Error(failure);
      return { json: async () => [{ n: 1 }] };
    },
  };
  return { client: fake as unknown as ClickHouseClient, calls: () => calls };
}

const limits = { timeoutSeconds: 1, maxRows: 10 };
const packet =
  'Code: 101, e.displayText() = DB::Exception: Received from 127.0.0.1:44017. DB::NetException. DB::NetException: Unexpected packet Data received from client., e.what() = DB::Exception';

describe('createDb', () => {
  it('asks a read again once when a shard saw an unexpected Data packet', async () => {
    const c = client([packet]);
    expect(await createDb(c.client, limits).rows('SELECT 1 AS n')).toEqual([{ n: 1 }]);
    expect(c.calls()).toBe(2);
  });

  it('fails when it happens twice, and at once on any other error', async () => {
    const twice = client([packet, packet]);
    await expect(createDb(twice.client, limits).rows('SELECT 1')).rejects.toBeInstanceOf(QueryFailedError);
    expect(twice.calls()).toBe(2);
    const other = client(['Code: 241, Memory limit (for query) exceeded']);
    await expect(createDb(other.client, limits).rows('SELECT 1')).rejects.toThrow(/Memory limit/);
    expect(other.calls()).toBe(1);
  });
});
