import { CHAIN_COLUMNS, CHAINS, GENESIS_HASH, rowHash, type ChainName } from './chain.js';
import type { Db } from './database.js';

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

interface Anchor {
  readonly through_rowid: number;
  readonly through_hash: string;
}

type Row = Record<string, unknown> & { row_id: number; prev_hash: unknown; hash: unknown };

/**
 * Walks both chains in rowid order, one row in memory at a time, inside one
 * read transaction so a running gateway's appends do not shift the ground.
 * The first remaining row must link to the latest retention anchor (or to
 * the genesis hash), every row's hash must match its content, and every row
 * must link to the one before. With `against`, a head exported earlier must
 * still be in the chain unchanged, which also catches rows cut off the end.
 */
export function verifyAuditChain(db: Db, against?: ExportedHead): VerifyReport {
  const rows: Record<ChainName, number> = { usagelog: 0, usagelog_outcome: 0 };
  const head: Record<ChainName, ChainHead | null> = { usagelog: null, usagelog_outcome: null };
  const notes: string[] = [];
  db.exec('BEGIN');
  try {
    for (const chain of CHAINS) {
      const result = walk(db, chain);
      rows[chain] = result.count;
      if ('broken' in result) return { ok: false, rows, broken: result.broken };
      head[chain] = result.head;
      const exported = against?.[chain];
      if (exported) {
        const problem = checkAgainst(db, chain, exported, notes);
        if (problem) return { ok: false, rows, broken: problem };
      }
    }
  } finally {
    db.exec('COMMIT');
  }
  return { ok: true, rows, head, notes };
}

function walk(db: Db, chain: ChainName): { count: number; head: ChainHead | null } | { count: number; broken: ChainBreak } {
  const idColumn = CHAIN_COLUMNS[chain][0]![0];
  const anchor = latestAnchor(db, chain);
  let expected = anchor ? anchor.through_hash : GENESIS_HASH;
  let previous: Row | null = null;
  let count = 0;
  const iterator = db.prepare(`SELECT rowid AS row_id, * FROM ${chain} ORDER BY rowid`).iterate() as IterableIterator<Row>;
  const breakAt = (row: Row, problem: string): { count: number; broken: ChainBreak } => {
    iterator.return?.();
    return { count, broken: { chain, rowid: row.row_id, id: typeof row[idColumn] === 'string' ? (row[idColumn] as string) : null, problem } };
  };
  for (let next = iterator.next(); !next.done; ) {
    const row = next.value;
    if (typeof row.hash !== 'string' || typeof row.prev_hash !== 'string') return breakAt(row, 'has no hash: it was not written by govgate');
    if (rowHash(chain, row.prev_hash, row) !== row.hash) return breakAt(row, 'was changed: its content no longer matches its hash');
    next = iterator.next();
    if (row.prev_hash !== expected) {
      if (previous && row.prev_hash === previous.prev_hash) {
        return breakAt(previous, `was inserted out of order: row ${row.row_id} after it links to what came before it`);
      }
      const follower = next.done ? null : next.value;
      if (follower && follower.prev_hash === expected) {
        return breakAt(row, `was inserted out of order: the row after it links to ${previous ? `row ${previous.row_id}` : 'the start of the chain'}`);
      }
      if (!previous) {
        return breakAt(row, anchor
          ? `does not link to the retention anchor (through row ${anchor.through_rowid}): rows before it were removed`
          : 'does not link to the start of the chain: rows before it were removed without a retention anchor');
      }
      return breakAt(row, `does not link to row ${previous.row_id}: rows between them were removed, or row ${previous.row_id} was changed and re-hashed`);
    }
    expected = row.hash;
    previous = row;
    count++;
  }
  const last = previous;
  return {
    count,
    head: last ? { rowid: last.row_id, id: String(last[idColumn]), hash: last.hash as string, created_at: String(last.created_at) } : null,
  };
}

function latestAnchor(db: Db, chain: ChainName): Anchor | undefined {
  return db.prepare('SELECT through_rowid, through_hash FROM audit_anchor WHERE chain = ? ORDER BY id DESC LIMIT 1').get(chain) as Anchor | undefined;
}

/** An exported head proves everything up to it: that row must still be there with the same hash, or have been pruned by retention. */
function checkAgainst(db: Db, chain: ChainName, exported: ChainHead, notes: string[]): ChainBreak | null {
  const at = (problem: string): ChainBreak => ({ chain, rowid: exported.rowid, id: exported.id, problem });
  const row = db.prepare(`SELECT hash FROM ${chain} WHERE rowid = ?`).get(exported.rowid) as { hash: unknown } | undefined;
  if (row) return row.hash === exported.hash ? null : at('differs from the exported head: the chain was rewritten up to it');
  const pruned = db.prepare('SELECT through_rowid, through_hash FROM audit_anchor WHERE chain = ? AND through_rowid >= ? ORDER BY id LIMIT 1').get(chain, exported.rowid) as Anchor | undefined;
  if (!pruned) return at('is missing: the exported head row was removed, or rows were cut off the end of the chain');
  if (pruned.through_rowid === exported.rowid && pruned.through_hash !== exported.hash) {
    return at('differs from the exported head: the retention anchor that deleted it recorded another hash');
  }
  notes.push(`${chain} head row ${exported.rowid} has since been deleted by retention (anchored through row ${pruned.through_rowid})`);
  return null;
}
