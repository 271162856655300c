// What ClickHouse 18.16 makes us do, in one place. 18.16 is the only server Debian installs on the machines this
// project is built and tested on; production runs current ClickHouse. So every statement runs on both, and each thing
// 18.16 lacks is worked around once: here, or named here with the file that carries it and what lets it go.
// test/integration/clickhouse-compat.test.ts runs each probe on 18.16 (it must fail: the workaround is still needed)
// and on current ClickHouse (chdb 26.x: it must pass, so the plain form is the way once 18.16 is dropped).
// Not a workaround, though it looks like one: aliases that name no column. Every ClickHouse resolves an alias in the
// whole query (WHERE included) before a column of that name (Code 184 on 26.x as on 18.16, tested).
import { escapeString } from './sql.ts';

export interface Workaround {
  /** What 18.16 lacks or gets wrong. */
  lacks: string;
  /** What we do instead, and where. */
  instead: string;
  /** The ClickHouse that lets the workaround go. */
  goesWith: string;
  /** A statement current ClickHouse runs and 18.16 refuses (with its query parameters), when one shows it. */
  probe?: { sql: string; params?: Record<string, string | number> };
}

export const WORKAROUNDS = {
  queryParameters: {
    lacks: 'server-side query parameters ({name:Type} with param_name)',
    instead: 'values are quoted into the SQL text by quoteString (below), numbers by sqlInteger (sql.ts)',
    goesWith: 'ClickHouse 19.x (2019): pass values as query_params, and drop quoteString',
    probe: { sql: 'SELECT {v:UInt8} AS v', params: { v: 7 } },
  },
  replaceView: {
    lacks: 'CREATE OR REPLACE VIEW',
    instead: 'migrations write CREATE OR REPLACE VIEW; on 18.16 it runs as DROP TABLE + CREATE VIEW (replaceViewForms)',
    goesWith: 'ClickHouse 19.x (2019; its test 00916_create_or_replace_view): drop replaceViewForms',
    probe: { sql: 'CREATE OR REPLACE VIEW compat_probe_view AS SELECT 1 AS one' },
  },
  ttl: {
    lacks: 'TTL on tables',
    instead: 'services/scheduler/retention.ts deletes old rows by mutation, once a day',
    goesWith: 'ClickHouse 19.6: a TTL clause on each table (a migration), and drop the retention job',
    probe: {
      sql: 'CREATE TABLE IF NOT EXISTS compat_probe_ttl (d Date) ENGINE = MergeTree ORDER BY d TTL d + INTERVAL 1 DAY',
    },
  },
  distinctOverJoin: {
    lacks: 'DISTINCT over a join keeps a row once per joined version',
    instead: 'GROUP BY in its place (services/api/queries.ts, the report list)',
    goesWith: 'current ClickHouse (checked with 26.x); no version named, so the GROUP BY stays',
  },
  predicatePushdownIntoViews: {
    lacks: "pushing a WHERE into a view's GROUP BY",
    instead: 'one report is read from the tables by its key, not through reports_dedup (queries.ts reportSql)',
    goesWith: 'current ClickHouse (checked with 26.x); the direct read is also the faster, so it stays',
  },
  tupleStatesOnClusters: {
    lacks: 'argMax over tuples: 18.16 crashes sending such states between cluster nodes',
    instead: 'one argMax per column (schemas/clickhouse/0005)',
    goesWith: 'no version named; one argMax per column costs little, so it stays',
  },
  distributedUnexpectedPacket: {
    lacks: 'a Distributed read cancelled on a shard may fail with "Unexpected packet Data received from client"',
    instead: 'reads retry once on that error (db.ts)',
    goesWith: 'ClickHouse 20.12 (ClickHouse/ClickHouse#17254): drop the retry',
  },
} satisfies Record<string, Workaround>;

/** A ClickHouse string literal: `'...'` with backslash escapes, safe for any JavaScript string (queryParameters). */
export function quoteString(value: string): string {
  return `'${escapeString(value)}'`;
}

/** `('a', 'b', …)`: a list of string literals for `IN`; `('')` when empty, which matches no name. */
export const inList = (values: string[]): string => `(${values.map(quoteString).join(', ') || "''"})`;

const REPLACE_VIEW = /^CREATE OR REPLACE VIEW (\w+) AS\b/;

/**
 * A migration statement `CREATE OR REPLACE VIEW v AS …` as 18.16 runs it: `DROP TABLE IF EXISTS v` (18.16 has no
 * DROP VIEW; DROP TABLE drops a view on every version), then `CREATE VIEW v AS …`. Undefined for any other statement.
 * Current ClickHouse runs the statement itself, which replaces the view without a moment where it is missing.
 */
export function replaceViewForms(statement: string): [string, string] | undefined {
  const view = REPLACE_VIEW.exec(statement);
  if (!view) return undefined;
  return [`DROP TABLE IF EXISTS ${view[1]}`, statement.replace(REPLACE_VIEW, `CREATE VIEW ${view[1]} AS`)];
}

/** Whether a server of `version` (`SELECT version()`) parses CREATE OR REPLACE VIEW: 19 and later. */
export const canReplaceViews = (version: string): boolean => Number.parseInt(version, 10) >= 19;
