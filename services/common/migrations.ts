// Applies schemas/clickhouse/NNNN_*.sql in order and records each in `schema_migrations`. Forward-only; run once
// per deploy (npm run migrate), never on service start-up.
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createClickHouse, type ClickHouseConfig } from './clickhouse.ts';
import { quoteIdentifier } from './sql.ts';
import { canReplaceViews, quoteString, replaceViewForms } from './clickhouse-compat.ts';
import { forCluster } from './cluster-ddl.ts';

export const MIGRATIONS_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../../schemas/clickhouse');

/** Splits a migration file into statements: `;` at the end of a line ends one; `--` comment lines are dropped. */
export function splitStatements(sql: string): string[] {
  const withoutComments = sql
    .split('\n')
    .filter((line) => !line.trimStart().startsWith('--'))
    .join('\n');
  return withoutComments
    .split(/;\s*(?:\n|$)/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

async function serverVersion(client: ReturnType<typeof createClickHouse>): Promise<string> {
  const [row] = await (
    await client.query({ query: 'SELECT version() AS v', format: 'JSONEachRow' })
  ).json<{
    v: string;
  }>();
  return row?.v ?? '';
}

export interface MigrationResult {
  applied: string[];
  skipped: string[];
}

export async function migrate(
  config: ClickHouseConfig,
  log: (line: string) => void = () => {},
  /** Only the migrations up to this one (its number, e.g. '0007'): a database as an older release left it. */
  until?: string,
): Promise<MigrationResult> {
  const database = config.CLICKHOUSE_DATABASE;
  const admin = createClickHouse(config, 'default');
  const client = createClickHouse(config, database);
  try {
    const cluster = config.CLICKHOUSE_CLUSTER;
    // On a cluster (CLICKHOUSE_CLUSTER), every statement in its cluster form (services/common/cluster-ddl.ts).
    const statements = (statement: string): string[] =>
      cluster ? forCluster(statement, { cluster, database }) : [statement];
    const runForms = async (statement: string): Promise<void> => {
      for (const query of statements(statement)) await client.command({ query });
    };
    // ClickHouse 18.16 cannot parse CREATE OR REPLACE VIEW: it drops and creates the view instead (clickhouse-compat).
    const replaces = canReplaceViews(await serverVersion(admin));
    const run = async (statement: string): Promise<void> => {
      for (const form of (!replaces && replaceViewForms(statement)) || [statement]) await runForms(form);
    };
    const onCluster = cluster ? ` ON CLUSTER ${quoteIdentifier(cluster)}` : '';
    await admin.command({ query: `CREATE DATABASE IF NOT EXISTS ${quoteIdentifier(database)}${onCluster}` });
    await runForms(
      `CREATE TABLE IF NOT EXISTS schema_migrations (name String, checksum String, applied_at DateTime('UTC'))
       ENGINE = MergeTree ORDER BY name`,
    );
    const rows = await (
      await client.query({ query: 'SELECT name FROM schema_migrations', format: 'JSONEachRow' })
    ).json<{ name: string }>();
    const done = new Set(rows.map((r) => r.name));
    const files = (await readdir(MIGRATIONS_DIR)).filter((f) => /^\d{4}_[a-z0-9_-]+\.sql$/.test(f)).sort();
    const result: MigrationResult = { applied: [], skipped: [] };
    for (const file of files) {
      if (until !== undefined && file.slice(0, until.length) > until) break;
      if (done.has(file)) {
        result.skipped.push(file);
        continue;
      }
      const sql = await readFile(join(MIGRATIONS_DIR, file), 'utf8');
      // Statements are idempotent (IF NOT EXISTS, OR REPLACE), so a migration interrupted half-way is safe to run again.
      for (const statement of splitStatements(sql)) await run(statement);
      const checksum = createHash('sha256').update(sql).digest('hex');
      await client.command({
        query: `INSERT INTO schema_migrations (name, checksum, applied_at) VALUES (${quoteString(file)}, ${quoteString(checksum)}, now())`,
      });
      log(`applied ${file}`);
      result.applied.push(file);
    }
    return result;
  } finally {
    await Promise.all([admin.close(), client.close()]);
  }
}
