import type { Db } from './database.js';
import type Database from 'better-sqlite3';

/** One policy decision: exactly the columns of `usagelog`. */
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

export interface AuditWriterHooks {
  onCommit?(rows: number, ms: number): void;
  onFailure(err: unknown, lostOutcomes: number): void;
}

const OUTCOME_DELAY_MS = 50;
/** Past this many queued outcomes they are committed at the next turn rather than after the delay. */
const OUTCOME_BATCH = 512;

interface Pending {
  readonly row: DecisionRow;
  readonly resolve: () => void;
  readonly reject: (err: unknown) => void;
}

/**
 * Group commit: every decision recorded during one turn of the event loop goes
 * into one transaction, flushed on `setImmediate`. A decision's promise
 * settles only after its transaction committed, so a request is forwarded only
 * once its row is durable, at the cost of one transaction per turn, not per
 * request. Outcome rows wait nothing on them: they ride along with the next
 * decision commit, or go on their own after OUTCOME_DELAY_MS, which halves the
 * commits per request when traffic is light.
 */
export class AuditWriter {
  private decisions: Pending[] = [];
  private outcomes: OutcomeRow[] = [];
  private scheduled = false;
  private outcomeTimer: NodeJS.Timeout | null = null;
  private readonly insertDecision: Database.Statement;
  private readonly insertOutcome: Database.Statement;
  private readonly commit: (decisions: readonly Pending[], outcomes: readonly OutcomeRow[]) => void;
  private readonly flushSoon = () => this.flush();

  constructor(db: Db, private readonly hooks: AuditWriterHooks) {
    this.insertDecision = db.prepare(
      `INSERT INTO usagelog (id, customer_id, api_key_id, model, operation, meta, risk_score, allowed, reason, created_at)
       VALUES (@id, @customer_id, @api_key_id, @model, @operation, @meta, @risk_score, @allowed, @reason, @created_at)`,
    );
    this.insertOutcome = db.prepare(
      `INSERT INTO usagelog_outcome (log_id, status, duration_ms, upstream_ms, prompt_tokens, completion_tokens, total_tokens, error, created_at)
       VALUES (@log_id, @status, @duration_ms, @upstream_ms, @prompt_tokens, @completion_tokens, @total_tokens, @error, @created_at)`,
    );
    this.commit = db.transaction((decisions: readonly Pending[], outcomes: readonly OutcomeRow[]) => {
      for (const d of decisions) this.insertDecision.run(d.row);
      for (const o of outcomes) this.insertOutcome.run(o);
    });
  }

  /** Resolves once the row is committed; rejects if the database refused it. */
  record(row: DecisionRow): Promise<void> {
    return new Promise((resolve, reject) => {
      this.decisions.push({ row, resolve, reject });
      this.schedule();
    });
  }

  recordOutcome(row: OutcomeRow): void {
    this.outcomes.push(row);
    if (this.outcomes.length >= OUTCOME_BATCH) this.schedule();
    else if (!this.scheduled && !this.outcomeTimer) {
      this.outcomeTimer = setTimeout(this.flushSoon, OUTCOME_DELAY_MS);
      this.outcomeTimer.unref();
    }
  }

  get queued(): number {
    return this.decisions.length + this.outcomes.length;
  }

  /** Commits everything queued now; used by the scheduler and at shutdown. */
  flush(): void {
    this.scheduled = false;
    if (this.outcomeTimer) {
      clearTimeout(this.outcomeTimer);
      this.outcomeTimer = null;
    }
    const decisions = this.decisions;
    const outcomes = this.outcomes;
    if (decisions.length === 0 && outcomes.length === 0) return;
    this.decisions = [];
    this.outcomes = [];
    const started = performance.now();
    try {
      this.commit(decisions, outcomes);
    } catch (err) {
      this.hooks.onFailure(err, outcomes.length);
      for (const d of decisions) d.reject(err);
      return;
    }
    this.hooks.onCommit?.(decisions.length + outcomes.length, performance.now() - started);
    for (const d of decisions) d.resolve();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(this.flushSoon);
  }
}
