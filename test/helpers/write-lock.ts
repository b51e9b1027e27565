import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import Database from 'better-sqlite3';

/**
 * Another process holding the audit database's write lock, the way an admin's
 * `sqlite3` session with an open transaction would.
 */
export class WriteLock {
  private constructor(private readonly child: ChildProcessWithoutNullStreams) {}

  static async take(dbPath: string): Promise<WriteLock> {
    // With a busy timeout, as an admin's session should have: the gateway's own commits hold the lock for moments.
    const child = spawn('sqlite3', ['-cmd', '.timeout 5000', dbPath], { stdio: ['pipe', 'pipe', 'pipe'] });
    child.stdout.resume();
    child.stderr.resume();
    child.stdin.write('BEGIN IMMEDIATE;\n');
    const lock = new WriteLock(child);
    await lock.waitUntilHeld(dbPath);
    return lock;
  }

  /** A probe that cannot take the write lock without waiting proves the CLI holds it. */
  private async waitUntilHeld(dbPath: string): Promise<void> {
    const probe = new Database(dbPath);
    probe.pragma('busy_timeout = 0');
    try {
      const deadline = Date.now() + 5000;
      for (;;) {
        try {
          probe.exec('BEGIN IMMEDIATE; ROLLBACK;');
        } catch (err) {
          if ((err as { code?: string }).code === 'SQLITE_BUSY') return;
          throw err;
        }
        if (this.child.exitCode !== null) throw new Error('sqlite3 exited before taking the lock');
        if (Date.now() > deadline) throw new Error('sqlite3 did not take the write lock');
        await new Promise((r) => setTimeout(r, 20));
      }
    } finally {
      probe.close();
    }
  }

  async release(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = once(this.child, 'exit');
    this.child.stdin.end('ROLLBACK;\n');
    await exited;
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}
