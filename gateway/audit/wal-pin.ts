import Database from 'better-sqlite3';

/**
 * A read transaction the checkpointer keeps open on the WAL between its
 * ticks, so that the gateway's commits never start the WAL over.
 *
 * A writer that finds every frame of the WAL copied back, and no reader on
 * it, starts the WAL again from its beginning, and the first commit into a
 * restarted WAL writes its header and syncs it (SQLite does, at any
 * `synchronous` but OFF, so that a power loss cannot mix old frames with new).
 * On the gateway that commit is a decision's, which a request waits for: every
 * pause long enough for one tick to copy everything back cost the next request
 * an fsync (0.6 to 3.4 ms under strace here, docs/design/audit-writer.md,
 * "The WAL is started over by the checkpointer only").
 *
 * Taken just before each copy, while the WAL holds frames not copied yet, the
 * pin is a reader on the WAL's last frame: the copy stops there, and a writer
 * that comes after it appends instead of starting over. The WAL is started
 * over only by the checkpointer's resets and escalations, which release the
 * pin first.
 */
export class WalPin {
  private readonly db: Database.Database;
  private readonly read: Database.Statement;
  private held = false;

  constructor(file: string) {
    this.db = new Database(file, { fileMustExist: true });
    this.db.pragma('query_only = ON');
    // Taking a read transaction never waits in WAL mode but while another connection recovers the WAL: not worth sleeping for.
    this.db.pragma('busy_timeout = 0');
    this.read = this.db.prepare('SELECT 1 FROM sqlite_schema LIMIT 1');
  }

  /** Ends the pin, and takes it again at the WAL's current end. */
  renew(): void {
    this.release();
    this.db.exec('BEGIN');
    try {
      this.read.get();
    } catch (err) {
      this.db.exec('ROLLBACK');
      throw err;
    }
    this.held = true;
  }

  release(): void {
    if (!this.held) return;
    this.held = false;
    this.db.exec('COMMIT');
  }

  close(): void {
    this.release();
    this.db.close();
  }
}
