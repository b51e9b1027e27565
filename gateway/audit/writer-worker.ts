import { parentPort, workerData } from 'node:worker_threads';
import { openDatabase } from '../store/connection.js';
import { StoreFile } from '../store/store-file.js';
import { AuditWriter } from './audit-writer.js';
import { toWire, type FromWriter, type ToWriter, type WriterWorkerData } from './writer-protocol.js';

/**
 * Runs in the thread AuditWriterThread starts: the audit writer, on a
 * connection of its own, committing what the gateway's event loop sends.
 * Outcomes are committed as they come (the gateway already batched them);
 * decisions as the AuditWriter always did, a group per turn. Replies are
 * gathered over a turn and posted once, so a busy gateway gets one message
 * per group commit, not one per request.
 */
const data = workerData as WriterWorkerData;
const port = parentPort!;
// The gateway never waits on SQLite's busy handler, which sleeps: the writer retries asynchronously (AuditWriter).
const db = openDatabase(data.file, { synchronous: data.synchronous, checkpointsElsewhere: true, busyTimeoutMs: 0, mustExist: true });

type Done = Extract<FromWriter, { t: 'done' }>;
const empty = (): Done => ({ t: 'done', acks: [], refusals: [], commits: [], queued: 0 });
let outbox = empty();
let sendScheduled = false;

function send(): void {
  sendScheduled = false;
  const message = outbox;
  outbox = empty();
  // Decisions and control events are counted by the gateway until acknowledged; these are what only the thread holds.
  message.queued = writer.queuedOutcomes;
  port.postMessage(message);
}

function reply(fill: (o: Done) => void): void {
  fill(outbox);
  if (!sendScheduled) {
    sendScheduled = true;
    setImmediate(send);
  }
}

const writer = new AuditWriter(db, new StoreFile(data.file, data.identity), {
  onCommit(ms, waitedMs) {
    reply((o) => o.commits.push({ ok: true, ms, waitedMs }));
  },
  onFailure(err, lostOutcomes) {
    reply((o) => o.commits.push({ ok: false, error: toWire(err), lostOutcomes }));
  },
}, 0);

port.on('message', (m: ToWriter) => {
  switch (m.t) {
    case 'rows': {
      for (const c of m.control) writer.recordControl(c.event, c.policy);
      // Control events commit with the decisions' group: a message with either is acknowledged when it commits.
      if (m.seq !== 0) {
        const seq = m.seq;
        writer.recordAll(m.decisions).then(
          () => reply((o) => o.acks.push(seq)),
          (err: unknown) => reply((o) => o.refusals.push({ seq, error: toWire(err) })),
        );
      }
      for (const o of m.outcomes) writer.recordOutcome(o);
      for (const f of m.batchFiles) writer.recordBatchFile(f);
      return;
    }
    case 'checkpoint-inline':
      // The checkpoint thread died: without checkpoints the WAL would grow for ever; inline ones are slower but bounded.
      db.pragma('wal_autocheckpoint = 1000');
      return;
    case 'flush':
      // Commits synchronously; the promise only says so.
      void writer.close(m.busyTimeoutMs);
      // After the acknowledgements, which settle in the microtasks after the commit.
      setImmediate(() => {
        send();
        db.close();
        port.postMessage({ t: 'flushed' } satisfies FromWriter);
      });
      return;
  }
});
