import pino, { type Logger } from 'pino';
import type { LogLevel } from '../config/gateway-config.js';

export type { Logger };

/**
 * JSON lines on stdout. Request logs carry ids, names, counts and timings only;
 * secrets and headers are redacted in case a caller ever passes them.
 */
export function createLogger(level: LogLevel, destination: pino.DestinationStream = pino.destination({ sync: false })): Logger {
  return pino(
    {
      level,
      base: { service: 'govgate' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: ['key', 'authorization', 'headers', '*.authorization', '*.headers', 'body', '*.body'], censor: '[redacted]' },
    },
    destination,
  );
}
