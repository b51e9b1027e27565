// The rules a hash chain is verified by, shared by the local verifier (verify-chain.ts, over
// SQLite) and the central one (fleet/verify-central.ts, over PostgreSQL): the walkers fetch rows,
// these say what is wrong with them, in the same words for both.
import { rowHash, type ChainName } from '../store/chain.js';

/** A chain row as fetched: its rowid (row_id centrally), links and the columns its hash covers. */
export type ChainRow = Record<string, unknown> & { readonly row_id: number; readonly prev_hash: unknown; readonly hash: unknown };

export interface ChainAnchor {
  readonly id: number | string;
  readonly through_rowid: number;
  readonly through_hash: string;
  /** SQLite's text form, in both stores, so anchors compare the same way. */
  readonly through_created_at: string;
}

type HashedRow = ChainRow & { readonly prev_hash: string; readonly hash: string };

/** The row, if its own content holds, or what is wrong with it. */
export function checkContent(chain: ChainName, row: ChainRow): { readonly row: HashedRow } | { readonly problem: string } {
  if (typeof row.hash !== 'string' || typeof row.prev_hash !== 'string') return { problem: 'has no hash: it was not written by govgate' };
  if (rowHash(chain, row.prev_hash, row) !== row.hash) return { problem: 'was changed: its content no longer matches its hash' };
  return { row: row as HashedRow };
}

/**
 * A row that does not link to `expected` and was swapped with a neighbour:
 * either it repeats its predecessor's link, or the row after it carries the
 * link it should have had. Null when it is not a swap (then the walker looks
 * the link up and asks `unlinkedProblem`).
 */
export function misorder<R extends ChainRow>(row: R, previous: R | null, follower: R | null, expected: string): { readonly at: R; readonly problem: string } | null {
  if (previous && row.prev_hash === previous.prev_hash) {
    return { at: previous, problem: `was inserted out of order: row ${row.row_id} after it links to what came before it` };
  }
  if (follower && follower.prev_hash === expected) {
    return { at: row, problem: `was inserted out of order: the row after it links to ${previous ? `row ${previous.row_id}` : 'the start of the chain'}` };
  }
  return null;
}

/** Why a row links to nothing expected: `linkedTo` is the row its link names, if that row exists elsewhere in the chain. */
export function unlinkedProblem(previous: ChainRow | null, linkedTo: number | string | null, anchor: ChainAnchor | undefined): string {
  if (linkedTo !== null) return `is out of order: it links to row ${linkedTo}`;
  if (!previous) {
    return anchor
      ? `does not link to retention anchor ${anchor.id} (through row ${anchor.through_rowid}): rows before it were removed`
      : 'does not link to the start of the chain: rows before it were removed without a retention anchor';
  }
  return `does not link to row ${previous.row_id}: rows between them were removed, or row ${previous.row_id} was changed and re-hashed`;
}

/**
 * Anchors are only written by retention, so each must cover more rows than the
 * one before and only rows past the retention window: an anchor that covers
 * rows inside the window was forged to hide a deletion (or the window was
 * lengthened since, which docs/audit.md explains). Returns the latest anchor,
 * or the first one that breaks a rule.
 */
export function checkAnchorOrder<A extends ChainAnchor>(anchors: Iterable<A>, cutoff: string | null): { readonly latest: A | undefined } | { readonly anchor: A; readonly problem: string } {
  let latest: A | undefined;
  for (const anchor of anchors) {
    const broken = (problem: string) => ({ anchor, problem: `is covered by retention anchor ${anchor.id}, ${problem}` });
    if (latest && (anchor.through_rowid <= latest.through_rowid || anchor.through_created_at < latest.through_created_at)) {
      return broken(`which goes back behind anchor ${latest.id}: anchors were forged or reordered`);
    }
    if (cutoff !== null && anchor.through_created_at >= cutoff) {
      return broken(`which deleted rows up to ${anchor.through_created_at}, inside the retention window: a forged anchor hides a deletion`);
    }
    latest = anchor;
  }
  return { latest };
}
