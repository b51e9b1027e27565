import { CHAIN_COLUMNS, CHAINS, GENESIS_HASH, type ChainName } from '../store/chain.js';
import { checkAnchorOrder, checkContent, misorder, unlinkedProblem, type ChainAnchor, type ChainRow } from './chain-rules.js';
import type { Db } from '../store/connection.js';
import { retentionCutoff } from './retention.js';

/** A chain's last row: what `audit verify --export-head` prints, to be kept off the machine. */
export interface ChainHead {
  readonly rowid: number;
  readonly id: string;
  readonly hash: string;
  readonly created_at: string;
}

export type ExportedHead = Readonly<Record<ChainName, ChainHead | null>>;

export interface ChainBreak {
  readonly chain: ChainName;
  readonly rowid: number;
  /** The row's log id (`id`, or `log_id` for outcomes), when it has one. */
  readonly id: string | null;
  readonly problem: string;
}

export type VerifyReport =
  | { readonly ok: true; readonly rows: Readonly<Record<ChainName, number>>; readonly head: ExportedHead; readonly notes: readonly string[] }
  | { readonly ok: false; readonly rows: Readonly<Record<ChainName, number>>; readonly broken: ChainBreak };

type Anchor = ChainAnchor & { readonly id: number };

export interface VerifyOptions {
  /** A head exported earlier, which must still be in the chain unchanged. */
  readonly against?: ExportedHead;
  /** audit.retention_days: a retention anchor may only cover rows older than that. */
  readonly retentionDays?: number;
  readonly now?: Date;
}


/**
 * Walks every chain (decisions, outcomes, the control log) in rowid order, one row in memory at a time, inside one
 * read transaction so a running gateway's appends do not shift the ground.
 * The first remaining row must link to the latest retention anchor (or to
 * the genesis hash), every row's hash must match its content, and every row
 * must link to the one before. With `against`, a head exported earlier must
 * still be in the chain unchanged, which also catches rows cut off the end.
 */
export function verifyAuditChain(db: Db, options: VerifyOptions = {}): VerifyReport {
  const { against } = options;
  const cutoff = options.retentionDays === undefined ? null : retentionCutoff(options.retentionDays, options.now);
  const rows: Record<ChainName, number> = { usagelog: 0, usagelog_outcome: 0, audit_event: 0 };
  const head: Record<ChainName, ChainHead | null> = { usagelog: null, usagelog_outcome: null, audit_event: null };
  const notes: string[] = [];
  db.exec('BEGIN');
  try {
    const hasTable = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").pluck();
    for (const chain of CHAINS) {
      // A file from before the control log, opened read-only and so not migrated, has no audit_event yet.
      if (hasTable.get(chain) === undefined) continue;
      const result = walk(db, chain, cutoff);
      rows[chain] = result.count;
      if ('broken' in result) return { ok: false, rows, broken: result.broken };
      head[chain] = result.head;
      const exported = against?.[chain];
      if (exported) {
        const problem = checkAgainst(db, chain, exported, notes, result.anchor);
        if (problem) return { ok: false, rows, broken: problem };
      }
    }
  } finally {
    db.exec('COMMIT');
  }
  return { ok: true, rows, head, notes };
}

function walk(db: Db, chain: ChainName, cutoff: string | null): { count: number; head: ChainHead | null; anchor: Anchor | undefined } | { count: number; broken: ChainBreak } {
  const idColumn = CHAIN_COLUMNS[chain][0]![0];
  const anchors = checkAnchors(db, chain, cutoff);
  if ('broken' in anchors) return { count: 0, broken: anchors.broken };
  const { anchor } = anchors;
  let expected = anchor ? anchor.through_hash : GENESIS_HASH;
  let previous: ChainRow | null = null;
  let count = 0;
  const iterator = db.prepare(`SELECT rowid AS row_id, * FROM ${chain} ORDER BY rowid`).iterate() as IterableIterator<ChainRow>;
  const rowWithHash = db.prepare(`SELECT rowid FROM ${chain} WHERE hash = ?`).pluck();
  const breakAt = (row: ChainRow, problem: string): { count: number; broken: ChainBreak } => ({
    count,
    broken: { chain, rowid: row.row_id, id: typeof row[idColumn] === 'string' ? (row[idColumn] as string) : null, problem },
  });
  try {
    for (let next = iterator.next(); !next.done; ) {
      const checked = checkContent(chain, next.value);
      if ('problem' in checked) return breakAt(next.value, checked.problem);
      const { row } = checked;
      if (!previous && anchor && row.row_id <= anchor.through_rowid) {
        return breakAt(row, `has a rowid that retention anchor ${anchor.id} says was deleted (through row ${anchor.through_rowid})`);
      }
      next = iterator.next();
      if (row.prev_hash !== expected) {
        const swapped = misorder(row, previous, next.done ? null : next.value, expected);
        if (swapped) return breakAt(swapped.at, swapped.problem);
        // The only place a search is needed: a broken link is rare, and it names the cause.
        const linkedTo = (rowWithHash.get(row.prev_hash) as number | undefined) ?? null;
        return breakAt(row, unlinkedProblem(previous, linkedTo, anchor));
      }
      expected = row.hash;
      previous = row;
      count++;
    }
  } finally {
    iterator.return?.();
  }
  const last = previous;
  return {
    count,
    anchor,
    head: last ? { rowid: last.row_id, id: String(last[idColumn]), hash: last.hash as string, created_at: String(last.created_at) } : null,
  };
}

function checkAnchors(db: Db, chain: ChainName, cutoff: string | null): { anchor: Anchor | undefined } | { broken: ChainBreak } {
  const all = db.prepare('SELECT id, through_rowid, through_hash, through_created_at FROM audit_anchor WHERE chain = ? ORDER BY id').iterate(chain) as IterableIterator<Anchor>;
  const checked = checkAnchorOrder(all, cutoff);
  if ('latest' in checked) return { anchor: checked.latest };
  return { broken: { chain, rowid: checked.anchor.through_rowid, id: null, problem: checked.problem } };
}

/**
 * An exported head proves everything up to it: that row (found by its log id,
 * not its rowid) must still be there with the same hash, or have been deleted
 * by retention, which anchored rows at least as recent as it.
 */
function checkAgainst(db: Db, chain: ChainName, exported: ChainHead, notes: string[], anchor: Anchor | undefined): ChainBreak | null {
  const at = (problem: string): ChainBreak => ({ chain, rowid: exported.rowid, id: exported.id, problem });
  const idColumn = CHAIN_COLUMNS[chain][0]![0];
  const row = db.prepare(`SELECT hash FROM ${chain} WHERE ${idColumn} = ?`).get(exported.id) as { hash: unknown } | undefined;
  if (row) return row.hash === exported.hash ? null : at('differs from the exported head: the chain was rewritten up to it');
  if (!anchor || anchor.through_created_at < exported.created_at) {
    return at('is missing: the exported head row was removed, or rows were cut off the end of the chain');
  }
  notes.push(`${chain} head row ${exported.rowid} has since been deleted by retention (anchored through row ${anchor.through_rowid})`);
  return null;
}
