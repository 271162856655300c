import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger };

/** JSON logs to stdout; never pretty-printed, so tests and production read the same lines. */
export function createLogger(name: string, level: LoggerOptions['level'] = 'info'): Logger {
  return pino({
    name,
    level,
    base: { service: name },
    // Report bodies and TLS keys never belong in logs.
    redact: { paths: ['*.bodyBase64', '*.key', '*.password', 'config.CLICKHOUSE_PASSWORD'], remove: true },
  });
}
