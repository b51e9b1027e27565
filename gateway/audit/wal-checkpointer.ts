import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/** Often enough that the WAL stays a few megabytes under load; rare enough to cost nothing at idle. */
const CHECKPOINT_INTERVAL_MS = 1000;
const STOP_TIMEOUT_MS = 2000;

/**
 * The worker's whole program. It is evaluated from a string, not loaded from a
 * file, so that it runs the same from the TypeScript sources (tsx, tests) and
 * from the build: a worker does not inherit the parent's TypeScript loader.
 *
 * PASSIVE never waits for readers or the writer, but it cannot copy frames a
 * reader's snapshot still needs, and the WAL restarts from its beginning only
 * once everything was copied: with readers always overlapping (an admin's
 * long queries, a dashboard) it would grow for ever. Past `limitBytes` the
 * worker escalates to TRUNCATE, which holds the write lock while it waits for
 * the readers of old snapshots to finish (new readers are not held up). It
 * waits at most ESCALATED_WAIT_MS, so the gateway's commits are delayed,
 * never refused. If the readers outlast it, the WAL is reported stuck and the
 * next waiting escalation comes ESCALATION_BACKOFF_MS later, doubling up to
 * MAX_ESCALATION_BACKOFF_MS (a reader that holds its snapshot for minutes must
 * not turn the escalations into a write lock that is never free); the ticks
 * in between try a TRUNCATE that waits for nobody.
 */
const WORKER_SOURCE = `
const { statSync } = require('node:fs');
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.file, { fileMustExist: true });
db.pragma('busy_timeout = 0');
const walBytes = () => statSync(workerData.file + '-wal', { throwIfNoEntry: false })?.size ?? 0;
let backoffMs = workerData.backoffMs;
let escalateAfter = 0;
const checkpoint = () => {
  try {
    const [{ log, checkpointed }] = db.pragma('wal_checkpoint(PASSIVE)');
    if (walBytes() <= workerData.limitBytes) {
      backoffMs = workerData.backoffMs;
      return;
    }
    // Everything copied, or between waiting escalations: a TRUNCATE that waits for nobody and has
    // (almost) nothing left to copy, so it holds the write lock for a moment only; it shrinks the
    // file the moment no reader is left on the WAL.
    if (checkpointed >= log || Date.now() < escalateAfter) {
      db.pragma('wal_checkpoint(TRUNCATE)');
      if (checkpointed >= log) backoffMs = workerData.backoffMs;
      return;
    }
    db.pragma('busy_timeout = ' + workerData.escalatedWaitMs);
    try {
      db.pragma('wal_checkpoint(TRUNCATE)');
    } finally {
      db.pragma('busy_timeout = 0');
    }
    const left = walBytes();
    if (left > workerData.limitBytes) {
      parentPort.postMessage({ pinnedBytes: left });
      escalateAfter = Date.now() + backoffMs;
      backoffMs = Math.min(backoffMs * 2, workerData.maxBackoffMs);
    }
  } catch (err) {
    parentPort.postMessage({ code: err && err.code ? String(err.code) : 'unknown' });
  }
};
// A chain of timeouts, not an interval: a slow checkpoint is always followed by a full interval with the lock free.
let timer;
const tick = () => {
  checkpoint();
  timer = setTimeout(tick, workerData.intervalMs);
};
timer = setTimeout(tick, workerData.intervalMs);
parentPort.on('message', () => {
  clearTimeout(timer);
  checkpoint();
  db.close();
  parentPort.close();
});
`;

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
    const driver = createRequire(import.meta.url).resolve('better-sqlite3');
    this.worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: {
        file, driver, intervalMs: CHECKPOINT_INTERVAL_MS, limitBytes, escalatedWaitMs: ESCALATED_WAIT_MS,
        backoffMs: ESCALATION_BACKOFF_MS, maxBackoffMs: MAX_ESCALATION_BACKOFF_MS,
      },
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
