import type { Db } from '../audit/database.js';
import { keyDigest } from './key-format.js';
import { loadActiveKeys, type ApiKeyRecord } from './key-store.js';

/** Keys are created and revoked by the CLI in another process; the contract gives a running gateway 1 second to notice. */
const REFRESH_MS = 250;
/** Bounds the memo of presented keys so a flood of distinct valid keys cannot grow memory. */
const MEMO_LIMIT = 10_000;

/**
 * The active keys, held in memory and reloaded whenever another connection
 * commits to the database (`PRAGMA data_version`), so authentication never
 * waits on SQLite and a revocation is in force within REFRESH_MS.
 */
export class KeyRegistry {
  private byDigest: Map<string, ApiKeyRecord>;
  /** Presented key → record, so a busy client costs one SHA-256 per refresh, not per request. */
  private memo = new Map<string, ApiKeyRecord>();
  private dataVersion: number;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly db: Db) {
    this.dataVersion = this.readDataVersion();
    this.byDigest = loadActiveKeys(db);
  }

  get size(): number {
    return this.byDigest.size;
  }

  start(onError: (err: unknown) => void): void {
    this.timer = setInterval(() => {
      try {
        this.refreshIfChanged();
      } catch (err) {
        onError(err);
      }
    }, REFRESH_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  refreshIfChanged(): void {
    const version = this.readDataVersion();
    if (version === this.dataVersion) return;
    this.dataVersion = version;
    this.byDigest = loadActiveKeys(this.db);
    this.memo = new Map();
  }

  /**
   * The record of an active key, or undefined. The caller has already checked
   * the key's shape and checksum. A miss re-reads the keys if the database
   * changed since the last poll, so a key works the moment it is created.
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
        // The periodic refresh reports database errors; here the key simply stays unknown.
      }
      record = this.byDigest.get(digest);
    }
    if (record && this.memo.size < MEMO_LIMIT) this.memo.set(key, record);
    return record;
  }

  private readDataVersion(): number {
    return this.db.pragma('data_version', { simple: true }) as number;
  }
}
