import Database from 'better-sqlite3';
import { verifyAuditChain } from './verify-chain.js';

/** One step for the whole copy: a stepped backup restarts whenever the gateway commits in between. */
const ALL_PAGES = 2 ** 31 - 1;

/**
 * Copies the live audit database into `target` with SQLite's online backup
 * API, from a connection of its own: the copy is one read transaction, so it
 * is a consistent snapshot while the gateway keeps committing in WAL mode.
 * The snapshot is switched to a rollback journal so it is one self-contained file.
 */
export async function writeSnapshot(source: string, target: string): Promise<void> {
  const db = new Database(source, { readonly: true, fileMustExist: true });
  try {
    await db.backup(target, { progress: () => ALL_PAGES });
  } finally {
    db.close();
  }
  const copy = new Database(target, { fileMustExist: true });
  try {
    copy.pragma('journal_mode = DELETE');
  } finally {
    copy.close();
  }
}

/** Throws unless the snapshot at `file` is intact: SQLite's integrity_check, then both hash chains. */
export function verifySnapshot(file: string): void {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    const problems = (db.pragma('integrity_check') as { integrity_check: string }[]).map((r) => r.integrity_check);
    if (problems.length !== 1 || problems[0] !== 'ok') {
      throw new Error(`snapshot ${file} failed integrity_check: ${problems.slice(0, 3).join('; ')}`);
    }
    const chain = verifyAuditChain(db);
    if (!chain.ok) {
      const { chain: table, rowid, problem } = chain.broken;
      throw new Error(`snapshot ${file} failed the audit chain check: ${table} row ${rowid} ${problem}`);
    }
  } finally {
    db.close();
  }
}
