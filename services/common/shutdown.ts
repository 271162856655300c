import type { Logger } from './logger.ts';

/**
 * On SIGTERM/SIGINT, runs the steps in order (stop intake first, close stores last), then exits. A hard deadline
 * (unref'd, so it never keeps the process alive) ends a shutdown that hangs.
 */
export function onShutdown(logger: Logger, steps: Array<[string, () => Promise<void>]>, deadlineMs = 30_000): void {
  let started = false;
  const run = async (signal: string): Promise<void> => {
    if (started) return;
    started = true;
    logger.info({ signal }, 'shutting down');
    setTimeout(() => {
      logger.error('shutdown deadline passed; exiting');
      process.exit(1);
    }, deadlineMs).unref();
    for (const [name, step] of steps) {
      try {
        await step();
      } catch (err) {
        logger.warn({ step: name, err }, 'shutdown step failed');
      }
    }
    logger.info('stopped');
    process.exit(0);
  };
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => void run(signal));
}
