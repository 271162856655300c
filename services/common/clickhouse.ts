import { Readable } from 'node:stream';
import { createClient, type ClickHouseClient } from '@clickhouse/client';
import type { Config } from './config.ts';
import { encodeTsvPieces } from './tsv.ts';

export type { ClickHouseClient };

export type ClickHouseConfig = Pick<
  Config,
  | 'CLICKHOUSE_URL'
  | 'CLICKHOUSE_USER'
  | 'CLICKHOUSE_PASSWORD'
  | 'CLICKHOUSE_DATABASE'
  | 'CLICKHOUSE_REQUEST_TIMEOUT_MS'
  | 'CLICKHOUSE_CLUSTER'
>;

export function createClickHouse(config: ClickHouseConfig, database = config.CLICKHOUSE_DATABASE): ClickHouseClient {
  return createClient({
    url: config.CLICKHOUSE_URL,
    username: config.CLICKHOUSE_USER,
    password: config.CLICKHOUSE_PASSWORD,
    database,
    // A stuck insert must fail (and be retried by the queue) rather than hold its jobs forever.
    request_timeout: config.CLICKHOUSE_REQUEST_TIMEOUT_MS,
    // Below the server's keep_alive_timeout (10 s in deploy/clickhouse/config.xml; 3 s by default on many
    // servers), so we never write to a socket the server has just closed.
    // Eagerly: after the event loop was busy (a 10 MB report takes the worker ~1 s), a socket idle past the TTL is
    // dropped before use rather than written to and failed with EPIPE (seen in npm run bench: batches retried).
    keep_alive: { enabled: true, idle_socket_ttl: 2_500, eagerly_destroy_stale_sockets: true },
    // Off: locally the client and the server share the same cores, so compressing only moves CPU around. Across a
    // network, large batches compress well (18.16 accepts gzip request bodies); not measured yet.
    compression: { request: false, response: false },
    clickhouse_settings: config.CLICKHOUSE_CLUSTER
      ? {
          // An insert is confirmed once its shards have the rows, not when the Distributed table queued them.
          insert_distributed_sync: 1,
          // Rows of one report live on one shard: a subquery about reports runs on each shard by itself.
          distributed_product_mode: 'local',
        }
      : {},
  });
}

/** One streamed TabSeparated insert of encoded pieces (tsv.ts), their values in `columns` order. */
export async function insertTsvPieces(
  client: ClickHouseClient,
  table: string,
  columns: readonly [string, ...string[]],
  pieces: Iterable<Buffer>,
): Promise<void> {
  await client.insert({
    table,
    values: Readable.from(pieces, { objectMode: false }),
    format: 'TabSeparated',
    columns: [...columns],
  });
}

/**
 * Inserts rows as TabSeparated in pieces of about 64 KB (tsv.ts), the values in `columns` order. For large inserts
 * of JSON texts: JSONEachRow escaped every quote of the texts again and built the body as one string; an incident
 * evaluation that wrote 25,000 incidents and 35,000 alerts spent a sixth of its CPU there (docs/changes.md).
 */
export async function insertTsv(
  client: ClickHouseClient,
  table: string,
  columns: readonly [string, ...string[]],
  rows: readonly object[],
): Promise<void> {
  if (rows.length > 0) await insertTsvPieces(client, table, columns, encodeTsvPieces(columns, rows));
}
