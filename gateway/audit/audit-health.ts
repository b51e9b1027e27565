import { statfsSync } from 'node:fs';
import path from 'node:path';
import type { AuditLog } from './audit-writer.js';
import { withBusyTimeout, type Db } from '../store/connection.js';
import type { StoreFile } from '../store/store-file.js';

/**
 * Whether the audit store can take a commit now, for `/readyz`: its path
 * still names the file that was opened and it is writable, the last commit
 * did not fail for want of disk space, and a probe transaction takes the
 * write lock. The probe is what a flag cannot show: a connection SQLite
 * opened read-only, or one that lost write access, fails it with
 * SQLITE_READONLY although no commit has failed yet. A success is kept for
 * `PROBE_CACHE_MS`, so a load balancer polling often costs one probe a second.
 */
export class AuditHealth {
  private cached: { readonly at: number; readonly failing: boolean; readonly writable: boolean } | null = null;

  constructor(
    private readonly db: Db,
    private readonly writer: Pick<AuditLog, 'failing' | 'failure'>,
    private readonly file: Pick<StoreFile, 'assertWritable' | 'path'>,
    private readonly now: () => number = Date.now,
  ) {}

  writable(): boolean {
    // The file check is one stat() and the free-space check only runs while failing: both stay live, only the probe is cached.
    try {
      this.file.assertWritable();
    } catch {
      return false;
    }
    const failing = this.writer.failing;
    // Taking the write lock writes nothing, so after a full disk it proves nothing: free space must be back.
    const code = failing ? (this.writer.failure as { code?: string } | null)?.code : undefined;
    if (code === 'SQLITE_FULL' && freeBytes(this.file.path) < MIN_FREE_BYTES) return false;
    // A probe on this connection cannot see the writer's thread: until a commit on its next thread succeeds, it is not ready.
    if (code === 'audit_writer_thread_died') return false;
    const now = this.now();
    // A commit that failed or recovered since the last probe makes its answer stale. Only a success is kept:
    // a healthy gateway's probes are what cost the writer, and an unhealthy one should say it recovered at once.
    const last = this.cached;
    if (last && last.writable && last.failing === failing && now >= last.at && now - last.at < PROBE_CACHE_MS) return true;
    const writable = this.probe();
    this.cached = { at: now, failing, writable };
    return writable;
  }

  private probe(): boolean {
    // A transaction open on this connection is the writer's (on the event loop) or a prune batch's: the store is taking writes.
    if (this.db.inTransaction) return true;
    // The connection never waits for a lock (app.ts); the probe may, briefly, or a checkpoint or a cleanup-logs batch would fail it.
    return withBusyTimeout(this.db, PROBE_WAIT_MS, () => {
      try {
        this.db.exec('BEGIN IMMEDIATE; ROLLBACK;');
        return true;
      } catch (err) {
        if (this.db.inTransaction) this.db.exec('ROLLBACK');
        // Another connection holds the write lock (the writer's thread mid-commit, a checkpoint): that proves
        // nothing either way, and a lock held too long fails the writer's own commits, which `failing` shows.
        return ((err as { code?: string }).code?.startsWith('SQLITE_BUSY') ?? false) && !this.writer.failing;
      }
    });
  }
}

/** How long a probe's answer stands: readiness a second old is fresh enough for a load balancer. */
export const PROBE_CACHE_MS = 1000;

const PROBE_WAIT_MS = 5;

/** Room for a few group commits and a checkpoint's WAL growth. */
const MIN_FREE_BYTES = 1024 * 1024;

function freeBytes(file: string): number {
  try {
    const fs = statfsSync(path.dirname(file));
    return fs.bavail * fs.bsize;
  } catch {
    return 0;
  }
}
