import { keyDigest } from './key-format.js';
import type { KeysByDigest, KeySource } from './key-source.js';
import type { ApiKeyRecord } from './key-store.js';

/** Bounds the memo of presented keys so a flood of distinct valid keys cannot grow memory. */
const MEMO_LIMIT = 10_000;

/**
 * The active keys, held in memory so authentication never waits on a
 * database, and replaced whenever the source reports a change: the local
 * SQLite file, or PostgreSQL in fleet mode. A revoked key stops working the
 * moment its source hands over a set without it.
 */
export class KeyRegistry {
  private byDigest: KeysByDigest;
  /** Presented key → record, so a busy client costs one SHA-256 per change of keys, not per request. */
  private memo = new Map<string, ApiKeyRecord>();

  constructor(private readonly source: KeySource) {
    this.byDigest = source.readIfChanged() ?? new Map();
  }

  get size(): number {
    return this.byDigest.size;
  }

  start(onError: (err: unknown) => void): void {
    this.source.start((keys) => this.replace(keys), onError);
  }

  stop(): void {
    this.source.stop();
  }

  refreshIfChanged(): void {
    const keys = this.source.readIfChanged();
    if (keys) this.replace(keys);
  }

  /**
   * The record of an active key, or undefined. The caller has already checked
   * the key's shape and checksum. A miss asks the source whether keys changed
   * since the last poll, so a key created in SQLite works the moment it exists.
   */
  lookup(key: string): ApiKeyRecord | undefined {
    const memoised = this.memo.get(key);
    if (memoised) return memoised;
    const digest = keyDigest(key);
    let record = this.byDigest.get(digest);
    if (!record) {
      try {
        this.refreshIfChanged();
      } catch {
        // The periodic refresh reports source errors; here the key simply stays unknown.
      }
      record = this.byDigest.get(digest);
    }
    if (record && this.memo.size < MEMO_LIMIT) this.memo.set(key, record);
    return record;
  }

  private replace(keys: KeysByDigest): void {
    this.byDigest = keys;
    this.memo = new Map();
  }
}
