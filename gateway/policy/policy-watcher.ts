import { createHash } from 'node:crypto';
import { readFileSync, unwatchFile, watchFile, type Stats } from 'node:fs';
import { ConfigError } from '../config/yaml-source.js';
import { compilePolicySource } from './compile-policy.js';
import type { CompiledPolicy } from './policy-types.js';

export interface PolicyWatcherEvents {
  onReload(policy: CompiledPolicy): void;
  onRejected(error: ConfigError): void;
}

/** The last edit that was refused, for the admin dashboard: where and why, never the file's content. */
export interface RejectedEdit {
  readonly at: Date;
  readonly file: string;
  readonly line: number;
  readonly col: number;
  readonly message: string;
}

/** Stat polling survives editors that save by renaming a new file over the old one, which fs.watch loses. */
const POLL_MS = 200;

/**
 * Holds the policy in force and swaps it when the file changes. An invalid edit
 * is rejected whole: the last good policy stays in force.
 */
export class PolicyWatcher {
  private current: CompiledPolicy;
  private loaded = new Date();
  private rejected: RejectedEdit | null = null;
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

  /** When the policy in force was loaded. */
  get loadedAt(): Date {
    return this.loaded;
  }

  get lastRejected(): RejectedEdit | null {
    return this.rejected;
  }

  /** Starts watching, and picks up an edit saved between the initial load and now. */
  start(): void {
    watchFile(this.file, { interval: POLL_MS, persistent: false }, this.listener);
    this.reload();
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
    let next: CompiledPolicy;
    try {
      next = compilePolicySource(this.displayName, text);
    } catch (err) {
      // Whatever went wrong, an edit must never take the running gateway down: the last good policy stays.
      this.reject(err instanceof ConfigError ? err : new ConfigError(this.displayName, 1, 1, '', 'the policy could not be compiled'));
      return;
    }
    this.current = next;
    this.loaded = new Date();
    this.events.onReload(next);
  }

  private reject(error: ConfigError): void {
    this.rejected = { at: new Date(), file: error.file, line: error.line, col: error.col, message: error.message };
    this.events.onRejected(error);
  }
}
