// The decision of services/worker/trust.ts for a batch: each copy against every copy of its report known so far,
// from ClickHouse (report_copies: the copies processed before) and from Redis, where each processing records its copy
// atomically before any row is written, so that copies in flight together (two workers; mail and HTTPS in one
// batch) see each other. Redis keeps the record while ClickHouse may not have the rows yet (reprocessing.ts).
import type { Redis } from 'ioredis';
import type { ClickHouseClient } from '../common/clickhouse.ts';
import type { Config } from '../common/config.ts';
import type { TableRows } from '../../schemas/rows.ts';
import { inFlightSeconds, pairs, processedKeyPrefix } from './reprocessing.ts';
import { decideCopy, type Copy } from './trust.ts';

/** A copy of a report in a batch: the report's identity and the copy's rank and text. */
export interface CopyRef extends Copy {
  day: string;
  reportKey: string;
}

/** What becomes of each copy, in order (trust.ts's decideCopy). Rejects the batch when it cannot tell. */
export type DecideFn = (copies: CopyRef[]) => Promise<Array<'store' | 'duplicate' | 'conflict'>>;

/** The copy a job's rows store, if any (a reject stores none). */
export function copyOf(rows: TableRows): CopyRef | undefined {
  const c = rows.report_copies[0];
  return c && { day: c.day, reportKey: c.report_key, version: c.version, sha: c.figures_sha256 };
}

const member = (c: Copy): string => `c:${c.version}:${c.sha}`;

function parseMember(m: string): Copy[] {
  const match = /^c:(\d+):([0-9a-f]+)$/.exec(m);
  return match ? [{ version: Number(match[1]), sha: match[2]! }] : [];
}

const id = (c: { day: string; reportKey: string }): string => `${c.day}\u0000${c.reportKey}`;

/** The copies ClickHouse has of the batch's reports: each content at its best rank, one query for the batch. */
export async function storedCopies(clickhouse: ClickHouseClient, copies: CopyRef[]): Promise<Map<string, Copy[]>> {
  const out = new Map<string, Copy[]>();
  if (copies.length === 0) return out;
  const result = await clickhouse.query({
    query: `SELECT day, report_key, figures_sha256 AS figures, max(version) AS version FROM report_copies
            WHERE (day, report_key) IN (${pairs(copies)}) GROUP BY day, report_key, figures_sha256`,
    format: 'JSONEachRow',
    clickhouse_settings: { output_format_json_quote_64bit_integers: 0 },
  });
  for (const r of await result.json<{ day: string; report_key: string; figures: string; version: number }>()) {
    const key = id({ day: r.day, reportKey: r.report_key });
    out.set(key, [...(out.get(key) ?? []), { version: Number(r.version), sha: r.figures }]);
  }
  return out;
}

/** The worker's DecideFn, its Redis records named and kept as the processings' records are. */
export function copyDecisions(deps: {
  redis: Redis;
  clickhouse: ClickHouseClient;
  config: Pick<Config, 'QUEUE_NAME' | 'CLICKHOUSE_REQUEST_TIMEOUT_MS'>;
}): DecideFn {
  const { redis, clickhouse, config } = deps;
  const keyPrefix = processedKeyPrefix(config.QUEUE_NAME);
  const recordSeconds = inFlightSeconds(config.CLICKHOUSE_REQUEST_TIMEOUT_MS);
  return async (copies) => {
    if (copies.length === 0) return [];
    // One transaction in batch order: of two copies in one batch, the second sees the first.
    const multi = redis.multi();
    for (const c of copies) {
      const key = `${keyPrefix}${c.day}:${c.reportKey}`;
      multi.sadd(key, member(c)).smembers(key).expire(key, recordSeconds);
    }
    const replies = await multi.exec();
    if (!replies) throw new Error('the transaction recording report copies in Redis was aborted');
    const failed = replies.find(([err]) => err)?.[0];
    if (failed) throw failed;
    const stored = await storedCopies(clickhouse, copies);
    return copies.map((c, i) => {
      const recorded = (replies[i * 3 + 1]![1] as string[]).flatMap(parseMember);
      return decideCopy(c, [...recorded, ...(stored.get(id(c)) ?? [])]);
    });
  };
}
