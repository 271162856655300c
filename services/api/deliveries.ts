// The notification deliveries the scheduler made (notification_deliveries, migration 0012): each delivery's latest
// state, newest first, within a token's domains.
import { sqlInteger } from '../common/sql.ts';
import type { NotificationDeliveryRow } from '../../schemas/rows.ts';
import type { Principal } from './auth.ts';
import { quoteString } from '../common/clickhouse-compat.ts';
import type { Db } from './queries.ts';

export async function listDeliveries(db: Db, principal: Principal, limit: number) {
  // A domain-limited token sees the deliveries about its domains only.
  const scope = principal.domains
    ? ` AND hasAny(domains, [${[...principal.domains].map(quoteString).join(', ') || "''"}])`
    : '';
  const rows = await db.rows<NotificationDeliveryRow>(
    `SELECT * FROM notification_deliveries WHERE 1 ${scope}
     ORDER BY version DESC LIMIT 1 BY delivery_id LIMIT ${sqlInteger(limit)}`,
  );
  return {
    deliveries: rows.map((r) => ({
      id: r.delivery_id,
      notificationId: r.notification_id,
      kind: r.kind,
      domains: r.domains,
      title: r.title,
      channel: r.channel,
      destination: r.destination,
      state: r.state,
      attempts: r.attempts,
      error: r.error || null,
      at: r.at,
    })),
  };
}
