import pino, { type Logger } from 'pino';
import type { LogLevel } from '../config/gateway-config.js';

export type { Logger };

/**
 * Bytes of log lines that may wait for stdout. Without a bound a consumer
 * that stops reading (a paused terminal, a stuck log shipper) makes every
 * request leave ~350 bytes behind until the heap runs out. 4 MiB is about
 * 12,000 request lines, a few seconds of a busy gateway's logs, so a reader
 * that only hiccups loses nothing, while a stalled one costs a few MiB of heap.
 */
export const STDOUT_MAX_BUFFERED_BYTES = 4 * 1024 * 1024;

/** Per process, like stdout itself: /metrics reads it through logLinesDropped. */
let droppedTotal = 0;

/** Lines the stdout logger dropped because stdout was not being read, since the process started. */
export function logLinesDropped(): number {
  return droppedTotal;
}

/**
 * JSON lines on stdout, written asynchronously and in blocks of 4 KiB so a
 * slow terminal or pipe never stalls a request and a busy gateway makes one
 * write per block, not per line (the buffer is flushed at shutdown). A reader
 * that stops reading costs at most STDOUT_MAX_BUFFERED_BYTES: later lines are
 * dropped, counted, and owned up to once it reads again. Callers log ids,
 * names, counts and timings only: headers, bodies and keys are never handed
 * to the logger, so nothing needs redacting on the hot path.
 */
export function createLogger(level: LogLevel, destination?: pino.DestinationStream): Logger {
  const options = { level, base: { service: 'govgate' }, timestamp: pino.stdTimeFunctions.isoTime };
  if (destination) return pino(options, destination);
  const stdout = pino.destination({ sync: false, minLength: 4096, maxLength: STDOUT_MAX_BUFFERED_BYTES });
  const logger = pino(options, stdout);
  let droppedInStall = 0;
  // sonic-boom emits 'drop' once per refused write, and pino writes one line per call.
  stdout.on('drop', () => {
    droppedTotal++;
    droppedInStall++;
  });
  // 'drain' means the reader caught up with the buffer: the stall is over, so it is said once, not per line.
  stdout.on('drain', () => {
    if (droppedInStall === 0) return;
    const dropped = droppedInStall;
    droppedInStall = 0;
    logger.warn({ dropped_lines: dropped }, `${dropped} log lines dropped while stdout was not being read`);
    // Below minLength the notice would wait for the next 4 KiB of lines, on a quiet gateway indefinitely.
    stdout.flush();
  });
  return logger;
}
