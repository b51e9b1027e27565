import type Database from 'better-sqlite3';
import { GENESIS_HASH, type ChainName } from './chain.js';
import type { Db } from './database.js';

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
      usagelog: db.prepare('SELECT hash FROM usagelog ORDER BY rowid DESC LIMIT 1').pluck(),
      usagelog_outcome: db.prepare('SELECT hash FROM usagelog_outcome ORDER BY rowid DESC LIMIT 1').pluck(),
    };
    this.lastAnchor = db.prepare('SELECT through_hash FROM audit_anchor WHERE chain = ? ORDER BY id DESC LIMIT 1').pluck();
  }

  tail(chain: ChainName): string {
    return (this.lastRow[chain].get() as string | undefined) ?? (this.lastAnchor.get(chain) as string | undefined) ?? GENESIS_HASH;
  }
}
