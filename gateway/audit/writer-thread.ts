import type { Worker } from 'node:worker_threads';
import type { SyncMode } from '../config/gateway-config.js';
import { OUTCOME_BATCH, OUTCOME_DELAY_MS, type AuditWriterHooks, type RunningAuditWriter, type BatchFileRow, type DecisionRow, type OutcomeRow } from './audit-writer.js';
import type { ControlEventRow, PolicyVersionRow } from './control-log.js';
import { startModuleWorker } from './module-worker.js';
import { fromWire, type ControlEntry, type FromWriter, type ToWriter } from './writer-protocol.js';

interface Settle {
  readonly resolve: () => void;
  readonly reject: (err: unknown) => void;
}

/** Why requests were refused when the writer thread itself failed (a bug or out of memory), not a commit. */
export class AuditWriterThreadError extends Error {
  readonly code = 'audit_writer_thread_died';
  constructor(exitCode: number) {
    super(`the audit writer thread exited (${exitCode})`);
    this.name = 'AuditWriterThreadError';
  }
}

/** After the thread died, how long before another is started: a thread that dies at once must not spin. */
const RESTART_DELAY_MS = 100;

/**
 * The audit writer on a thread of its own (writer-worker.ts), so SQLite's
 * work leaves the event loop and, given a second core, runs beside it. What a
 * turn of the event loop records goes to the thread as one message; a
 * request's decision promise settles once the thread says the transaction
 * holding it committed, so a request is still forwarded only after its row is
 * in the WAL. One message a turn each way: the cost of crossing threads is
 * paid per group commit, not per request. Outcomes are batched here as the
 * AuditWriter batches them, and nothing waits for them.
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
  private seq = 0;
  /** Decisions sent and not yet acknowledged, by message. */
  private readonly unacknowledged = new Map<number, { settles: Settle[]; rows: number }>();
  private unacknowledgedRows = 0;
  private threadQueued = 0;
  private lastFailure: unknown = null;
  private closing: Promise<void> | null = null;
  private checkpointInline = false;
  private readonly post = () => this.send();

  constructor(private readonly file: string, private readonly synchronous: SyncMode, private readonly hooks: AuditWriterHooks) {
    this.start();
  }

  record(row: DecisionRow): Promise<void> {
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
    return this.decisions.length + this.outcomes.length + this.batchFiles.length + this.control.length + this.unacknowledgedRows + this.threadQueued;
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

  /** Sends what is queued, has the thread commit it, and stops the thread. Idempotent: the first call's promise is every call's. */
  close(busyTimeoutMs: number): Promise<void> {
    this.closing ??= this.stop(busyTimeoutMs);
    return this.closing;
  }

  private async stop(busyTimeoutMs: number): Promise<void> {
    if (this.outcomeTimer) clearTimeout(this.outcomeTimer);
    this.outcomeTimer = null;
    const worker = this.worker;
    if (!worker) return;
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
  }

  private start(): void {
    const worker = startModuleWorker('writer-worker', { file: this.file, synchronous: this.synchronous });
    worker.on('message', (m: FromWriter) => {
      if (m.t === 'done') this.receive(m);
    });
    worker.on('error', () => {
      // Reported with the exit that follows, where the requests it held are refused.
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
    const err = new AuditWriterThreadError(exitCode);
    this.lastFailure = err;
    const refused = [...this.unacknowledged.values()];
    this.unacknowledged.clear();
    this.unacknowledgedRows = 0;
    this.threadQueued = 0;
    // Outcomes and control events the thread held are lost with it; the decisions' requests are refused, and can be retried.
    this.hooks.onFailure(err, 0);
    for (const { settles } of refused) for (const s of settles) s.reject(err);
    if (this.closing) return;
    setTimeout(() => {
      if (this.closing) return;
      this.start();
      this.send();
    }, RESTART_DELAY_MS).unref();
  }

  private receive(m: Extract<FromWriter, { t: 'done' }>): void {
    this.threadQueued = m.queued;
    for (const c of m.commits) {
      if (c.ok) {
        this.lastFailure = null;
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
    // While the thread restarts, rows wait here; requests wait with them, as they do for a busy lock.
    const worker = this.worker;
    if (!worker) return;
    if (this.decisions.length === 0 && this.outcomes.length === 0 && this.batchFiles.length === 0 && this.control.length === 0) return;
    const seq = this.decisions.length > 0 ? ++this.seq : 0;
    if (seq !== 0) {
      // While a decision waits for its commit the thread keeps the process alive, as a pending write would.
      if (this.unacknowledged.size === 0) worker.ref();
      this.unacknowledged.set(seq, { settles: this.settles, rows: this.decisions.length });
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
