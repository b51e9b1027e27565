export interface LoginThrottleOptions {
  /** Wrong tokens an address may present within `windowMs`; the next attempt is refused unread. */
  readonly maxFailures?: number;
  readonly windowMs?: number;
  /** Addresses remembered at once; past it the one whose last failure is oldest is forgotten. */
  readonly maxAddresses?: number;
  /** Milliseconds, monotonic enough for windows; injected by tests. */
  readonly now?: () => number;
}

/**
 * Wrong admin tokens counted per client address over a sliding window. Without
 * it an address could try thousands of tokens a second (docs/observability.md,
 * "Admin dashboard"); with it, five a minute. Each address keeps the times of its
 * failures still inside the window (at most `maxFailures` of them), so memory is
 * bounded by `maxAddresses × maxFailures` numbers whatever the traffic.
 */
export class LoginThrottle {
  readonly maxFailures: number;
  readonly windowMs: number;
  private readonly maxAddresses: number;
  private readonly now: () => number;
  /** Address → failure times, oldest first; the map's order is the order of each address's latest failure. */
  private readonly failures = new Map<string, number[]>();

  constructor(options: LoginThrottleOptions = {}) {
    this.maxFailures = options.maxFailures ?? 5;
    this.windowMs = options.windowMs ?? 60_000;
    this.maxAddresses = options.maxAddresses ?? 10_000;
    this.now = options.now ?? Date.now;
    if (!(this.maxFailures >= 1 && this.windowMs > 0 && this.maxAddresses >= 1)) throw new RangeError('LoginThrottle: maxFailures, windowMs and maxAddresses must be positive');
  }

  /**
   * Milliseconds until `address` may present a token again, 0 when it may now.
   * A refused attempt is not counted: waiting out the window is enough to be
   * heard again, so a locked-out admin is never locked out for longer.
   */
  retryAfterMs(address: string): number {
    const times = this.live(address);
    if (times === undefined || times.length < this.maxFailures) return 0;
    return times[0]! + this.windowMs - this.now();
  }

  recordFailure(address: string): void {
    const times = this.live(address) ?? [];
    times.push(this.now());
    // Only the newest `maxFailures` can ever decide a refusal; older ones would only cost memory.
    if (times.length > this.maxFailures) times.splice(0, times.length - this.maxFailures);
    // Re-inserted so the map stays ordered by latest failure: the first entry is the one to drop.
    this.failures.delete(address);
    if (this.failures.size >= this.maxAddresses) this.failures.delete(this.failures.keys().next().value!);
    this.failures.set(address, times);
  }

  /** The address proved it holds the token: its own mistakes are forgotten, nobody else's. */
  recordSuccess(address: string): void {
    this.failures.delete(address);
  }

  /** Addresses currently remembered. */
  get size(): number {
    return this.failures.size;
  }

  /** The address's failures still inside the window; an address with none left is forgotten. */
  private live(address: string): number[] | undefined {
    const times = this.failures.get(address);
    if (times === undefined) return undefined;
    const since = this.now() - this.windowMs;
    let expired = 0;
    while (expired < times.length && times[expired]! <= since) expired++;
    if (expired === times.length) {
      this.failures.delete(address);
      return undefined;
    }
    if (expired > 0) times.splice(0, expired);
    return times;
  }
}
