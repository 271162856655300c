// Reads of ClickHouse for the API and the scheduler: bounded in time and rows, retried once where a cluster of old
// ClickHouse asks for it, and failing as QueryFailedError (the API's 503) whatever went wrong.
import type { ClickHouseClient } from './clickhouse.ts';
import type { Config } from './config.ts';
import { qualifyTables } from './cluster-ddl.ts';

export interface Db {
  rows<T>(sql: string): Promise<T[]>;
}

/** ClickHouse refused, failed or timed out a query (503 to the client); anything else thrown is our bug (500). */
export class QueryFailedError extends Error {
  override readonly name = 'QueryFailedError';
}

/**
 * A Distributed query of ClickHouse before 20.12 may fail this way when a query with LIMIT was cancelled on a shard
 * while the query was still being sent to it (ClickHouse/ClickHouse#17254); the same read again succeeds. Seen once
 * in our cluster test, on 18.16.
 */
const UNEXPECTED_PACKET = /Unexpected packet Data received from client/;

/** Reads retry once on UNEXPECTED_PACKET: they change nothing. */
export function createDb(
  client: ClickHouseClient,
  limits: { timeoutSeconds: number; maxRows: number },
  /** On a cluster (CLICKHOUSE_CLUSTER), the database every table name is qualified with (qualifyTables). */
  clusterDatabase?: string,
): Db {
  return {
    async rows<T>(sql: string): Promise<T[]> {
      const text = clusterDatabase ? qualifyTables(sql, clusterDatabase) : sql;
      try {
        return await query<T>(client, text, limits).catch((err: unknown) => {
          if (!UNEXPECTED_PACKET.test(err instanceof Error ? err.message : '')) throw err;
          return query<T>(client, text, limits);
        });
      } catch (err) {
        throw new QueryFailedError(err instanceof Error ? err.message : String(err), { cause: err });
      }
    },
  };
}

async function query<T>(
  client: ClickHouseClient,
  sql: string,
  limits: { timeoutSeconds: number; maxRows: number },
): Promise<T[]> {
  const result = await client.query({
    query: sql,
    format: 'JSONEachRow',
    clickhouse_settings: {
      // Every query is bounded in time and size, whatever asked for it.
      max_execution_time: limits.timeoutSeconds,
      max_result_rows: String(limits.maxRows),
      result_overflow_mode: 'throw',
      output_format_json_quote_64bit_integers: 0,
    },
  });
  return await result.json<T>();
}

/** The reads of a service as the configuration bounds them (API_QUERY_TIMEOUT_SECONDS, API_MAX_ROWS, the cluster). */
export function configuredDb(
  client: ClickHouseClient,
  config: Pick<Config, 'API_QUERY_TIMEOUT_SECONDS' | 'API_MAX_ROWS' | 'CLICKHOUSE_CLUSTER' | 'CLICKHOUSE_DATABASE'>,
): Db {
  return createDb(
    client,
    { timeoutSeconds: config.API_QUERY_TIMEOUT_SECONDS, maxRows: config.API_MAX_ROWS },
    config.CLICKHOUSE_CLUSTER ? config.CLICKHOUSE_DATABASE : undefined,
  );
}
