// The report forwards the scheduler delivered or gave up on (forward_deliveries, migration 0016): each delivery's
// newest state, newest first, so an operator finds the ones that failed (and retries them: POST …/retry).
import { quoteString } from '../common/clickhouse-compat.ts';
import { sqlInteger } from '../common/sql.ts';
import type { Db } from './queries.ts';

export const FORWARD_STATES = ['delivered', 'retrying', 'failed'] as const;

interface ForwardRow {
  forward_id: string;
  report_key: string;
  receipt_id: string;
  destination: string;
  last_state: string;
  last_attempts: number;
  last_error: string;
  last_at: string;
}

/** Deliveries recorded in the last `days` days, in their newest state (only `state` ones, when given). */
export async function listForwards(
  db: Db,
  q: { state?: (typeof FORWARD_STATES)[number] | undefined; days: number; limit: number },
) {
  const since = `at >= now() - ${sqlInteger(q.days * 86400)}`;
  // A state asked for: only the deliveries that were ever in it are grouped (failures are few among many
  // deliveries). A delivery's rows share a shard (by report key), so the IN runs on each shard alone.
  const ever = q.state
    ? ` AND forward_id IN (SELECT forward_id FROM forward_deliveries WHERE ${since} AND state = ${quoteString(q.state)})`
    : '';
  const state = q.state ? ` WHERE last_state = ${quoteString(q.state)}` : '';
  // Grouped by delivery within the days asked (the table's partitions are months of `at`): its rows of older
  // attempts, before the range, cannot be newer than its rows in it.
  const rows = await db.rows<ForwardRow>(
    `SELECT forward_id, report_key, receipt_id, destination, last_state, last_attempts, last_error,
            toString(last_at) AS last_at
     FROM (SELECT forward_id, argMax(report_key, version) AS report_key, argMax(receipt_id, version) AS receipt_id,
                  argMax(destination, version) AS destination, argMax(state, version) AS last_state,
                  argMax(attempts, version) AS last_attempts, argMax(error, version) AS last_error,
                  max(at) AS last_at
           FROM forward_deliveries WHERE ${since}${ever}
           GROUP BY forward_id)${state}
     ORDER BY last_at DESC, forward_id LIMIT ${sqlInteger(q.limit)}`,
  );
  return {
    forwards: rows.map((r) => ({
      id: r.forward_id,
      reportKey: r.report_key,
      receiptId: r.receipt_id,
      destination: r.destination,
      state: r.last_state,
      attempts: Number(r.last_attempts),
      error: r.last_error || null,
      at: r.last_at,
    })),
  };
}
