import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { CheckpointWorkerData } from './checkpoint-worker.js';

/** Often enough that the WAL stays a few megabytes under load; rare enough to cost nothing at idle. */
const CHECKPOINT_INTERVAL_MS = 1000;
const STOP_TIMEOUT_MS = 2000;

export interface CheckpointEvents {
  onCheckpoint?(walPages: number, checkpointedPages: number): void;
  onError(code: string): void;
}

/**
 * Owns the background thread that checkpoints the audit WAL. The writer
 * connection has auto-checkpoints off, so without this the WAL would grow.
 */
export class WalCheckpointer {
  private readonly worker: Worker;
  private readonly exited: Promise<void>;

  constructor(file: string, events: CheckpointEvents) {
    // Under tsx in development the sources are .ts; in the build they are .js.
    const ext = path.extname(fileURLToPath(import.meta.url));
    const data: CheckpointWorkerData = { file, intervalMs: CHECKPOINT_INTERVAL_MS };
    this.worker = new Worker(new URL(`./checkpoint-worker${ext}`, import.meta.url), { workerData: data });
    this.worker.on('message', (message: { type: string; log?: number; checkpointed?: number; code?: string }) => {
      if (message.type === 'checkpoint') events.onCheckpoint?.(message.log ?? 0, message.checkpointed ?? 0);
      else events.onError(message.code ?? 'unknown');
    });
    this.worker.on('error', (err) => events.onError((err as { code?: string }).code ?? err.name));
    this.exited = new Promise((resolve) => this.worker.once('exit', () => resolve()));
    // Background work must never keep the process alive or delay its exit.
    this.worker.unref();
  }

  /** A last checkpoint, then the thread ends; never waits more than STOP_TIMEOUT_MS. */
  async stop(): Promise<void> {
    this.worker.postMessage('stop');
    const timeout = setTimeout(() => void this.worker.terminate(), STOP_TIMEOUT_MS);
    await this.exited;
    clearTimeout(timeout);
  }
}
