import { Worker } from 'node:worker_threads';

/**
 * Loads a worker module of this folder in a thread, from the sources (through
 * tsx, as in tests and `npm run bench`) or from the build. A worker does not
 * inherit the parent's TypeScript loader, so it registers tsx itself when
 * given one.
 */
const BOOTSTRAP = `
const { workerData } = require('node:worker_threads');
(async () => {
  if (workerData.tsx) (await import(workerData.tsx)).register();
  await import(workerData.module);
})();
`;
const FROM_SOURCES = import.meta.url.endsWith('.ts');

/** What a worker module posts once, when it is done. */
export type WorkerAnswer<T> = { readonly ok: true; readonly result: T } | { readonly ok: false; readonly message: string; readonly code: string | null };

/** Starts `name` (a module of this folder, e.g. 'checkpoint-worker') in a thread with `data` as its workerData. */
export function startModuleWorker(name: string, data: Record<string, unknown>): Worker {
  const module = new URL(`./${name}${FROM_SOURCES ? '.ts' : '.js'}`, import.meta.url).href;
  const tsx = FROM_SOURCES ? import.meta.resolve('tsx/esm/api') : null;
  return new Worker(BOOTSTRAP, { eval: true, workerData: { ...data, tsx, module } });
}

/**
 * Runs `name` (e.g. 'snapshot-worker') with `data` as its workerData and
 * resolves with the result it posts. Aborting terminates the thread: a
 * gateway shutting down does not wait for background work.
 */
export function runInWorker<T>(name: string, data: Record<string, unknown>, what: string, signal?: AbortSignal): Promise<T> {
  signal?.throwIfAborted();
  const worker = startModuleWorker(name, data);
  const abort = () => void worker.terminate();
  signal?.addEventListener('abort', abort, { once: true });
  void new Promise((resolve) => worker.once('exit', resolve)).then(() => signal?.removeEventListener('abort', abort));
  return new Promise<T>((resolve, reject) => {
    let answered = false;
    worker.once('message', (m: WorkerAnswer<T>) => {
      answered = true;
      if (m.ok) resolve(m.result);
      else reject(Object.assign(new Error(m.message), m.code ? { code: m.code } : {}));
    });
    worker.once('error', reject);
    worker.once('exit', (code) => {
      if (!answered) reject(new Error(`the ${what} thread exited (${code}) before finishing`));
    });
  });
}

/** The answer a worker module posts for an error. */
export function failureAnswer(err: unknown): WorkerAnswer<never> {
  return { ok: false, message: err instanceof Error ? err.message : String(err), code: (err as { code?: string }).code ?? null };
}
