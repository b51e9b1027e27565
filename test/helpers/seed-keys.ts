import path from 'node:path';
import { openDatabase } from '../../gateway/store/connection.js';
import { createKey } from '../../gateway/auth/key-store.js';

/**
 * Creates keys in `dir`'s data/audit.db with the real key store before a child-process
 * gateway starts there, which is much faster than one `govgate keys create` per key.
 */
export function seedKeys(dir: string, customers: readonly string[]): { key: string; id: string; customer: string }[] {
  const db = openDatabase(path.join(dir, 'data/audit.db'), { synchronous: 'NORMAL' });
  try {
    return customers.map((customer) => {
      const created = createKey(db, customer, null);
      return { key: created.key, id: created.id, customer };
    });
  } finally {
    db.close();
  }
}
