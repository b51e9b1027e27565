import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';

/** `audit-2026-11-27T030000Z.db`, UTC; a second snapshot in the same second gets milliseconds. */
const SNAPSHOT_FILE = /^audit-(\d{4})-(\d{2})-(\d{2})T(\d{2})(\d{2})(\d{2})(?:\.(\d{3}))?Z\.db$/;

/**
 * Loads snapshot-worker in a thread, from the sources (through tsx, as in
 * tests and `npm run bench`) or from the build. A worker does not inherit the
 * parent's TypeScript loader, so it registers tsx itself when given one.
 */
const BOOTSTRAP = `
const { workerData } = require('node:worker_threads');
(async () => {
  if (workerData.tsx) (await import(workerData.tsx)).register();
  await import(workerData.module);
})();
`;
const FROM_SOURCES = import.meta.url.endsWith('.ts');
const WORKER_MODULE = new URL(FROM_SOURCES ? './snapshot-worker.ts' : './snapshot-worker.js', import.meta.url).href;

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
    await inWorker(source, partial, options.signal);
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

/** Aborting terminates the thread: a gateway shutting down does not wait for a snapshot of a large file. */
function inWorker(source: string, target: string, signal: AbortSignal | undefined): Promise<void> {
  signal?.throwIfAborted();
  const tsx = FROM_SOURCES ? import.meta.resolve('tsx/esm/api') : null;
  const worker = new Worker(BOOTSTRAP, { eval: true, workerData: { source, target, tsx, module: WORKER_MODULE } });
  const abort = () => void worker.terminate();
  signal?.addEventListener('abort', abort, { once: true });
  void new Promise((resolve) => worker.once('exit', resolve)).then(() => signal?.removeEventListener('abort', abort));
  return new Promise<void>((resolve, reject) => {
    let answered = false;
    worker.once('message', (m: { ok: boolean; message?: string; code?: string | null }) => {
      answered = true;
      if (m.ok) resolve();
      else reject(Object.assign(new Error(m.message ?? 'backup failed'), m.code ? { code: m.code } : {}));
    });
    worker.once('error', reject);
    worker.once('exit', (code) => {
      if (!answered) reject(new Error(`the backup thread exited (${code}) before finishing`));
    });
  });
}
