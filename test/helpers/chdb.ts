// Current ClickHouse (26.x), embedded in this process by the npm package chdb: the same migrations, rows and queries
// as on the suite's 18.16 server, to compare their answers.
import { readdir, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import type { ClickHouseClient } from '../../services/common/clickhouse.ts';
import { MIGRATIONS_DIR, splitStatements } from '../../services/common/migrations.ts';
import { encodeTsv } from '../../services/common/tsv.ts';
import type { Db } from '../../services/api/queries.ts';
import { TABLE_COLUMNS, INSERT_PHASES, type TableRows } from '../../schemas/rows.ts';

export interface Chdb {
  version: string;
  db: Db;
  /** What the evaluations use of a ClickHouse client: JSONEachRow inserts of arrays, TabSeparated of streams. */
  client: ClickHouseClient;
  write(rows: TableRows): Promise<void>;
  close(): void;
}

/** What we use of chdb's Session (the package is installed by dev/ensure-chdb.sh, apart from our lock). */
interface ChdbSession {
  queryAsync(query: string, opts: { format: string }): Promise<{ text(): string }>;
  insert(params: { table: string; values: Buffer; format: string; columns: readonly string[] }): Promise<unknown>;
  close(): void;
}
const chdbPackage = resolve(import.meta.dirname, '../../dev/tools/chdb/package.json');

/** A bare chdb session in `dir`: statements run in it one by one, their output as text (JSONEachRow by default). */
export function openChdbSession(dir: string): {
  session: ChdbSession;
  run: (sql: string, format?: string) => Promise<string>;
} {
  const { Session } = createRequire(chdbPackage)('chdb') as { Session: new (path: string) => ChdbSession };
  const session = new Session(dir);
  return { session, run: async (sql, format = 'JSONEachRow') => (await session.queryAsync(sql, { format })).text() };
}

/** A chdb session in `dir` with every migration applied to database `database`. */
export async function openChdb(dir: string, database: string): Promise<Chdb> {
  const { session, run } = openChdbSession(dir);
  await run(`CREATE DATABASE IF NOT EXISTS ${database}`);
  await run(`USE ${database}`);
  // As the API's client asks of 18.16: 64-bit integers as JSON numbers.
  await run('SET output_format_json_quote_64bit_integers = 0');
  for (const file of (await readdir(MIGRATIONS_DIR)).filter((f) => f.endsWith('.sql')).sort()) {
    for (const statement of splitStatements(await readFile(join(MIGRATIONS_DIR, file), 'utf8'))) await run(statement);
  }
  const rows = async <T>(sql: string): Promise<T[]> =>
    (await run(sql))
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as T);
  const client = {
    insert: async (
      p: { table: string; format: string } & (
        { values: object[] } | { values: AsyncIterable<Buffer>; columns: readonly string[] }
      ),
    ) => {
      if (Array.isArray(p.values)) {
        if (p.values.length > 0)
          await run(`INSERT INTO ${p.table} FORMAT JSONEachRow\n${p.values.map((v) => JSON.stringify(v)).join('\n')}`);
        return;
      }
      // insertTsv's stream of TabSeparated pieces.
      if (p.format !== 'TabSeparated' || !('columns' in p)) throw new Error(`chdb shim: no ${p.format} stream inserts`);
      const pieces: Buffer[] = [];
      for await (const piece of p.values) pieces.push(piece);
      const body = Buffer.concat(pieces);
      if (body.length > 0)
        await session.insert({ table: p.table, values: body, format: 'TabSeparated', columns: p.columns });
    },
  } as unknown as ClickHouseClient;
  const [v] = await rows<{ v: string }>('SELECT version() AS v');
  return {
    version: v!.v,
    db: { rows },
    client,
    async write(tableRows: TableRows) {
      // The worker's own encoding, table by table in its insert order.
      for (const table of INSERT_PHASES.flat()) {
        const list = tableRows[table] as object[];
        if (list.length === 0) continue;
        const columns = TABLE_COLUMNS[table];
        await session.insert({ table, values: encodeTsv(columns, list), format: 'TabSeparated', columns });
      }
    },
    close: () => session.close(),
  };
}
