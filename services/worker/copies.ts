// The decision of services/worker/trust.ts for a batch: each copy against every copy of its report known so far,
// from ClickHouse (report_copies: the copies processed before) and from Redis, where each processing records its copy
// atomically before any row is written, so that copies in flight together (two workers; mail and HTTPS in one
// batch) see each other. Redis keeps the record while ClickHouse may not have the rows yet (reprocessing.ts).
import type { Redis } from 'ioredis';
import type { ClickHouseClient } from '../common/clickhouse.ts';
import type { Config } from '../common/config.ts';
import type { TableRows } from '../../schemas/rows.ts';
import { pairs, processingRecords, rowsOf } from './reprocessing.ts';
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
  return c && { day: c.day, reportKey: c.report_key, version: c.version, sha: c.figures_sha256, text: c.json_sha256 };
}

const member = (c: Copy): string => `c:${c.version}:${c.sha}:${c.text}`;

function parseMember(m: string): Copy[] {
  const match = /^c:(\d+):([0-9a-f]+):([0-9a-f]+)$/.exec(m);
  return match ? [{ version: Number(match[1]), sha: match[2]!, text: match[3]! }] : [];
}

const id = (c: { day: string; reportKey: string }): string => `${c.day}\u0000${c.reportKey}`;

/** The copies ClickHouse has of the batch's reports: each content at its best rank, one query for the batch. */
export async function storedCopies(clickhouse: ClickHouseClient, copies: CopyRef[]): Promise<Map<string, Copy[]>> {
  const out = new Map<string, Copy[]>();
  if (copies.length === 0) return out;
  const rows = await rowsOf<{ day: string; report_key: string; figures: string; text: string; version: string }>(
    clickhouse,
    `SELECT day, report_key, figures_sha256 AS figures, json_sha256 AS text, max(version) AS version
     FROM report_copies WHERE (day, report_key) IN (${pairs(copies)})
     GROUP BY day, report_key, figures_sha256, json_sha256`,
  );
  for (const r of rows) {
    const key = id({ day: r.day, reportKey: r.report_key });
    out.set(key, [...(out.get(key) ?? []), { version: Number(r.version), sha: r.figures, text: r.text }]);
  }
  return out;
}

/** The worker's DecideFn, its Redis records named and kept as the processings' records are. */
export function copyDecisions(deps: {
  redis: Redis;
  clickhouse: ClickHouseClient;
  config: Pick<Config, 'QUEUE_NAME' | 'CLICKHOUSE_REQUEST_TIMEOUT_MS'>;
}): DecideFn {
  const { clickhouse } = deps;
  const record = processingRecords(deps.redis, deps.config);
  return async (copies) => {
    if (copies.length === 0) return [];
    const recorded = await record(copies.map((c) => ({ ...c, members: [member(c)] })));
    const stored = await storedCopies(clickhouse, copies);
    return copies.map((c, i) => decideCopy(c, [...recorded[i]!.flatMap(parseMember), ...(stored.get(id(c)) ?? [])]));
  };
}
