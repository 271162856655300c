// The SQL of npm run replay-rejects (deploy/scripts/replay-rejects.ts), apart so the tests run it on every
// ClickHouse we support.
import { quoteString } from '../../services/common/clickhouse-compat.ts';

/** `AND …` limiting rows to receipt days in [from, to] (either may be absent). */
export function rejectDates(from?: string, to?: string): string {
  return [
    from === undefined ? '' : `AND toDate(received_at) >= toDate(${quoteString(from)})`,
    to === undefined ? '' : `AND toDate(received_at) <= toDate(${quoteString(to)})`,
  ].join(' ');
}

/**
 * The next page of receipt ids to replay, after `after`: choosing on the id, reason and version columns alone, each
 * receipt's latest reject decides (a replayed receipt may have been rejected again, for another reason); receipts
 * stored since are skipped.
 */
export function rejectPageSql(after: string, reasons: string[], dates: string): string {
  return `SELECT receipt_id FROM (
        SELECT receipt_id, argMax(reason, version) AS latest_reason
        FROM rejects WHERE receipt_id > ${quoteString(after)} ${dates}
        GROUP BY receipt_id
      )
      WHERE latest_reason IN (${reasons.map(quoteString).join(', ')})
        AND receipt_id GLOBAL NOT IN (SELECT receipt_id FROM receipts WHERE outcome = 'stored' ${dates})
      ORDER BY receipt_id LIMIT 100`;
}

/** The latest reject row of each of these receipts, with what makes its job again. */
export function rejectRowsSql(ids: string[]): string {
  return `SELECT receipt_id, received_at, reason, channel, remote_address, user_agent, content_type,
               content_encoding, path, raw_base64, body_bytes, meta
        FROM rejects WHERE receipt_id IN (${ids.map(quoteString).join(', ')})
        ORDER BY receipt_id, version DESC LIMIT 1 BY receipt_id`;
}
