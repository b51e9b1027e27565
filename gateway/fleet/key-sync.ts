import type pg from 'pg';
import type { KeysByDigest, KeySource } from '../auth/key-source.js';
import { loadActiveCentralKeys, readKeyVersion } from './central-keys.js';
import { KEYS_CHANNEL } from './central-schema.js';
import type { FleetDatabase } from './fleet-database.js';

/**
 * The safety net under LISTEN: a NOTIFY is lost while the LISTEN connection is
 * down (or silently half-open), and the contract gives a gateway 1 second to
 * see a change. Polling one row twice a second keeps that promise by itself.
 */
const POLL_MS = 500;
const LISTEN_RETRY_MIN_MS = 250;
const LISTEN_RETRY_MAX_MS = 5000;

export interface KeySyncHooks {
  /** Called once when PostgreSQL stops answering; the gateway keeps serving the keys it holds. */
  onLost(err: unknown, keysHeld: number): void;
  /** Called once when it answers again, after the keys were reloaded. */
  onBack(): void;
}

/**
 * Keeps a gateway's key registry in step with the fleet's PostgreSQL: LISTEN
 * on a dedicated connection for changes within milliseconds, a poll of the
 * key version as the safety net. Nothing here throws into the gateway: while
 * PostgreSQL is away the registry keeps the last keys it was handed, so a
 * revocation made elsewhere reaches this gateway only once it is back.
 */
export class KeySync implements KeySource {
  private initial: KeysByDigest | null;
  private version: string;
  private keysHeld: number;
  private update: ((keys: KeysByDigest) => void) | null = null;
  private pollTimer: NodeJS.Timeout | null = null;
  private listenTimer: NodeJS.Timeout | null = null;
  private listener: pg.Client | null = null;
  private listenDelayMs = LISTEN_RETRY_MIN_MS;
  private reloading: Promise<void> | null = null;
  private reloadAgain = false;
  private reachable = true;
  private stopped = false;

  private constructor(
    private readonly db: FleetDatabase,
    first: { version: string; byDigest: KeysByDigest },
    private readonly hooks: KeySyncHooks,
  ) {
    this.initial = first.byDigest;
    this.version = first.version;
    this.keysHeld = first.byDigest.size;
  }

  /** Loads the keys once; fails when PostgreSQL cannot be reached, since a gateway with no keys could only refuse. */
  static async open(db: FleetDatabase, hooks: KeySyncHooks): Promise<KeySync> {
    return new KeySync(db, await loadActiveCentralKeys(db), hooks);
  }

  /** Only the keys loaded by `open`: later changes arrive asynchronously, through `update`. */
  readIfChanged(): KeysByDigest | null {
    const keys = this.initial;
    this.initial = null;
    return keys;
  }

  start(update: (keys: KeysByDigest) => void): void {
    this.update = update;
    this.schedulePoll();
    void this.listen();
  }

  stop(): void {
    this.stopped = true;
    if (this.pollTimer) clearTimeout(this.pollTimer);
    if (this.listenTimer) clearTimeout(this.listenTimer);
    const listener = this.listener;
    this.listener = null;
    listener?.end().catch(() => {});
  }

  private schedulePoll(): void {
    if (this.stopped) return;
    this.pollTimer = setTimeout(() => void this.poll(), POLL_MS);
    this.pollTimer.unref();
  }

  private async poll(): Promise<void> {
    try {
      // Also after an outage, when a NOTIFY may have been missed: the version says whether anything changed.
      if ((await readKeyVersion(this.db)) !== this.version) await this.reload();
      this.markReachable();
    } catch (err) {
      this.markUnreachable(err);
    } finally {
      this.schedulePoll();
    }
  }

  /** One reload at a time; notifications that arrive meanwhile fold into one more pass. */
  private reload(): Promise<void> {
    if (this.reloading) {
      this.reloadAgain = true;
      return this.reloading;
    }
    this.reloading = (async () => {
      try {
        do {
          this.reloadAgain = false;
          const { version, byDigest } = await loadActiveCentralKeys(this.db);
          if (this.stopped) return;
          this.version = version;
          this.keysHeld = byDigest.size;
          this.update?.(byDigest);
        } while (this.reloadAgain);
      } finally {
        this.reloading = null;
      }
    })();
    return this.reloading;
  }

  private reloadNow(): void {
    this.reload().then(
      () => this.markReachable(),
      (err: unknown) => this.markUnreachable(err),
    );
  }

  private async listen(): Promise<void> {
    if (this.stopped) return;
    const client = this.db.newClient();
    // Connection errors also end the client; the 'end' handler reconnects. An unhandled 'error' would crash the gateway.
    client.on('error', () => {});
    client.on('end', () => {
      if (this.listener !== client) return;
      this.listener = null;
      this.scheduleListen();
    });
    client.on('notification', () => this.reloadNow());
    try {
      await client.connect();
      await client.query(`LISTEN ${KEYS_CHANNEL}`);
    } catch {
      client.end().catch(() => {});
      this.scheduleListen();
      return;
    }
    if (this.stopped) {
      client.end().catch(() => {});
      return;
    }
    this.listener = client;
    this.listenDelayMs = LISTEN_RETRY_MIN_MS;
    // Changes made while nobody listened were announced to no one.
    this.reloadNow();
  }

  private scheduleListen(): void {
    if (this.stopped) return;
    this.listenTimer = setTimeout(() => void this.listen(), this.listenDelayMs);
    this.listenTimer.unref();
    this.listenDelayMs = Math.min(this.listenDelayMs * 2, LISTEN_RETRY_MAX_MS);
  }

  private markUnreachable(err: unknown): void {
    if (!this.reachable || this.stopped) return;
    this.reachable = false;
    this.hooks.onLost(err, this.keysHeld);
  }

  private markReachable(): void {
    if (this.reachable || this.stopped) return;
    this.reachable = true;
    this.hooks.onBack();
  }
}
