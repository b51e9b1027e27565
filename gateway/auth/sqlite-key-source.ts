import type { Db } from '../store/connection.js';
import type { KeysByDigest, KeySource } from './key-source.js';
import { loadActiveKeys } from './key-store.js';

/** Keys are created and revoked by the CLI in another process; the contract gives a running gateway 1 second to notice. */
const REFRESH_MS = 250;

/**
 * The keys of the local SQLite file, re-read whenever another connection has
 * committed to it (`PRAGMA data_version` changed): a poll costs no query of
 * the keys, and a lookup miss can check synchronously.
 */
export class SqliteKeySource implements KeySource {
  private dataVersion: number | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly db: Db) {}

  readIfChanged(): KeysByDigest | null {
    const version = this.db.pragma('data_version', { simple: true }) as number;
    if (version === this.dataVersion) return null;
    const keys = loadActiveKeys(this.db);
    this.dataVersion = version;
    return keys;
  }

  start(update: (keys: KeysByDigest) => void, onError: (err: unknown) => void): void {
    this.timer = setInterval(() => {
      try {
        const keys = this.readIfChanged();
        if (keys) update(keys);
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
}
