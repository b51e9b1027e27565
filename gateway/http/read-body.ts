import type { IncomingMessage } from 'node:http';
import { GatewayError } from '../errors/catalogue.js';

export class ClientGoneError extends Error {
  constructor() {
    super('client went away before sending the whole body');
  }
}

/** A body over its limit; `drained` when the client finished sending, so the connection can still carry the answer. */
export class BodyTooLargeError extends GatewayError {
  constructor(limit: number, setting: string, readonly drained: boolean) {
    super('request_too_large', `request body is larger than the gateway's limit of ${limit} bytes (raise ${setting} in gateway.yaml to accept it)`);
  }
}

/**
 * A client that is refused mid-upload is read to the end, within these bounds,
 * before it is answered: SDKs that are still sending when the connection
 * closes report a network error (EPIPE) and retry, instead of the 413.
 */
const DRAIN_MAX_BYTES = 64 * 1024 * 1024;
const DRAIN_MAX_MS = 5000;

/**
 * Reads the whole body into one buffer: the policy must see exactly the bytes
 * that will be forwarded. Past `limit` nothing more is kept.
 */
export function readBody(req: IncomingMessage, limit: number, setting: string): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit + DRAIN_MAX_BYTES) return Promise.reject(new BodyTooLargeError(limit, setting, false));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let drainTimer: NodeJS.Timeout | null = null;
    const cleanup = () => {
      if (drainTimer) clearTimeout(drainTimer);
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onGone);
      req.off('aborted', onGone);
    };
    const stopDraining = () => {
      cleanup();
      req.pause();
      reject(new BodyTooLargeError(limit, setting, false));
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) {
        chunks.push(chunk);
        return;
      }
      if (drainTimer === null) {
        chunks.length = 0;
        drainTimer = setTimeout(stopDraining, DRAIN_MAX_MS);
      }
      if (size > limit + DRAIN_MAX_BYTES) stopDraining();
    };
    const onEnd = () => {
      cleanup();
      if (size > limit) reject(new BodyTooLargeError(limit, setting, true));
      else resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    };
    const onGone = () => {
      cleanup();
      reject(new ClientGoneError());
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onGone);
    req.on('aborted', onGone);
  });
}
