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
    const child = spawn('sqlite3', [dbPath], { stdio: ['pipe', 'pipe', 'pipe'] });
    child.stdout.resume();
    child.stderr.resume();
    // Without a busy timeout, BEGIN IMMEDIATE fails at once if it lands while the probe below holds the lock,
    // and sqlite3 then never holds it: wait for the lock instead.
    child.stdin.write('.timeout 5000\nBEGIN IMMEDIATE;\n');
    const lock = new WriteLock(child);
    try {
      await lock.waitUntilHeld(dbPath);
    } catch (err) {
      lock.kill();
      throw err;
    }
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
