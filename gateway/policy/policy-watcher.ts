import { watchFile, unwatchFile, type Stats } from 'node:fs';
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { ConfigError } from '../config/yaml-source.js';
import { compilePolicySource } from './compile-policy.js';
import type { CompiledPolicy } from './policy-types.js';

export interface PolicyWatcherEvents {
  onReload(policy: CompiledPolicy): void;
  onRejected(error: ConfigError): void;
}

/** Stat polling survives editors that save by renaming a new file over the old one, which fs.watch loses. */
const POLL_MS = 200;

/**
 * Holds the policy in force and swaps it when the file changes. An invalid edit
 * is rejected whole: the last good policy stays in force.
 */
export class PolicyWatcher {
  private current: CompiledPolicy;
  private lastRejected: { error: ConfigError; at: Date } | null = null;
  private loadedAt = new Date();
  private readonly listener = (curr: Stats, prev: Stats) => {
    if (curr.mtimeMs !== prev.mtimeMs || curr.size !== prev.size || curr.ino !== prev.ino) this.reload();
  };

  constructor(
    private readonly file: string,
    private readonly displayName: string,
    initial: CompiledPolicy,
    private readonly events: PolicyWatcherEvents,
  ) {
    this.current = initial;
  }

  get policy(): CompiledPolicy {
    return this.current;
  }

  status(): { hash: string; loadedAt: Date; lastRejected: { message: string; at: Date } | null } {
    return {
      hash: this.current.hash,
      loadedAt: this.loadedAt,
      lastRejected: this.lastRejected && { message: this.lastRejected.error.message, at: this.lastRejected.at },
    };
  }

  start(): void {
    watchFile(this.file, { interval: POLL_MS, persistent: false }, this.listener);
  }

  stop(): void {
    unwatchFile(this.file, this.listener);
  }

  /** Re-reads the file; a no-op when its bytes are unchanged. */
  reload(): void {
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      this.reject(new ConfigError(this.displayName, 1, 1, '', `cannot read policy file (${code}); keeping the last good policy`));
      return;
    }
    if (createHash('sha256').update(text).digest('hex') === this.current.hash) return;
    try {
      this.current = compilePolicySource(this.displayName, text);
      this.loadedAt = new Date();
      this.events.onReload(this.current);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      this.reject(err);
    }
  }

  private reject(error: ConfigError): void {
    this.lastRejected = { error, at: new Date() };
    this.events.onRejected(error);
  }
}
