import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

/**
 * Runs in a worker thread: checkpoints the audit database's WAL on its own
 * connection, so the fsyncs a checkpoint needs never block the event loop
 * that serves requests. PASSIVE never waits for readers or the writer.
 */
export interface CheckpointWorkerData {
  readonly file: string;
  readonly intervalMs: number;
}

const { file, intervalMs } = workerData as CheckpointWorkerData;
const db = new Database(file, { fileMustExist: true });
db.pragma('busy_timeout = 0');

function checkpoint(): void {
  try {
    const [result] = db.pragma('wal_checkpoint(PASSIVE)') as { busy: number; log: number; checkpointed: number }[];
    parentPort!.postMessage({ type: 'checkpoint', log: result?.log ?? 0, checkpointed: result?.checkpointed ?? 0 });
  } catch (err) {
    parentPort!.postMessage({ type: 'error', code: (err as { code?: string }).code ?? 'unknown' });
  }
}

const timer = setInterval(checkpoint, intervalMs);
parentPort!.on('message', (message: unknown) => {
  if (message !== 'stop') return;
  clearInterval(timer);
  checkpoint();
  db.close();
  parentPort!.close();
});
