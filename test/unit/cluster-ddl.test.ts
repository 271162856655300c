// The cluster form of the migrations (services/common/cluster-ddl.ts): every statement of every migration has one,
// every table is sharded by a key or kept on every node, and nothing is left to a remote node's default database.
// (test/e2e/cluster.test.ts applies them to a real cluster.)
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EVERY_NODE, SHARDING_KEYS, forCluster, qualifyTables } from '../../services/common/cluster-ddl.ts';
import { replaceViewForms } from '../../services/common/clickhouse-compat.ts';
import { MIGRATIONS_DIR, splitStatements } from '../../services/common/migrations.ts';

const target = { cluster: 'c1', database: 'db1' };
const statements = readdirSync(MIGRATIONS_DIR)
  .filter((f) => f.endsWith('.sql'))
  .sort()
  .flatMap((f) => splitStatements(readFileSync(join(MIGRATIONS_DIR, f), 'utf8')));

describe('migrations in cluster form', () => {
  it('every statement has one; tables are replicated, and sharded by report or on every node', () => {
    const tables = statements.flatMap((s) => /^CREATE TABLE IF NOT EXISTS (\w+)/.exec(s)?.[1] ?? []);
    expect(tables.length).toBeGreaterThan(10);
    for (const name of tables)
      expect(SHARDING_KEYS[name] ?? (EVERY_NODE.has(name) ? 'every node' : undefined)).toBeDefined();
    for (const s of statements) {
      const out = forCluster(s, target);
      for (const o of out) {
        if (/^(CREATE|DROP|ALTER)/.test(o)) expect(o).toContain('ON CLUSTER c1');
        expect(o).not.toMatch(/ENGINE = (Replacing)?MergeTree/);
      }
    }
    const [local, distributed] = forCluster(
      statements.find((s) => s.includes('TABLE IF NOT EXISTS reports\n'))!,
      target,
    );
    expect(local).toContain(
      "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db1/reports', '{replica}', version)",
    );
    expect(distributed).toContain('ENGINE = Distributed(c1, db1, reports_local, sipHash64(report_key))');
  });

  it('materialized views read and write the local tables; views and inserts name the database', () => {
    const mv = forCluster(
      statements.find((s) => s.startsWith('CREATE MATERIALIZED VIEW IF NOT EXISTS policy_days_mv'))!,
      target,
    )[0]!;
    expect(mv).toMatch(
      /^CREATE MATERIALIZED VIEW IF NOT EXISTS db1\.policy_days_mv ON CLUSTER c1 TO db1\.policy_days_local AS/,
    );
    expect(mv).toContain('FROM db1.policy_results_local');
    // A target kept on every node is written directly.
    const everywhere = forCluster(
      statements.find((s) => s.includes('domain_days_mv TO'))!,
      target,
    )[0]!;
    expect(everywhere).toContain('TO db1.domain_days AS');
    const replace = statements.findLast((s) => s.startsWith('CREATE OR REPLACE VIEW policy_results_dedup'))!;
    const view = forCluster(replace, target)[0]!;
    expect(view).toMatch(/^CREATE OR REPLACE VIEW db1.policy_results_dedup ON CLUSTER c1 AS/);
    // On 18.16, its drop and create (clickhouse-compat.ts), each on the cluster.
    expect(
      replaceViewForms(replace)!
        .flatMap((s) => forCluster(s, target))
        .map((s) => s.split('\n')[0]),
    ).toEqual([
      'DROP TABLE IF EXISTS db1.policy_results_dedup ON CLUSTER c1',
      'CREATE VIEW db1.policy_results_dedup ON CLUSTER c1 AS',
    ]);
    expect(view).toContain('FROM db1.policy_results');
    expect(view).toContain('FROM db1.policy_days GROUP BY');
    expect(view).not.toMatch(/FROM (policy|reports|receipts)/);
  });

  it('ALTER goes to the local and the Distributed table; qualifying leaves subqueries and qualified names alone', () => {
    expect(forCluster('ALTER TABLE reports ADD COLUMN x String', target)).toEqual([
      'ALTER TABLE db1.reports_local ON CLUSTER c1 ADD COLUMN x String',
      'ALTER TABLE db1.reports ON CLUSTER c1 ADD COLUMN x String',
    ]);
    expect(qualifyTables('SELECT a FROM (SELECT a FROM t JOIN u USING a) JOIN x.y USING a FROM numbers(3)', 'd')).toBe(
      'SELECT a FROM (SELECT a FROM d.t JOIN d.u USING a) JOIN x.y USING a FROM numbers(3)',
    );
    expect(() =>
      forCluster('CREATE TABLE IF NOT EXISTS unknown_table (a UInt8) ENGINE = MergeTree ORDER BY a', target),
    ).toThrow(/sharding key/);
  });
});
