import { parentPort, workerData } from 'node:worker_threads';
import { verifySnapshot, writeSnapshot } from './snapshot.js';

/** Runs in a worker thread (see backup.ts): copying and checking a large database takes seconds of synchronous SQLite work. */
const { source, target } = workerData as { source: string; target: string };
try {
  await writeSnapshot(source, target);
  verifySnapshot(target);
  parentPort!.postMessage({ ok: true });
} catch (err) {
  parentPort!.postMessage({ ok: false, message: err instanceof Error ? err.message : String(err), code: (err as { code?: string }).code ?? null });
}
