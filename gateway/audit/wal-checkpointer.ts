import { closeSync, openSync } from 'node:fs';
import type { Worker } from 'node:worker_threads';
import { startModuleWorker } from './module-worker.js';

/**
 * Often enough that heavy writes cannot take the WAL past its limit between
 * two ticks; an idle tick is cheap (docs/design/audit-writer.md, "Checkpoint interval").
 */
const CHECKPOINT_INTERVAL_MS = 100;
/**
 * Each reset holds the write lock for its last pages and their fsyncs: large
 * enough that resets come only a few a second, small enough to stay well under
 * the shipped 64 MiB limit (docs/design/audit-writer.md, "Reset size").
 */
const MAX_RESET_BYTES = 16 * 1024 * 1024;
const STOP_TIMEOUT_MS = 2000;
const GONE = -1;
/**
 * Writers that can wait do not add to a WAL this full (of its limit): it
 * leaves room for what the gateway alone writes between two ticks
 * (docs/design/audit-writer.md, "Near the limit").
 */
const NEAR_LIMIT = 0.75;

/**
 * A checkpoint that readers kept from resetting an over-limit WAL is retried
 * with a busy wait of `escalatedWaitMs`, backing off from `backoffMs` to
 * `maxBackoffMs` while it keeps failing. The wait is long enough for readers
 * of old snapshots to finish, twice over (those that began before the
 * checkpoint copied the last frame pin the WAL too), for queries of up to
 * about half a second; and below the audit writer's asynchronous BUSY_WAIT_MS
 * (2 s), so commits that meet it wait, without blocking the event loop,
 * instead of failing.
 */
const ESCALATION = { escalatedWaitMs: 1000, backoffMs: 5000, maxBackoffMs: 60_000 } as const;

export interface CheckpointEvents {
  /** A checkpoint failed with this SQLite error code; the next tick tries again. */
  onError(code: string): void;
  /** The WAL is over the limit and readers kept even an escalated checkpoint from resetting it. */
  onPinned(walBytes: number): void;
  /** The thread is gone before stop(): the writer must checkpoint for itself again. */
  onDied(): void;
}

/**
 * Owns the background thread that checkpoints the audit WAL on its own
 * connection, so the fsyncs a checkpoint needs never block the event loop that
 * serves requests. The writer connection has auto-checkpoints off while this
 * thread lives.
 */
export class WalCheckpointer {
  private readonly worker: Worker;
  private readonly exited: Promise<void>;
  private stopping = false;
  /** KiB of WAL not yet reset, as the thread last saw it (the file's size stays at its high-water mark after a reset); GONE once the thread is. */
  private readonly inUse = new Int32Array(new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT));
  /** The WAL is reset once this much of it was copied back. */
  private readonly resetBytes: number;
  private readonly nearLimitBytes: number;
  /**
   * The thread fsyncs the database file through it (wal-reset.ts). Closed only
   * by release(), once this process has no connection to the file left:
   * closing any descriptor of a file drops every POSIX lock the process holds
   * on it, SQLite's included (a connection to a WAL database keeps a shared
   * lock between transactions), and a `sqlite3` closing meanwhile could then
   * delete the WAL the gateway is using.
   */
  private readonly dbFd: number;
  private released = false;

  constructor(file: string, limitBytes: number, events: CheckpointEvents) {
    this.resetBytes = Math.min(MAX_RESET_BYTES, Math.floor(limitBytes / 2));
    this.nearLimitBytes = limitBytes * NEAR_LIMIT;
    this.dbFd = openSync(file, 'r');
    try {
      this.worker = startModuleWorker('checkpoint-worker', {
        file, dbFd: this.dbFd, intervalMs: CHECKPOINT_INTERVAL_MS, limitBytes, resetBytes: this.resetBytes, ...ESCALATION,
        inUse: this.inUse.buffer,
      });
    } catch (err) {
      closeSync(this.dbFd);
      throw err;
    }
    this.worker.on('message', (message: { code: string } | { pinnedBytes: number }) => {
      if ('pinnedBytes' in message) events.onPinned(message.pinnedBytes);
      else events.onError(message.code);
    });
    this.worker.on('error', (err) => events.onError((err as { code?: string }).code ?? err.name));
    this.exited = new Promise((resolve) => {
      this.worker.once('exit', () => {
        Atomics.store(this.inUse, 0, GONE);
        if (!this.stopping) events.onDied();
        resolve();
      });
    });
    // Background work must never keep the process alive or delay its exit.
    this.worker.unref();
  }

  /**
   * Whether writers that can wait should: a reset is under way (what is
   * written meanwhile, its RESTART copies while holding the write lock), the
   * WAL held a reset's worth or more at the last tick, or the thread is gone
   * and the gateway's writer checkpoints inline, on the event loop, after its
   * commits.
   */
  get behind(): boolean {
    const kib = Atomics.load(this.inUse, 0);
    return kib === GONE || kib * 1024 >= this.resetBytes;
  }

  /**
   * Whether writers that can wait should, for as long as it lasts: the WAL
   * held three quarters of its limit at the last tick (readers kept it from
   * being reset, or writes outran the resets). Unknown, so false, once the
   * thread is gone.
   */
  get nearLimit(): boolean {
    const kib = Atomics.load(this.inUse, 0);
    return kib !== GONE && kib * 1024 >= this.nearLimitBytes;
  }

  /** A last checkpoint, then the thread ends; never waits more than STOP_TIMEOUT_MS. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.worker.postMessage('stop');
    const timeout = setTimeout(() => void this.worker.terminate(), STOP_TIMEOUT_MS);
    await this.exited;
    clearTimeout(timeout);
  }

  /**
   * After stop(), once every connection of this process to the file is
   * closed: see dbFd. Once only: a second close could hit a descriptor that
   * reused the number, SQLite's among them.
   */
  release(): void {
    if (this.released) return;
    this.released = true;
    closeSync(this.dbFd);
  }
}
