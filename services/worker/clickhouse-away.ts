// ClickHouse out of reach fails every job the same way. Counted as attempts, those failures grow each job's backoff
// to a minute, and after an outage the backlog waited that long to drain (about two minutes after the 60 s outage of
// test/e2e/faults.test.ts). Instead the worker takes no job for a short pause and puts the failed ones back without
// spending an attempt, so the backlog drains as soon as ClickHouse answers.

/** Errors that say the server was not reached or did not answer, not that it refused these rows. */
const UNREACHABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'ENOTFOUND',
]);

export function isUnreachable(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | null | undefined;
  if (typeof e?.code === 'string' && UNREACHABLE_CODES.has(e.code)) return true;
  // @clickhouse/client's request timeout, and a socket the server closed without an answer.
  return typeof e?.message === 'string' && /^(Timeout error\.|socket hang up)/.test(e.message);
}

/**
 * Times one job may go back without spending an attempt. Past it, its failures count again (backoff up to a minute):
 * a job whose own insert breaks the connection must not hold the queue in pauses for long.
 */
export const FREE_RETRIES = 30;

/** The pause, from how long ClickHouse has been out of reach: 1 s at first, growing to 5 s after 50 s. */
export function pauseMs(awayForMs: number): number {
  return Math.round(Math.min(5_000, Math.max(1_000, awayForMs / 10)));
}

/** Tracks one worker's view of ClickHouse: since when it is out of reach, if it is. */
export class ClickHouseAway {
  private since: number | undefined;

  get isAway(): boolean {
    return this.since !== undefined;
  }

  /** A job's write failed with `err`: the pause to take, or undefined when the job should fail as usual. */
  failed(err: unknown, freeRetriesUsed: number, now = Date.now()): number | undefined {
    if (!isUnreachable(err) || freeRetriesUsed >= FREE_RETRIES) return undefined;
    this.since ??= now;
    return pauseMs(now - this.since);
  }

  /** A write succeeded: how long ClickHouse had been out of reach (undefined if it was not). */
  reached(now = Date.now()): number | undefined {
    const since = this.since;
    this.since = undefined;
    return since === undefined ? undefined : now - since;
  }
}
