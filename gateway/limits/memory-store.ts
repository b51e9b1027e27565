import type { CounterAdjustment, CounterCheck, CounterStore, ReserveResult } from './counter-store.js';

interface Bucket {
  count: number;
  expiresAt: number;
}

const SWEEP_MS = 60_000;

/**
 * Counters in this process. Every operation runs synchronously on the event
 * loop, which makes `reserve` atomic without locks. Buckets expire with their
 * window and are swept once a minute.
 */
export class MemoryStore implements CounterStore {
  private readonly buckets = new Map<string, Bucket>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly now: () => number = Date.now) {
    this.sweeper = setInterval(() => this.sweep(), SWEEP_MS);
    this.sweeper.unref();
  }

  reserve(checks: readonly CounterCheck[]): Promise<ReserveResult> {
    const now = this.now();
    let ok = true;
    const counts = checks.map((c) => {
      const current = this.count(c.key, now);
      const previous = c.prevKey === null ? 0 : this.count(c.prevKey, now);
      if (current + previous * c.prevWeight + c.cost > c.limit) ok = false;
      return { current, previous };
    });
    if (ok) {
      for (const c of checks) {
        if (c.cost === 0) continue;
        const bucket = this.live(c.key, now);
        if (bucket) bucket.count += c.cost;
        else this.buckets.set(c.key, { count: c.cost, expiresAt: now + c.keepMs });
      }
    }
    return Promise.resolve({ ok, counts });
  }

  adjust(adjustments: readonly CounterAdjustment[]): Promise<void> {
    const now = this.now();
    for (const a of adjustments) {
      const bucket = this.live(a.key, now);
      if (bucket) bucket.count = Math.max(0, bucket.count + a.delta);
    }
    return Promise.resolve();
  }

  /** Sets a bucket restored from the audit log at start-up. */
  seed(key: string, count: number, keepMs: number): void {
    if (count > 0 && keepMs > 0) this.buckets.set(key, { count, expiresAt: this.now() + keepMs });
  }

  close(): Promise<void> {
    clearInterval(this.sweeper);
    return Promise.resolve();
  }

  private live(key: string, now: number): Bucket | undefined {
    const bucket = this.buckets.get(key);
    return bucket && bucket.expiresAt > now ? bucket : undefined;
  }

  private count(key: string, now: number): number {
    return this.live(key, now)?.count ?? 0;
  }

  private sweep(): void {
    const now = this.now();
    for (const [key, bucket] of this.buckets) if (bucket.expiresAt <= now) this.buckets.delete(key);
  }
}
