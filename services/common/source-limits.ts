// Per-source-address limits for the receivers: open connections, and events (requests, messages) per minute.
// Memory stays bounded: entries are dropped when their count returns to zero or their minute is over.

export class ConnectionLimiter {
  private readonly open = new Map<string, number>();
  constructor(private readonly max: number) {}

  /** Counts a new connection; false when the address already has `max` open. */
  acquire(address: string): boolean {
    const n = this.open.get(address) ?? 0;
    if (n >= this.max) return false;
    this.open.set(address, n + 1);
    return true;
  }

  release(address: string): void {
    const n = (this.open.get(address) ?? 1) - 1;
    if (n <= 0) this.open.delete(address);
    else this.open.set(address, n);
  }
}

/** A fixed one-minute window per address. */
export class RateLimiter {
  private window = 0;
  private counts = new Map<string, number>();
  constructor(
    private readonly perMinute: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Counts one event; false when the address is over its limit this minute. */
  allow(address: string): boolean {
    const w = Math.floor(this.now() / 60_000);
    if (w !== this.window) {
      this.window = w;
      this.counts = new Map();
    }
    const n = (this.counts.get(address) ?? 0) + 1;
    this.counts.set(address, n);
    return n <= this.perMinute;
  }

  /** Seconds until the current window ends (for Retry-After). */
  retryAfterSeconds(): number {
    return 60 - Math.floor((this.now() % 60_000) / 1000);
  }
}

/**
 * Memory a report costs until its job is in Redis, per byte received: the bytes, their base64 text in the job, the
 * job serialized to JSON and the command buffer Redis is written from (for mail: the parsed parts instead of one
 * of those). A receiver's in-flight budget counts every byte this many times.
 */
export const HELD_PER_BYTE = 4;

/** What one request or message holds of a ByteBudget; `release` gives all of it back (and may be called again). */
export interface BudgetHold {
  /** Holds `bytes` more; false (holding nothing more) when that would pass the budget. */
  take: (bytes: number) => boolean;
  release: () => void;
}

/** A process-wide bound on the bytes held by requests or messages in flight, each counted HELD_PER_BYTE times. */
export class ByteBudget {
  private used = 0;
  constructor(private readonly max: number) {}

  hold(): BudgetHold {
    let held = 0;
    return {
      take: (bytes) => {
        const cost = bytes * HELD_PER_BYTE;
        if (this.used + cost > this.max) return false;
        held += cost;
        this.used += cost;
        return true;
      },
      release: () => {
        this.used -= held;
        held = 0;
      },
    };
  }
}
