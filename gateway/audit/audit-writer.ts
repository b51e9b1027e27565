import type Database from 'better-sqlite3';
import { rowHash } from '../store/chain.js';
import { ChainTails } from './chain-tail.js';
import { ControlLog, type ControlEventRow, type PolicyVersionRow } from './control-log.js';
import type { Db } from '../store/connection.js';
import type { StoreFile } from '../store/store-file.js';

/** One policy decision: the contract's columns of `usagelog`, then its provenance. */
export interface DecisionRow {
  readonly id: string;
  readonly customer_id: string;
  readonly api_key_id: string;
  readonly model: string | null;
  readonly operation: string;
  /** JSON of the governance metadata and derived facts; never content. */
  readonly meta: string;
  readonly risk_score: number;
  readonly allowed: 0 | 1;
  readonly reason: string;
  readonly created_at: string;
  /** The `policy_version` that decided it. */
  readonly policy_hash: string;
  /** JSON array of the refusal's causes (policy-types.ts `Cause`); `[]` when nothing refused. */
  readonly causes: string;
}

/** What happened after a forwarded request, appended once it is over. */
export interface OutcomeRow {
  readonly log_id: string;
  readonly status: number | null;
  readonly duration_ms: number;
  readonly upstream_ms: number | null;
  readonly prompt_tokens: number | null;
  readonly completion_tokens: number | null;
  readonly total_tokens: number | null;
  readonly error: string | null;
  readonly created_at: string;
}

/** A batch input file whose every line the policy allowed; a batch may only run such a file. */
export interface BatchFileRow {
  readonly file_id: string;
  readonly customer_id: string;
  readonly api_key_id: string;
  readonly log_id: string;
  readonly lines: number;
  readonly created_at: string;
}

export interface AuditWriterHooks {
  /** `ms`: the transaction itself; `waitedMs`: how long the batch waited for a write lock someone else held (0 if free). */
  onCommit(ms: number, waitedMs: number): void;
  onFailure(err: unknown, lostOutcomes: number): void;
}

/**
 * What the request path and the background jobs need of the audit writer,
 * whether it commits on this thread (AuditWriter) or on its own
 * (AuditWriterThread).
 */
export interface AuditLog {
  /** Resolves once the row is committed; rejects if the database refused it. */
  record(row: DecisionRow): Promise<void>;
  recordControl(event: ControlEventRow, policy?: PolicyVersionRow): void;
  recordOutcome(row: OutcomeRow): void;
  recordBatchFile(row: BatchFileRow): void;
  /** Rows not committed yet. */
  readonly queued: number;
  /** Whether requests are waiting for their decision rows. */
  readonly decisionsPending: boolean;
  /** Whether the last commit failed: the store is unhealthy until one succeeds again. */
  readonly failing: boolean;
  /** Why the last commit failed, while it is failing. */
  readonly failure: unknown;
}

/** The gateway's audit writer, on the event loop or on its own thread (writer-thread.ts). */
export interface RunningAuditWriter extends AuditLog {
  /** The checkpoint thread died: the writer's connection checkpoints after its commits from now on, slower but bounded. */
  checkpointAfterCommits(): void;
  /** Commits what is queued, waiting up to `busyTimeoutMs` for a lock another connection holds; the writer takes no more rows. */
  close(busyTimeoutMs: number): Promise<void>;
}

/** Control events and policy texts, committed with the next decisions: before any row that names the policy. */
interface Control {
  events: ControlEventRow[];
  policies: PolicyVersionRow[];
}

interface Pending {
  readonly rows: readonly DecisionRow[];
  readonly resolve: () => void;
  readonly reject: (err: unknown) => void;
}

/** Outcomes wait at most this long; nothing waits on them, so they are batched for cost, not latency. */
export const OUTCOME_DELAY_MS = 50;
/** Past this many queued outcomes they are committed at the next turn rather than after the delay. */
export const OUTCOME_BATCH = 512;
/**
 * How long rows wait for a write lock someone else holds (an escalated
 * checkpoint, `cleanup-logs`, an admin's `sqlite3`) before their requests are refused.
 * The wait is asynchronous, retried every BUSY_RETRY_MS, so the event loop
 * keeps serving; the connection's own busy_timeout is 0 (app.ts).
 */
const BUSY_WAIT_MS = 2000;
const BUSY_RETRY_MS = 2;

/**
 * Group commit. Every decision recorded during one turn of the event loop goes
 * into one transaction, flushed on `setImmediate`; a decision's promise
 * settles only after its transaction committed, so a request is forwarded only
 * once its row is in the WAL, at the cost of one transaction per turn, not per
 * request. Outcome rows are on no request's path: they are committed in their
 * own batches every OUTCOME_DELAY_MS, which keeps the decision commit (the one
 * requests wait for) as small as it can be.
 */
export class AuditWriter implements RunningAuditWriter {
  private decisions: Pending[] = [];
  private outcomes: OutcomeRow[] = [];
  private batchFiles: BatchFileRow[] = [];
  private control: Control = { events: [], policies: [] };
  private decisionFlushScheduled = false;
  private lastFailure: unknown = null;
  /** Since when commits have found the write lock taken; null once one succeeds. */
  private busySince: number | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private outcomeTimer: NodeJS.Timeout | null = null;
  private readonly insertDecision: Database.Statement;
  private readonly insertOutcome: Database.Statement;
  private readonly insertBatchFile: Database.Statement;
  private readonly commit: (decisions: readonly Pending[], outcomes: readonly OutcomeRow[], batchFiles: readonly BatchFileRow[], control: Control) => void;
  private readonly flushDecisions = () => this.commitQueued(true, false);
  private readonly flushOutcomes = () => this.commitQueued(false, true);
  private readonly retryBusy = () => {
    this.retryTimer = null;
    this.commitQueued(true, true);
  };

  constructor(private readonly db: Db, private readonly file: StoreFile, private readonly hooks: AuditWriterHooks, private readonly outcomeDelayMs = OUTCOME_DELAY_MS) {
    this.insertDecision = db.prepare(
      `INSERT INTO usagelog (rowid, id, customer_id, api_key_id, model, operation, meta, risk_score, allowed, reason, created_at, policy_hash, causes, prev_hash, hash)
       VALUES (?, @id, @customer_id, @api_key_id, @model, @operation, @meta, @risk_score, @allowed, @reason, @created_at, @policy_hash, @causes, ?, ?)`,
    );
    this.insertOutcome = db.prepare(
      `INSERT INTO usagelog_outcome (rowid, log_id, status, duration_ms, upstream_ms, prompt_tokens, completion_tokens, total_tokens, error, created_at, prev_hash, hash)
       VALUES (?, @log_id, @status, @duration_ms, @upstream_ms, @prompt_tokens, @completion_tokens, @total_tokens, @error, @created_at, ?, ?)`,
    );
    this.insertBatchFile = db.prepare(
      `INSERT OR IGNORE INTO batch_input_file (file_id, customer_id, api_key_id, log_id, lines, created_at)
       VALUES (@file_id, @customer_id, @api_key_id, @log_id, @lines, @created_at)`,
    );
    const tails = new ChainTails(db);
    const controlLog = new ControlLog(db);
    // IMMEDIATE: the chain's tail is read and extended under the write lock, never from a stale snapshot.
    this.commit = db.transaction((decisions: readonly Pending[], outcomes: readonly OutcomeRow[], batchFiles: readonly BatchFileRow[], control: Control) => {
      controlLog.appendIn(control.events, control.policies);
      // Rowids keep rising across retention (tail.nextRowid), so a pruned rowid never names another row.
      if (decisions.length > 0) {
        let { hash: prev, nextRowid } = tails.tail('usagelog');
        for (const d of decisions) {
          for (const row of d.rows) {
            const hash = rowHash('usagelog', prev, row);
            this.insertDecision.run(row, nextRowid, prev, hash);
            prev = hash;
            nextRowid = null;
          }
        }
      }
      if (outcomes.length > 0) {
        let { hash: prev, nextRowid } = tails.tail('usagelog_outcome');
        for (const o of outcomes) {
          const hash = rowHash('usagelog_outcome', prev, o);
          this.insertOutcome.run(o, nextRowid, prev, hash);
          prev = hash;
          nextRowid = null;
        }
      }
      for (const f of batchFiles) this.insertBatchFile.run(f);
    }).immediate;
  }

  /** Resolves once the row is committed; rejects if the database refused it. */
  record(row: DecisionRow): Promise<void> {
    return this.recordAll([row]);
  }

  /** Resolves once all the rows are committed, in one transaction and in this order; rejects if the database refused them. */
  recordAll(rows: readonly DecisionRow[]): Promise<void> {
    return new Promise((resolve, reject) => {
      this.decisions.push({ rows, resolve, reject });
      // While a retry is pending, new rows join it rather than knock on the lock every turn.
      if (!this.decisionFlushScheduled && !this.retryTimer) {
        this.decisionFlushScheduled = true;
        setImmediate(this.flushDecisions);
      }
    });
  }

  /**
   * Queues a control event; a policy text goes with it when the event puts a
   * policy in force, and is committed before any decision that names it.
   */
  recordControl(event: ControlEventRow, policy?: PolicyVersionRow): void {
    this.control.events.push(event);
    if (policy) this.control.policies.push(policy);
    if (!this.decisionFlushScheduled && !this.retryTimer) {
      this.decisionFlushScheduled = true;
      setImmediate(this.flushDecisions);
    }
  }

  recordOutcome(row: OutcomeRow): void {
    this.outcomes.push(row);
    this.scheduleOutcomes();
  }

  /** Committed with the outcomes: the upload's answer has already gone to the client, nothing waits on it. */
  recordBatchFile(row: BatchFileRow): void {
    this.batchFiles.push(row);
    this.scheduleOutcomes();
  }

  private scheduleOutcomes(): void {
    if (this.outcomes.length >= OUTCOME_BATCH) {
      if (this.outcomeTimer) clearTimeout(this.outcomeTimer);
      this.outcomeTimer = setTimeout(this.flushOutcomes, 0);
    } else if (!this.outcomeTimer) {
      this.outcomeTimer = setTimeout(this.flushOutcomes, this.outcomeDelayMs);
    }
    // Queued outcomes are flushed at shutdown; they must not keep an idle process alive.
    this.outcomeTimer.unref();
  }

  get queued(): number {
    return this.decisions.reduce((n, d) => n + d.rows.length, 0) + this.outcomes.length + this.batchFiles.length + this.control.events.length;
  }

  /** Outcomes and batch files not committed yet: what nothing waits for. */
  get queuedOutcomes(): number {
    return this.outcomes.length + this.batchFiles.length;
  }

  /** Whether requests are waiting for their decision rows (queued for the next commit, or waiting for the lock). */
  get decisionsPending(): boolean {
    return this.decisions.length > 0;
  }

  /** Whether the last commit failed: the store is unhealthy until one succeeds again. */
  get failing(): boolean {
    return this.lastFailure !== null;
  }

  /** Why the last commit failed (SQLite's error, or an AuditStoreError), while it is failing. */
  get failure(): unknown {
    return this.lastFailure;
  }

  checkpointAfterCommits(): void {
    this.db.pragma('wal_autocheckpoint = 1000');
  }

  async close(busyTimeoutMs: number): Promise<void> {
    this.db.pragma(`busy_timeout = ${busyTimeoutMs}`);
    this.flush();
  }

  /** Commits everything queued now, without waiting for a busy lock; used at shutdown. */
  flush(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.commitQueued(true, true, true);
  }

  private commitQueued(takeDecisions: boolean, takeOutcomes: boolean, final = false): void {
    const decisions = takeDecisions ? this.decisions : [];
    const outcomes = takeOutcomes ? this.outcomes : [];
    const batchFiles = takeOutcomes ? this.batchFiles : [];
    const control = takeDecisions ? this.control : { events: [], policies: [] };
    if (takeDecisions) {
      this.decisions = [];
      this.control = { events: [], policies: [] };
      this.decisionFlushScheduled = false;
    }
    if (takeOutcomes) {
      this.outcomes = [];
      this.batchFiles = [];
      if (this.outcomeTimer) clearTimeout(this.outcomeTimer);
      this.outcomeTimer = null;
    }
    if (decisions.length === 0 && outcomes.length === 0 && batchFiles.length === 0 && control.events.length === 0 && control.policies.length === 0) return;
    const started = performance.now();
    try {
      this.file.assertWritable();
      this.commit(decisions, outcomes, batchFiles, control);
    } catch (err) {
      // SQLITE_BUSY and its extended codes (_RECOVERY after another process crashed, _SNAPSHOT, _TIMEOUT).
      const busy = (err as { code?: string }).code?.startsWith('SQLITE_BUSY') ?? false;
      if (!final && busy && this.waitForLock(decisions, outcomes, batchFiles, control)) return;
      if (!busy) this.busySince = null;
      this.lastFailure = err;
      this.hooks.onFailure(err, outcomes.length);
      for (const d of decisions) d.reject(err);
      // A refused request can be retried by its client; a lost policy text or control event cannot: they go with the next commit.
      if (!final) this.control = { events: [...control.events, ...this.control.events], policies: [...control.policies, ...this.control.policies] };
      return;
    }
    // Capped: after BUSY_WAIT_MS batches stop waiting, so an outage's length is not one commit's wait.
    const waitedMs = this.busySince === null ? 0 : Math.min(started - this.busySince, BUSY_WAIT_MS);
    this.lastFailure = null;
    this.busySince = null;
    this.hooks.onCommit(performance.now() - started, waitedMs);
    for (const d of decisions) d.resolve();
  }

  /**
   * Puts a batch that met a taken write lock back at the head of the queue and
   * retries shortly; false once the lock has been taken for BUSY_WAIT_MS, after
   * which batches fail at once until a commit succeeds again.
   */
  private waitForLock(decisions: Pending[], outcomes: OutcomeRow[], batchFiles: BatchFileRow[], control: Control): boolean {
    const now = performance.now();
    this.busySince ??= now;
    if (now - this.busySince >= BUSY_WAIT_MS) return false;
    this.decisions = decisions.concat(this.decisions);
    this.control = { events: control.events.concat(this.control.events), policies: control.policies.concat(this.control.policies) };
    this.outcomes = outcomes.concat(this.outcomes);
    this.batchFiles = batchFiles.concat(this.batchFiles);
    this.retryTimer ??= setTimeout(this.retryBusy, BUSY_RETRY_MS);
    return true;
  }
}
