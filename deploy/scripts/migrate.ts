// npm run migrate: applies pending ClickHouse migrations to CLICKHOUSE_DATABASE.
import { loadConfig } from '../../services/common/config.ts';
import { createLogger } from '../../services/common/logger.ts';
import { migrate } from '../../services/common/migrations.ts';

const config = loadConfig();
const log = createLogger('migrate', config.LOG_LEVEL);
const result = await migrate(config, (line) => log.info(line));
log.info({ applied: result.applied.length, skipped: result.skipped.length }, 'migrations done');
