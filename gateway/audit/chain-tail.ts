import type Database from 'better-sqlite3';
import { GENESIS_HASH, type ChainName } from '../store/chain.js';
import type { Db } from '../store/connection.js';

/** Where a chain's next row goes: the hash it links to, and its rowid when SQLite's own choice would be wrong. */
export interface ChainTail {
  readonly hash: string;
  /** Set only when retention emptied the table: SQLite would start again at rowid 1, reusing pruned rowids. */
  readonly nextRowid: number | null;
}

/**
 * The hash a chain's next row links to: its last row's, or when retention has
 * emptied the table, the hash its latest anchor recorded. Read inside the
 * writing transaction, so a second process appending to the same file cannot
 * fork the chain.
 */
export class ChainTails {
  private readonly lastRow: Readonly<Record<ChainName, Database.Statement>>;
  private readonly lastAnchor: Database.Statement;

  constructor(db: Db) {
    this.lastRow = {
      usagelog: db.prepare('SELECT hash FROM usagelog ORDER BY rowid DESC LIMIT 1'),
      usagelog_outcome: db.prepare('SELECT hash FROM usagelog_outcome ORDER BY rowid DESC LIMIT 1'),
      audit_event: db.prepare('SELECT hash FROM audit_event ORDER BY rowid DESC LIMIT 1'),
    };
    this.lastAnchor = db.prepare('SELECT through_rowid, through_hash FROM audit_anchor WHERE chain = ? ORDER BY id DESC LIMIT 1');
  }

  tail(chain: ChainName): ChainTail {
    const last = this.lastRow[chain].get() as { hash: string | null } | undefined;
    if (last) return { hash: last.hash ?? GENESIS_HASH, nextRowid: null };
    const anchor = this.lastAnchor.get(chain) as { through_rowid: number; through_hash: string } | undefined;
    return anchor ? { hash: anchor.through_hash, nextRowid: anchor.through_rowid + 1 } : { hash: GENESIS_HASH, nextRowid: null };
  }
}
