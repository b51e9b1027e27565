import type Database from 'better-sqlite3';
import type { PrunedChain } from '../store/chain.js';
import type { Db } from '../store/connection.js';
import type { ShippedTableName } from './shipped-tables.js';

/** The random id this SQLite file got when it was created (store/schema.ts, `fleet_file`): what owns a gateway id centrally. */
export function localFileId(db: Db): string {
  const id = db.prepare('SELECT file_id FROM fleet_file WHERE singleton = 1').pluck().get() as string | undefined;
  if (id === undefined) throw new Error('the audit database has no fleet_file row');
  return id;
}

/**
 * How far each pruned chain has reached the fleet's PostgreSQL, as recorded
 * in this file: what retention may delete through in fleet mode. A chain
 * never shipped has nothing that may go. Read at each batch, on the
 * connection that prunes, so the gateway's prune and `cleanup-logs` agree.
 */
export function localShippedThrough(db: Db): (chain: PrunedChain) => number {
  const read = db.prepare('SELECT through_row_id FROM fleet_shipped WHERE table_name = ?').pluck();
  return (chain) => (read.get(chain) as number | undefined) ?? 0;
}

/**
 * Records locally what the central commit made durable. It is written on the
 * gateway's own connection, as retention is: the audit writer's when that
 * commits on the event loop; with the writer on its thread the two take turns
 * for the lock. The connection never waits for a lock (busy_timeout 0): a
 * busy write is retried on the next call. Behind the
 * central watermark is the safe side: retention then keeps rows a little longer.
 */
export class LocalWatermark {
  private readonly pending = new Map<ShippedTableName, number>();
  private readonly save: (entries: readonly (readonly [ShippedTableName, number])[]) => void;

  constructor(db: Db) {
    // max(): an older central watermark read after a restart must not move it back.
    const upsert: Database.Statement = db.prepare(
      'INSERT INTO fleet_shipped (table_name, through_row_id) VALUES (?, ?) ON CONFLICT (table_name) DO UPDATE SET through_row_id = max(through_row_id, excluded.through_row_id)',
    );
    this.save = db.transaction((entries: readonly (readonly [ShippedTableName, number])[]) => {
      for (const [table, rowId] of entries) upsert.run(table, rowId);
    });
  }

  set(table: ShippedTableName, rowId: number): void {
    this.pending.set(table, rowId);
  }

  /** Writes what is pending; false when the write lock was taken, and it stays pending. */
  flush(): boolean {
    if (this.pending.size === 0) return true;
    try {
      this.save([...this.pending]);
    } catch (err) {
      if ((err as { code?: string }).code?.startsWith('SQLITE_BUSY')) return false;
      throw err;
    }
    this.pending.clear();
    return true;
  }
}
