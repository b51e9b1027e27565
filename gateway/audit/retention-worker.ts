import { parentPort, workerData } from 'node:worker_threads';
import type { SyncMode } from '../config/gateway-config.js';
import { openDatabase } from './database.js';
import { failureAnswer, type WorkerAnswer } from './module-worker.js';
import { pruneAuditRows, type PruneResult } from './retention.js';

/**
 * Runs in a worker thread (see cleanup-schedule.ts) on its own connection:
 * a million expired rows are minutes of SQLite work that must not share the
 * event loop with requests. Each batch holds the write lock for about 2 ms;
 * this connection may wait for the gateway's commits, the gateway's never
 * waits long for it.
 */
const { file, days, synchronous, writerWaiting } = workerData as { file: string; days: number; synchronous: SyncMode; writerWaiting: SharedArrayBuffer };
const db = openDatabase(file, { synchronous, busyTimeoutMs: 1000 });
try {
  parentPort!.postMessage({ ok: true, result: await pruneAuditRows(db, days, { writerWaiting }) } satisfies WorkerAnswer<PruneResult>);
} catch (err) {
  parentPort!.postMessage(failureAnswer(err));
} finally {
  db.close();
}
