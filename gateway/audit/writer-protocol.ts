import { AuditStoreError, type FileIdentity } from '../store/store-file.js';
import type { SyncMode } from '../config/gateway-config.js';
import type { BatchFileRow, DecisionRow, OutcomeRow } from './audit-writer.js';
import type { ControlEventRow, PolicyVersionRow } from './control-log.js';

/** What the writer thread is started with. */
export interface WriterWorkerData {
  readonly file: string;
  /** The file the gateway opened: a restarted thread must not take a file put in its place for it. */
  readonly identity: FileIdentity;
  readonly synchronous: SyncMode;
}

/** A control event and, when it puts a policy in force, the policy's text. */
export interface ControlEntry {
  readonly event: ControlEventRow;
  readonly policy: PolicyVersionRow | undefined;
}

/**
 * Gateway → writer thread. `rows`: everything recorded during one turn of the
 * event loop; `seq` names its decisions and control events, which the thread
 * acknowledges together once their transaction committed (0: only outcomes).
 */
export type ToWriter =
  | { readonly t: 'rows'; readonly seq: number; readonly decisions: readonly DecisionRow[]; readonly outcomes: readonly OutcomeRow[]; readonly batchFiles: readonly BatchFileRow[]; readonly control: readonly ControlEntry[] }
  | { readonly t: 'checkpoint-inline' }
  | { readonly t: 'flush'; readonly busyTimeoutMs: number };

/** An error as it crosses the thread boundary: what the gateway matches on (`code`) and reports (name, stack); messages are SQLite's or ours, never content. */
export interface WireError {
  readonly name: string;
  readonly message: string;
  readonly code: string | null;
  readonly stack: string | null;
}

/** One commit's result, in the order they happened: the last one says whether the store is failing. */
export type CommitResult =
  | { readonly ok: true; readonly ms: number; readonly waitedMs: number }
  | { readonly ok: false; readonly error: WireError; readonly lostOutcomes: number };

/** Writer thread → gateway, at most one a turn: acknowledgements, the commits' timings and failures, and how many rows it holds. */
export type FromWriter =
  | { readonly t: 'done'; readonly acks: number[]; readonly refusals: { seq: number; error: WireError }[]; readonly commits: CommitResult[]; queued: number }
  | { readonly t: 'flushed' };

export function toWire(err: unknown): WireError {
  if (err instanceof Error) return { name: err.name, message: err.message, code: (err as { code?: unknown }).code as string ?? null, stack: err.stack ?? null };
  return { name: 'Error', message: String(err), code: null, stack: null };
}

/** The error again, with the class the gateway's checks know (AuditStoreError) or an Error carrying SQLite's code. */
export function fromWire(wire: WireError): Error {
  const err = wire.name === 'AuditStoreError'
    ? new AuditStoreError(wire.code as AuditStoreError['code'], wire.message)
    : Object.assign(new Error(wire.message), wire.code === null ? {} : { code: wire.code });
  err.name = wire.name;
  if (wire.stack !== null) err.stack = wire.stack;
  return err;
}
