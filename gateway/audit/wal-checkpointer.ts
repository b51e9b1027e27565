import type { Worker } from 'node:worker_threads';
import { startModuleWorker } from './module-worker.js';

/**
 * The gateway alone writes the WAL at up to ~70 MB/s on the bench machine, a
 * prune as much again: checked once a second, the WAL ran past its limit
 * between two ticks, and the TRUNCATE that followed held the write lock for
 * 40-50 ms. A tick with nothing to copy costs microseconds.
 */
const CHECKPOINT_INTERVAL_MS = 100;
const STOP_TIMEOUT_MS = 2000;

/**
 * Long enough for readers of old snapshots to finish, twice over (those that
 * began before the checkpoint copied the last frame pin the WAL too), for
 * queries of up to about half a second. Below the audit writer's asynchronous
 * BUSY_WAIT_MS (2 s), so commits that meet it wait, without blocking the event
 * loop, instead of failing.
 */
const ESCALATED_WAIT_MS = 1000;
const ESCALATION_BACKOFF_MS = 5000;
const MAX_ESCALATION_BACKOFF_MS = 60_000;

export interface CheckpointEvents {
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

  constructor(file: string, limitBytes: number, events: CheckpointEvents) {
    this.worker = startModuleWorker('checkpoint-worker', {
      file, intervalMs: CHECKPOINT_INTERVAL_MS, limitBytes, escalatedWaitMs: ESCALATED_WAIT_MS,
      backoffMs: ESCALATION_BACKOFF_MS, maxBackoffMs: MAX_ESCALATION_BACKOFF_MS,
    });
    this.worker.on('message', (message: { code: string } | { pinnedBytes: number }) => {
      if ('pinnedBytes' in message) events.onPinned(message.pinnedBytes);
      else events.onError(message.code);
    });
    this.worker.on('error', (err) => events.onError((err as { code?: string }).code ?? err.name));
    this.exited = new Promise((resolve) => {
      this.worker.once('exit', () => {
        if (!this.stopping) events.onDied();
        resolve();
      });
    });
    // Background work must never keep the process alive or delay its exit.
    this.worker.unref();
  }

  /** A last checkpoint, then the thread ends; never waits more than STOP_TIMEOUT_MS. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.worker.postMessage('stop');
    const timeout = setTimeout(() => void this.worker.terminate(), STOP_TIMEOUT_MS);
    await this.exited;
    clearTimeout(timeout);
  }
}
