import { v7 as uuidv7 } from 'uuid';
import { rowHash } from '../store/chain.js';
import { ChainTails } from './chain-tail.js';
import { type Db } from '../store/connection.js';
import { sqliteTime } from '../store/sqlite-time.js';

/** Every change to governance the control log records (docs/audit.md, "The control log"). */
export const CONTROL_EVENT_KINDS = [
  'key.created', 'key.revoked', 'policy.loaded', 'policy.rejected', 'gateway.started', 'gateway.stopped',
  'retention.ran', 'backup.made', 'admin.login', 'admin.login_failed',
] as const;
export type ControlEventKind = (typeof CONTROL_EVENT_KINDS)[number];

/** What detail each kind carries: ids, hashes, counts and locations, never a secret or request content. */
export type ControlDetail = Readonly<Record<string, string | number | boolean | null | readonly unknown[] | Readonly<Record<string, unknown>>>>;

/** One row of `audit_event`, before its chain columns. */
export interface ControlEventRow {
  readonly id: string;
  readonly kind: ControlEventKind;
  /** Who: the CLI's --actor, $GOVGATE_ACTOR or OS user; the client address for the dashboard; `gateway` for the process itself. */
  readonly actor: string;
  readonly detail: string;
  readonly created_at: string;
}

/** The actor of the gateway's own events (start, stop, policy reloads, scheduled retention and backups). */
export const GATEWAY_ACTOR = 'gateway';

export function controlEvent(kind: ControlEventKind, actor: string, detail: ControlDetail): ControlEventRow {
  return { id: uuidv7(), kind, actor, detail: JSON.stringify(detail), created_at: sqliteTime() };
}

/** A text of the policy in force, as `policy_version` keeps it. */
export interface PolicyVersionRow {
  readonly hash: string;
  readonly loaded_at: string;
  readonly path: string;
  readonly text: string;
}

/**
 * Appends control events and policy versions through one connection. The
 * chain's tail is read inside each IMMEDIATE transaction, so the gateway and a
 * CLI appending to the same file at once cannot fork the control log.
 */
export class ControlLog {
  private readonly tails: ChainTails;
  private readonly insertEvent;
  private readonly knownEvent;
  private readonly insertPolicy;
  readonly append: (events: readonly ControlEventRow[], policies: readonly PolicyVersionRow[]) => void;

  constructor(db: Db) {
    this.tails = new ChainTails(db);
    this.knownEvent = db.prepare('SELECT 1 FROM audit_event WHERE id = ?').pluck();
    this.insertEvent = db.prepare(
      'INSERT INTO audit_event (id, kind, actor, detail, created_at, prev_hash, hash) VALUES (@id, @kind, @actor, @detail, @created_at, ?, ?)',
    );
    // A text loaded again later is the same version: the first load is when it came into force.
    this.insertPolicy = db.prepare('INSERT OR IGNORE INTO policy_version (hash, loaded_at, path, text) VALUES (@hash, @loaded_at, @path, @text)');
    this.append = db.transaction((events: readonly ControlEventRow[], policies: readonly PolicyVersionRow[]) => this.appendIn(events, policies)).immediate;
  }

  /** Inside a transaction the caller holds (the audit writer's group commit). */
  appendIn(events: readonly ControlEventRow[], policies: readonly PolicyVersionRow[]): void {
    for (const p of policies) this.insertPolicy.run(p);
    if (events.length === 0) return;
    let { hash: prev } = this.tails.tail('audit_event');
    for (const e of events) {
      // An event sent again by the gateway after its writer thread died may have been committed before it died.
      if (this.knownEvent.get(e.id) !== undefined) continue;
      const hash = rowHash('audit_event', prev, e);
      this.insertEvent.run(e, prev, hash);
      prev = hash;
    }
  }
}

/** Appends one event from a CLI command, on a connection of its own. */
export function appendControlEvent(db: Db, event: ControlEventRow): void {
  new ControlLog(db).append([event], []);
}

export function policyVersionRow(policy: { readonly hash: string; readonly text: string }, path: string): PolicyVersionRow {
  return { hash: policy.hash, loaded_at: sqliteTime(), path, text: policy.text };
}
