import type { Worker } from 'node:worker_threads';
import type { SyncMode } from '../config/gateway-config.js';
import type { StoreFile } from '../store/store-file.js';
import { OUTCOME_BATCH, OUTCOME_DELAY_MS, type AuditWriterHooks, type RunningAuditWriter, type BatchFileRow, type DecisionRow, type OutcomeRow } from './audit-writer.js';
import type { ControlEventRow, PolicyVersionRow } from './control-log.js';
import { startModuleWorker } from './module-worker.js';
import { fromWire, type ControlEntry, type FromWriter, type ToWriter, type WriterWorkerData } from './writer-protocol.js';

interface Settle {
  readonly resolve: () => void;
  readonly reject: (err: unknown) => void;
}

/** A message sent and not yet acknowledged: its requests, and its control events, sent again if the thread dies first. */
interface Unacknowledged {
  readonly settles: Settle[];
  readonly rows: number;
  readonly control: ControlEntry[];
}

/** Why requests were refused when the writer thread itself failed (a bug, out of memory) or was closed, not a commit. */
export class AuditWriterThreadError extends Error {
  constructor(readonly code: 'audit_writer_thread_died' | 'audit_writer_closed', message: string) {
    super(message);
    this.name = 'AuditWriterThreadError';
  }
}

/** After the thread died, how long before another is started, doubling up to the maximum while it keeps dying. */
const RESTART_DELAY_MS = 100;
const MAX_RESTART_DELAY_MS = 10_000;

/**
 * The audit writer on a thread of its own (writer-worker.ts), so SQLite's
 * work leaves the event loop and, given a second core, runs beside it. What a
 * turn of the event loop records goes to the thread as one message; a
 * request's decision promise settles once the thread says the transaction
 * holding it committed, so a request is still forwarded only after its row is
 * in the WAL. One message a turn each way: the cost of crossing threads is
 * paid per group commit, not per request. Outcomes are batched here as the
 * AuditWriter batches them, and nothing waits for them.
 *
 * Control events and policy texts stay here until the thread says they are
 * committed: if it dies first, they go to the next thread (the control log
 * skips an event id it already holds, policy texts are kept once). While no
 * thread runs, decisions are refused at once rather than left waiting.
 */
export class AuditWriterThread implements RunningAuditWriter {
  private worker: Worker | null = null;
  private decisions: DecisionRow[] = [];
  private settles: Settle[] = [];
  private outcomes: OutcomeRow[] = [];
  private batchFiles: BatchFileRow[] = [];
  private control: ControlEntry[] = [];
  private postScheduled = false;
  private outcomeTimer: NodeJS.Timeout | null = null;
  private restartTimer: NodeJS.Timeout | null = null;
  private restartDelayMs = RESTART_DELAY_MS;
  private seq = 0;
  private readonly unacknowledged = new Map<number, Unacknowledged>();
  private unacknowledgedRows = 0;
  private threadQueued = 0;
  private lastFailure: unknown = null;
  /** What the dying thread threw, for the failure it is reported as. */
  private threadError: { name: string; code: string | null } | null = null;
  private closing: Promise<void> | null = null;
  private checkpointInline = false;
  private readonly post = () => this.send();

  constructor(private readonly file: StoreFile, private readonly synchronous: SyncMode, private readonly hooks: AuditWriterHooks) {
    this.start();
  }

  record(row: DecisionRow): Promise<void> {
    if (this.closing) return Promise.reject(new AuditWriterThreadError('audit_writer_closed', 'the audit writer is closed'));
    return new Promise((resolve, reject) => {
      this.decisions.push(row);
      this.settles.push({ resolve, reject });
      this.schedulePost();
    });
  }

  recordControl(event: ControlEventRow, policy?: PolicyVersionRow): void {
    this.control.push({ event, policy });
    this.schedulePost();
  }

  recordOutcome(row: OutcomeRow): void {
    this.outcomes.push(row);
    this.scheduleOutcomes();
  }

  recordBatchFile(row: BatchFileRow): void {
    this.batchFiles.push(row);
    this.scheduleOutcomes();
  }

  get queued(): number {
    let control = this.control.length;
    for (const sent of this.unacknowledged.values()) control += sent.control.length;
    return this.decisions.length + this.outcomes.length + this.batchFiles.length + control + this.unacknowledgedRows + this.threadQueued;
  }

  get decisionsPending(): boolean {
    return this.decisions.length > 0 || this.unacknowledgedRows > 0;
  }

  get failing(): boolean {
    return this.lastFailure !== null;
  }

  get failure(): unknown {
    return this.lastFailure;
  }

  checkpointAfterCommits(): void {
    this.checkpointInline = true;
    this.worker?.postMessage({ t: 'checkpoint-inline' } satisfies ToWriter);
  }

  /**
   * Sends what is queued, has the thread commit it, and stops the thread;
   * decisions that could not be committed are refused, none is left waiting.
   * Idempotent: the first call's promise is every call's.
   */
  close(busyTimeoutMs: number): Promise<void> {
    this.closing ??= this.stop(busyTimeoutMs);
    return this.closing;
  }

  private async stop(busyTimeoutMs: number): Promise<void> {
    if (this.outcomeTimer) clearTimeout(this.outcomeTimer);
    this.outcomeTimer = null;
    // A thread restarting after a death still gets the last rows, gateway.stopped among them.
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = null;
    if (!this.worker) this.start();
    const worker = this.worker!;
    this.send();
    const flushed = new Promise<void>((resolve) => {
      worker.on('message', (m: FromWriter) => {
        if (m.t === 'flushed') resolve();
      });
      worker.once('exit', () => resolve());
    });
    worker.postMessage({ t: 'flush', busyTimeoutMs } satisfies ToWriter);
    // Held alive until the thread answered: at shutdown nothing else may be left to keep the process running.
    worker.ref();
    await flushed;
    this.worker = null;
    await worker.terminate();
    this.refuseWaiting(new AuditWriterThreadError('audit_writer_closed', 'the audit writer closed before committing the row'));
  }

  private start(): void {
    const data: WriterWorkerData = { file: this.file.path, identity: this.file.identity, synchronous: this.synchronous };
    const worker = startModuleWorker('writer-worker', { ...data });
    worker.on('message', (m: FromWriter) => {
      if (m.t === 'done') this.receive(m);
    });
    worker.on('error', (err) => {
      // Reported with the exit that follows, where the requests it held are refused.
      this.threadError = { name: err.name, code: (err as { code?: string }).code ?? null };
    });
    worker.once('exit', (code) => {
      if (this.worker !== worker) return;
      this.worker = null;
      this.died(code);
    });
    // Like the checkpointer, an idle writer never keeps the process alive; close() flushes what waits.
    worker.unref();
    this.worker = worker;
    if (this.checkpointInline) worker.postMessage({ t: 'checkpoint-inline' } satisfies ToWriter);
  }

  private died(exitCode: number): void {
    const cause = this.threadError ? ` after ${this.threadError.name}${this.threadError.code ? ` (${this.threadError.code})` : ''}` : '';
    this.threadError = null;
    const err = new AuditWriterThreadError('audit_writer_thread_died', `the audit writer thread exited (${exitCode})${cause}`);
    this.lastFailure = err;
    // Its control events go to the next thread, ahead of anything recorded since; outcomes it held are lost with it.
    const resend = [...this.unacknowledged.values()].flatMap((sent) => sent.control);
    this.control = resend.concat(this.control);
    this.refuseWaiting(err);
    this.threadQueued = 0;
    this.hooks.onFailure(err, 0);
    if (this.closing) return;
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      this.start();
      this.send();
    }, this.restartDelayMs);
    this.restartDelayMs = Math.min(this.restartDelayMs * 2, MAX_RESTART_DELAY_MS);
  }

  /** Refuses every decision sent and not acknowledged, and every one queued: their requests must not wait for a thread that is gone. */
  private refuseWaiting(err: Error): void {
    const settles = [...this.unacknowledged.values()].flatMap((sent) => sent.settles).concat(this.settles);
    this.unacknowledged.clear();
    this.unacknowledgedRows = 0;
    this.decisions = [];
    this.settles = [];
    for (const s of settles) s.reject(err);
  }

  private receive(m: Extract<FromWriter, { t: 'done' }>): void {
    this.threadQueued = m.queued;
    for (const c of m.commits) {
      if (c.ok) {
        this.lastFailure = null;
        this.restartDelayMs = RESTART_DELAY_MS;
        this.hooks.onCommit(c.ms, c.waitedMs);
      } else {
        this.lastFailure = fromWire(c.error);
        this.hooks.onFailure(this.lastFailure, c.lostOutcomes);
      }
    }
    for (const seq of m.acks) this.settle(seq, null);
    for (const r of m.refusals) this.settle(r.seq, fromWire(r.error));
  }

  private settle(seq: number, err: Error | null): void {
    const sent = this.unacknowledged.get(seq);
    if (!sent) return;
    this.unacknowledged.delete(seq);
    this.unacknowledgedRows -= sent.rows;
    if (this.unacknowledged.size === 0 && !this.closing) this.worker?.unref();
    if (err) for (const s of sent.settles) s.reject(err);
    else for (const s of sent.settles) s.resolve();
  }

  private schedulePost(): void {
    if (this.postScheduled) return;
    this.postScheduled = true;
    setImmediate(this.post);
  }

  private scheduleOutcomes(): void {
    if (this.outcomes.length + this.batchFiles.length >= OUTCOME_BATCH) {
      this.schedulePost();
    } else if (!this.outcomeTimer) {
      this.outcomeTimer = setTimeout(this.post, OUTCOME_DELAY_MS);
      // Queued outcomes are flushed at shutdown; they must not keep an idle process alive.
      this.outcomeTimer.unref();
    }
  }

  private send(): void {
    this.postScheduled = false;
    if (this.outcomeTimer) clearTimeout(this.outcomeTimer);
    this.outcomeTimer = null;
    const worker = this.worker;
    if (!worker) {
      // While the thread restarts, decisions fail fast as a failed commit would; the rest waits for the next thread.
      this.refuseWaiting(this.lastFailure instanceof Error ? this.lastFailure : new AuditWriterThreadError('audit_writer_thread_died', 'the audit writer thread is not running'));
      return;
    }
    if (this.decisions.length === 0 && this.outcomes.length === 0 && this.batchFiles.length === 0 && this.control.length === 0) return;
    // Decisions and control events are acknowledged once committed; outcomes are not waited for.
    const seq = this.decisions.length > 0 || this.control.length > 0 ? ++this.seq : 0;
    if (seq !== 0) {
      // While a message waits for its commit the thread keeps the process alive, as a pending write would.
      if (this.unacknowledged.size === 0) worker.ref();
      this.unacknowledged.set(seq, { settles: this.settles, rows: this.decisions.length, control: this.control });
      this.unacknowledgedRows += this.decisions.length;
    }
    worker.postMessage({ t: 'rows', seq, decisions: this.decisions, outcomes: this.outcomes, batchFiles: this.batchFiles, control: this.control } satisfies ToWriter);
    this.decisions = [];
    this.settles = [];
    this.outcomes = [];
    this.batchFiles = [];
    this.control = [];
  }
}
