// What every alert rule shares: the context it runs in, the candidates it returns, and the SQL that keeps its
// answer bounded and free of alerts already stored.
import { quoteString } from '../../common/clickhouse-compat.ts';
import type { Config } from '../../common/config.ts';
import type { Db } from '../../common/db.ts';
import type { AlertRow } from '../../../schemas/rows.ts';

export type AlertConfig = Pick<
  Config,
  | 'ALERT_RULES'
  | 'CLICKHOUSE_REQUEST_TIMEOUT_MS'
  | 'ALERT_FAILURE_RATE'
  | 'ALERT_MIN_SESSIONS'
  | 'ALERT_LOOKBACK_DAYS'
  | 'ALERT_REPORTER_DAYS'
  | 'ALERT_REPORTER_GRACE_DAYS'
>;

export type Alert = AlertRow;

export type RuleName = AlertConfig['ALERT_RULES'][number];

/** `key` is what the alert is about within its rule; with the rule it makes the alert's id. */
export type Candidate = Omit<Alert, 'alert_id' | 'seq' | 'created_at'> & { key: string[] };

export const q = quoteString;
export const isoDay = (t: number): string => new Date(t).toISOString().slice(0, 10);

/** The most candidates one rule returns per evaluation; what is left is found by the next one. */
export const ALERT_MAX_PER_RULE = 1000;

/**
 * With bounded() below, a rule returns a bounded number of candidates and never those already stored, so however
 * much a hostile report makes it find, every evaluation makes progress and no row limit can stop it.
 */
export function notAlerted(rule: RuleName, columns: string[], alertColumns: string[] = columns): string {
  return ` AND (${columns.join(', ')}) NOT IN (SELECT ${alertColumns.join(', ')} FROM alerts WHERE rule = ${q(rule)})`;
}
export const bounded = (order: string): string => ` ORDER BY ${order} LIMIT ${ALERT_MAX_PER_RULE}`;

export interface RuleContext {
  db: Db;
  config: AlertConfig;
  now: Date;
  /** `toDate('…')` of the first day looked at (ALERT_LOOKBACK_DAYS ago). */
  sinceSql: string;
  /**
   * A condition on `day`: the days looked at, among those since `sinceSql` that received reports since the last
   * evaluation (all of them on the first); one day per call, or all of them for the rules in alert-evaluation.ts's WINDOWED.
   */
  daysSql: string;
  /** When the previous evaluation ran, if one did: rules about what stopped look only at the days since. */
  previousRun: Date | undefined;
}
