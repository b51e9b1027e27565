/** One counter a reservation checks and, if every check passes, raises by `cost`. */
export interface CounterCheck {
  readonly key: string;
  /** The previous bucket of a sliding window, counted at `prevWeight`; null for calendar windows. */
  readonly prevKey: string | null;
  readonly prevWeight: number;
  readonly limit: number;
  readonly cost: number;
  /** How long the bucket must live from now. */
  readonly keepMs: number;
}

export interface BucketCounts {
  readonly current: number;
  /** The previous bucket's whole count (0 for calendar windows); the caller weighs it. */
  readonly previous: number;
}

export interface ReserveResult {
  /** True when every check fits and all were raised; false when none was. */
  readonly ok: boolean;
  /** Each check's counts before this reservation. */
  readonly counts: readonly BucketCounts[];
}

export interface CounterAdjustment {
  readonly key: string;
  readonly delta: number;
}

/**
 * Where limit counters live: in this process or in Redis. `reserve` is atomic
 * over all its checks: either every counter is raised or none is, so several
 * limits on one request cannot half-apply.
 */
export interface CounterStore {
  reserve(checks: readonly CounterCheck[]): Promise<ReserveResult>;
  /** Settles earlier reservations; a bucket that has since expired is left alone. */
  adjust(adjustments: readonly CounterAdjustment[]): Promise<void>;
  close(): Promise<void>;
}

/** The store could not be reached; `limits.on_store_failure` decides what the request gets. */
export class StoreUnavailableError extends Error {
  constructor(cause: unknown) {
    super('the limit store cannot be reached', { cause });
    this.name = 'StoreUnavailableError';
  }
}
