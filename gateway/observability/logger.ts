import pino, { type Logger } from 'pino';
import type { LogLevel } from '../config/gateway-config.js';

export type { Logger };

/**
 * JSON lines on stdout, written asynchronously and in blocks of 4 KiB so a
 * slow terminal or pipe never stalls a request and a busy gateway makes one
 * write per block, not per line (the buffer is flushed at shutdown). Callers log ids, names, counts and timings only:
 * headers, bodies and keys are never handed to the logger, so nothing needs
 * redacting on the hot path.
 */
export function createLogger(level: LogLevel, destination: pino.DestinationStream = pino.destination({ sync: false, minLength: 4096 })): Logger {
  return pino(
    {
      level,
      base: { service: 'govgate' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}
