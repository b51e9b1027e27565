import type { ApiKeyRecord } from './key-store.js';

/** Active keys by the SHA-256 digest of their secret. */
export type KeysByDigest = ReadonlyMap<string, ApiKeyRecord>;

/**
 * Where a gateway's keys come from: the local SQLite file (sqlite-key-source.ts)
 * or, in fleet mode, PostgreSQL (fleet/key-sync.ts). The registry only holds
 * what its source hands it.
 */
export interface KeySource {
  /**
   * The active keys if the source can tell, synchronously and cheaply, that
   * they changed since it last handed them over; otherwise null. The first
   * call returns the keys the source starts with.
   */
  readIfChanged(): KeysByDigest | null;
  /** Starts watching for changes; `update` takes each new set of keys, `onError` each failure to read them. */
  start(update: (keys: KeysByDigest) => void, onError: (err: unknown) => void): void;
  stop(): void;
}
