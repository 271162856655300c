// The migrations in cluster form (CLICKHOUSE_CLUSTER=<name>): each statement of schemas/clickhouse/*.sql, written
// for one server, becomes its cluster equivalent, so there is one schema, not two to keep in step.
// - A table becomes `<name>_local` (Replicated*MergeTree, one ZooKeeper path per shard) on every node, plus `<name>`,
//   a Distributed table over them. Services and analysts use the Distributed names, as on one server.
// - Every row of a report (every version, every table) lands on one shard: the sharding key is the report key. So
//   duplicates still collapse (on their shard), and a report's newest version is found on its own shard
//   (distributed_product_mode = local: see services/api/current-rows.ts).
// - Materialized views run on each node, from the local table into the local read table.
// - Small tables read whole or across reports (EVERY_NODE) are replicated to every node, not sharded.

/** The sharding key of each sharded table. A new table must be given one here (forCluster throws otherwise). */
export const SHARDING_KEYS: Record<string, string> = {
  reports: 'sipHash64(report_key)',
  policy_results: 'sipHash64(report_key)',
  failure_details: 'sipHash64(report_key)',
  raw_reports: 'sipHash64(report_key)',
  // A receipt with a report goes with the report (reports_dedup joins them by key); a rejected one by its id.
  receipts: "sipHash64(if(report_key = '', receipt_id, report_key))",
  rejects: 'sipHash64(receipt_id)',
  policy_days: 'sipHash64(report_key)',
  failure_days: 'sipHash64(report_key)',
  report_days: 'sipHash64(report_key)',
  report_keys: 'sipHash64(report_key)',
  receipts_by_report: 'sipHash64(report_key)',
  domain_policies: 'sipHash64(report_key)',
  report_versions: 'sipHash64(report_key)',
  reprocessed_reports: 'sipHash64(report_key)',
  report_fingerprints: 'sipHash64(report_key)',
  report_copies: 'sipHash64(report_key)',
  forward_deliveries: 'sipHash64(report_key)',
  posture_checks: 'sipHash64(domain)',
  // A domain's incidents and their version go together (a read joins them on the shard).
  incidents: 'sipHash64(domain)',
  incident_domains: 'sipHash64(domain)',
  incident_windows: 'sipHash64(domain)',
  incident_texts: 'sipHash64(domain)',
  domain_ingest: 'sipHash64(policy_domain)',
};

/**
 * Replicated to every node in full: alerts, incident events, notification deliveries, schema_migrations, the hosted MTA-STS policies and their certificates, and the small tables of what was seen on which day
 * (filled by every shard's materialized views). A query reading them reads its own node's copy, all of it, also
 * inside a subquery that runs on each shard (distributed_product_mode = local).
 */
export const EVERY_NODE = new Set([
  'alerts',
  'schema_migrations',
  'domain_days',
  'failing_domain_days',
  'reporter_days',
  'failure_types',
  'ingest_days',
  'sts_policies',
  'sts_certificates',
  'incident_events',
  'notification_deliveries',
]);

export interface ClusterTarget {
  cluster: string;
  database: string;
}

const CREATE_TABLE = /^CREATE TABLE IF NOT EXISTS (\w+)\s*\(/;
const ENGINE = /ENGINE = (\w*MergeTree)(?:\(([^)]*)\))?/;
const CREATE_MV = /^CREATE MATERIALIZED VIEW IF NOT EXISTS (\w+) TO (\w+) AS([\s\S]*?\bFROM )(\w+)\.(\w+)/;
const CREATE_VIEW = /^CREATE (OR REPLACE )?VIEW (IF NOT EXISTS )?(\w+) AS/;
const DROP_TABLE = /^DROP TABLE IF EXISTS (\w+)$/;
const ALTER_TABLE = /^ALTER TABLE (\w+) /;
/** A table named after FROM or JOIN (not a subquery, not a table function, not already qualified). */
const TABLE_REFERENCE = /\b(FROM|JOIN)(\s+)([A-Za-z_]\w*)\b(?!\s*[.(])/g;

/**
 * `sql` with every table after FROM or JOIN qualified by `database`. On a cluster, a query's parts that run on other
 * nodes resolve unqualified names in those nodes' default database.
 */
export const qualifyTables = (sql: string, database: string): string =>
  sql.replace(TABLE_REFERENCE, `$1$2${database}.$3`);

function replicated(engine: string, args: string | undefined, path: string): string {
  const extra = args && args.trim() ? `, ${args.trim()}` : '';
  return `ENGINE = Replicated${engine}('${path}', '{replica}'${extra})`;
}

/**
 * The cluster form of one statement of a migration (one server's form). Every name is qualified with the database:
 * ON CLUSTER statements run on the other nodes in their default database. INSERTs go through Distributed tables.
 */
export function forCluster(statement: string, { cluster, database }: ClusterTarget): string[] {
  const on = `ON CLUSTER ${cluster}`;
  const db = database;
  const sql = qualifyTables(statement, db);
  const table = CREATE_TABLE.exec(sql);
  if (table) {
    const name = table[1]!;
    const engine = ENGINE.exec(sql);
    if (!engine) throw new Error(`${name}: no MergeTree engine to replicate`);
    if (EVERY_NODE.has(name)) {
      const path = `/clickhouse/tables/all/${db}/${name}`;
      return [
        sql
          .replace(CREATE_TABLE, `CREATE TABLE IF NOT EXISTS ${db}.${name} ${on} (`)
          .replace(ENGINE, replicated(engine[1]!, engine[2], path)),
      ];
    }
    const key = SHARDING_KEYS[name];
    if (!key) throw new Error(`${name}: no sharding key in SHARDING_KEYS (services/common/cluster-ddl.ts)`);
    const path = `/clickhouse/tables/{shard}/${db}/${name}`;
    return [
      sql
        .replace(CREATE_TABLE, `CREATE TABLE IF NOT EXISTS ${db}.${name}_local ${on} (`)
        .replace(ENGINE, replicated(engine[1]!, engine[2], path)),
      `CREATE TABLE IF NOT EXISTS ${db}.${name} ${on} AS ${db}.${name}_local
       ENGINE = Distributed(${cluster}, ${db}, ${name}_local, ${key})`,
    ];
  }
  const mv = CREATE_MV.exec(sql);
  if (mv) {
    const [, name, target, select, , source] = mv;
    const into = EVERY_NODE.has(target!) ? target : `${target}_local`;
    return [
      sql.replace(
        CREATE_MV,
        `CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.${name} ${on} TO ${db}.${into} AS${select}${db}.${source}_local`,
      ),
    ];
  }
  const view = CREATE_VIEW.exec(sql);
  if (view) return [sql.replace(CREATE_VIEW, `CREATE ${view[1] ?? ''}VIEW ${view[2] ?? ''}${db}.${view[3]} ${on} AS`)];
  const drop = DROP_TABLE.exec(sql.trim());
  if (drop) return [`DROP TABLE IF EXISTS ${db}.${drop[1]} ${on}`];
  const alter = ALTER_TABLE.exec(sql);
  if (alter) {
    // A column goes to the local tables and to the Distributed table over them. ClickHouse 18.16 refuses the
    // second on a cluster of replicated shards ("isn't replicated"): migrations add a table instead (0014).
    const name = alter[1]!;
    const on = (table: string): string => sql.replace(ALTER_TABLE, `ALTER TABLE ${db}.${table} ON CLUSTER ${cluster} `);
    return EVERY_NODE.has(name) ? [on(name)] : [on(`${name}_local`), on(name)];
  }
  if (/^INSERT INTO /.test(sql)) return [sql];
  throw new Error(`no cluster form for: ${statement.slice(0, 80)}`);
}
