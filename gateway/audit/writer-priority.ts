/**
 * SQLite's write lock is not fair: a thread that deletes batch after batch
 * takes it again microseconds after releasing it, while the gateway's audit
 * writer, which retries every 2 ms from the event loop, keeps finding it
 * taken (measured: commits waiting up to 100 ms behind 2 ms batches). The
 * writer raises this flag, in memory shared with the retention thread, while
 * it waits; the thread lets it through before taking the lock again.
 */
export class WriterPriority {
  readonly buffer = new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT);
  private readonly flag = new Int32Array(this.buffer);

  /** The audit writer found the write lock taken and will retry. */
  waiting(): void {
    Atomics.store(this.flag, 0, 1);
  }

  /** The audit writer is through (committed or gave up). */
  done(): void {
    if (Atomics.exchange(this.flag, 0, 0) === 1) Atomics.notify(this.flag, 0);
  }
}

/**
 * In a background thread, before taking the write lock: waits while the
 * gateway's writer is waiting, at most `maxMs` (a writer that cannot commit
 * for other reasons must not stop the background work for good).
 */
export function yieldToWriter(buffer: SharedArrayBuffer, maxMs: number): void {
  Atomics.wait(new Int32Array(buffer), 0, 1, maxMs);
}
