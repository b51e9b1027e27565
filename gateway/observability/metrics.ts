import type { LimitKind } from '../policy/limit-kinds.js';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { logLinesDropped } from './logger.js';

/**
 * Label values come from requests (model names, operations), so each label
 * keeps at most this many distinct values and folds the rest into `_other`:
 * a client inventing model names must not grow memory without bound.
 */
const LABEL_LIMITS = { model: 200, operation: 100, customer: 1000 } as const;
const OVERFLOW = '_other';
/** Seconds; the gateway's own work is sub-millisecond, providers take up to minutes. */
const OVERHEAD_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25];
/** Up to the writer's 2 s give-up (BUSY_WAIT_MS), with the first bucket for "not at all". */
const LOCK_WAIT_BUCKETS = [0, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2];
/** A retention batch is sized to about a millisecond. */
const PRUNE_BATCH_BUCKETS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1];
const UPSTREAM_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

export interface RequestObservation {
  readonly decision: 'allow' | 'block';
  readonly operation: string;
  readonly model: string | null;
  readonly customer: string;
  readonly status: number;
  readonly overheadMs?: number;
  readonly upstreamMs?: number;
  readonly provider?: string;
  readonly upstreamError?: string | null;
}

/** Everything /metrics exports, in one registry owned by the running gateway. */
export class GatewayMetrics {
  readonly registry = new Registry();
  private readonly seen = { model: new Set<string>(), operation: new Set<string>(), customer: new Set<string>() };
  private readonly requests: Counter<'decision' | 'operation' | 'model' | 'customer' | 'status'>;
  private readonly overhead: Histogram;
  private readonly upstream: Histogram<'provider'>;
  private readonly upstreamErrors: Counter<'provider' | 'kind'>;
  private readonly authFailures: Counter<'failure'>;
  private readonly auditCommit: Histogram;
  private readonly auditLockWait: Histogram;
  private readonly auditFailures: Counter;
  private readonly auditPruneBatch: Histogram;
  private readonly unaudited: Counter;
  private readonly policyReloads: Counter<'result'>;
  private readonly policyInfo: Gauge<'hash'>;
  private readonly limitRefusals: Counter<'limit'>;
  private readonly limitStoreFailures: Counter<'mode'>;
  private readonly backupFailures: Counter;

  constructor(auditQueueDepth: () => number, auditWalBytes: () => number) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'govgate_' });
    this.requests = new Counter({ name: 'govgate_requests_total', help: 'Governed requests by decision, operation, model, customer and the status answered', labelNames: ['decision', 'operation', 'model', 'customer', 'status'], registers });
    this.overhead = new Histogram({ name: 'govgate_overhead_seconds', help: 'Time the gateway spent on a forwarded request before forwarding it (authentication, policy, audit commit)', buckets: OVERHEAD_BUCKETS, registers });
    this.upstream = new Histogram({ name: 'govgate_upstream_seconds', help: 'Time from forwarding to the end of the provider\'s response', labelNames: ['provider'], buckets: UPSTREAM_BUCKETS, registers });
    this.upstreamErrors = new Counter({ name: 'govgate_upstream_errors_total', help: 'Forwarded requests that ended in an error, by kind', labelNames: ['provider', 'kind'], registers });
    this.authFailures = new Counter({ name: 'govgate_auth_failures_total', help: 'Requests refused with 401, by why the key failed', labelNames: ['failure'], registers });
    this.auditCommit = new Histogram({ name: 'govgate_audit_commit_seconds', help: 'Duration of one audit group commit', buckets: OVERHEAD_BUCKETS, registers });
    this.auditLockWait = new Histogram({ name: 'govgate_audit_lock_wait_seconds', help: 'How long an audit group commit waited for a write lock held by another connection (a checkpoint, a CLI, an admin\'s sqlite3); 0 when it was free', buckets: LOCK_WAIT_BUCKETS, registers });
    this.auditPruneBatch = new Histogram({ name: 'govgate_audit_prune_batch_seconds', help: 'Duration of one retention batch, which holds the audit writer (and the event loop) while it runs', buckets: PRUNE_BATCH_BUCKETS, registers });
    this.auditFailures = new Counter({ name: 'govgate_audit_write_failures_total', help: 'Audit commits the database refused', registers });
    this.unaudited = new Counter({ name: 'govgate_unaudited_requests_total', help: 'Requests forwarded without an audit row (on_write_failure: allow)', registers });
    this.policyReloads = new Counter({ name: 'govgate_policy_reloads_total', help: 'Policy edits picked up or rejected', labelNames: ['result'], registers });
    this.policyInfo = new Gauge({ name: 'govgate_policy_info', help: 'The policy in force, by SHA-256 of its file', labelNames: ['hash'], registers });
    this.limitRefusals = new Counter({ name: 'govgate_limit_refusals_total', help: 'Requests refused with 429 by a rate limit or token budget, by limit kind', labelNames: ['limit'], registers });
    this.backupFailures = new Counter({ name: 'govgate_backup_failures_total', help: 'Scheduled audit backups that failed', registers });
    this.limitStoreFailures = new Counter({ name: 'govgate_limit_store_failures_total', help: 'Requests whose limits could not be checked because the limit store was unreachable, by limits.on_store_failure (allow: forwarded unchecked)', labelNames: ['mode'], registers });
    new Gauge({ name: 'govgate_audit_queue_depth', help: 'Audit rows waiting to be committed', registers, collect() { this.set(auditQueueDepth()); } });
    new Gauge({ name: 'govgate_audit_wal_bytes', help: 'Size of the audit database\'s write-ahead log', registers, collect() { this.set(auditWalBytes()); } });
    // The logger exists before any registry and counts for the whole process; a scrape adds what it dropped since the last.
    let droppedReported = 0;
    new Counter({ name: 'govgate_log_lines_dropped_total', help: 'Log lines dropped because stdout was not being read and the lines waiting for it reached their bound', registers, collect() {
      const dropped = logLinesDropped();
      this.inc(dropped - droppedReported);
      droppedReported = dropped;
    } });
  }

  request(o: RequestObservation): void {
    this.requests.inc({
      decision: o.decision,
      operation: this.bounded('operation', o.operation),
      model: this.bounded('model', o.model ?? ''),
      customer: this.bounded('customer', o.customer),
      status: o.status,
    });
    if (o.overheadMs !== undefined) this.overhead.observe(o.overheadMs / 1000);
    if (o.provider !== undefined && o.upstreamMs !== undefined) this.upstream.observe({ provider: o.provider }, o.upstreamMs / 1000);
    if (o.provider !== undefined && o.upstreamError) this.upstreamErrors.inc({ provider: o.provider, kind: o.upstreamError });
  }

  authFailure(failure: string): void {
    this.authFailures.inc({ failure });
  }

  auditCommitted(ms: number, waitedMs: number): void {
    this.auditCommit.observe(ms / 1000);
    this.auditLockWait.observe(waitedMs / 1000);
  }

  pruneBatch(ms: number): void {
    this.auditPruneBatch.observe(ms / 1000);
  }

  auditFailed(): void {
    this.auditFailures.inc();
  }

  forwardedUnaudited(): void {
    this.unaudited.inc();
  }

  policyLoaded(hash: string): void {
    this.policyInfo.reset();
    this.policyInfo.set({ hash }, 1);
  }

  policyReloaded(result: 'success' | 'failure'): void {
    this.policyReloads.inc({ result });
  }

  limitRefused(limit: LimitKind): void {
    this.limitRefusals.inc({ limit });
  }

  limitStoreFailure(mode: 'block' | 'allow'): void {
    this.limitStoreFailures.inc({ mode });
  }

  backupFailed(): void {
    this.backupFailures.inc();
  }

  private bounded(label: keyof typeof LABEL_LIMITS, value: string): string {
    const seen = this.seen[label];
    if (seen.has(value)) return value;
    if (seen.size >= LABEL_LIMITS[label]) return OVERFLOW;
    seen.add(value);
    return value;
  }
}
