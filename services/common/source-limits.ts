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
