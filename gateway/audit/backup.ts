import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { runInWorker } from './module-worker.js';

/** `audit-2026-11-27T030000Z.db`, UTC; a second snapshot in the same second gets milliseconds. */
const SNAPSHOT_FILE = /^audit-(\d{4})-(\d{2})-(\d{2})T(\d{2})(\d{2})(\d{2})(?:\.(\d{3}))?Z\.db$/;

export interface BackupResult {
  readonly file: string;
  readonly bytes: number;
  readonly ms: number;
  /** Older snapshots deleted to keep `keep`. */
  readonly deleted: readonly string[];
}

export function snapshotName(at: Date, withMillis = false): string {
  const iso = at.toISOString();
  const time = `${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}${withMillis ? iso.slice(19, 23) : ''}`;
  return `audit-${iso.slice(0, 10)}T${time}Z.db`;
}

/**
 * Writes a verified snapshot of the audit database into `dir` and keeps the
 * newest `keep`. The copy and its check run in a worker thread, so the
 * gateway's event loop keeps serving; the snapshot appears under its final
 * name only once it passed the check.
 */
export async function backupAuditDatabase(source: string, dir: string, keep: number, options: { now?: Date; signal?: AbortSignal } = {}): Promise<BackupResult> {
  const now = options.now ?? new Date();
  if (!existsSync(source)) throw new Error(`no audit database at ${source}`);
  const started = performance.now();
  mkdirSync(dir, { recursive: true });
  let name = snapshotName(now);
  if (existsSync(path.join(dir, name))) name = snapshotName(now, true);
  const file = path.join(dir, name);
  const partial = path.join(dir, `.${name}.partial`);
  try {
    await runInWorker<null>('snapshot-worker', { source, target: partial }, 'backup', options.signal);
    renameSync(partial, file);
  } finally {
    rmSync(partial, { force: true });
  }
  const deleted = pruneSnapshots(dir, keep);
  return { file, bytes: statSync(file).size, ms: Math.round(performance.now() - started), deleted };
}

/** Deletes the oldest snapshots beyond `keep`; only files named like a snapshot are ever touched. */
export function pruneSnapshots(dir: string, keep: number): string[] {
  const snapshots = readdirSync(dir)
    .map((name) => ({ name, at: snapshotTime(name) }))
    .filter((s): s is { name: string; at: number } => s.at !== null)
    .sort((a, b) => b.at - a.at);
  const doomed = snapshots.slice(keep).map((s) => path.join(dir, s.name));
  for (const file of doomed) rmSync(file, { force: true });
  return doomed;
}

function snapshotTime(name: string): number | null {
  const m = SNAPSHOT_FILE.exec(name);
  if (!m) return null;
  const [, y, mo, d, h, mi, s, ms] = m;
  return Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s), Number(ms ?? 0));
}

