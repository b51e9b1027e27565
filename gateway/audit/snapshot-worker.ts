import { parentPort, workerData } from 'node:worker_threads';
import { failureAnswer, type WorkerAnswer } from './module-worker.js';
import { verifySnapshot, writeSnapshot } from './snapshot.js';

/** Runs in a worker thread (see backup.ts): copying and checking a large database takes seconds of synchronous SQLite work. */
const { source, target } = workerData as { source: string; target: string };
try {
  await writeSnapshot(source, target);
  verifySnapshot(target);
  parentPort!.postMessage({ ok: true, result: null } satisfies WorkerAnswer<null>);
} catch (err) {
  parentPort!.postMessage(failureAnswer(err));
}
