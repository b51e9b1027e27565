import type { IncomingMessage } from 'node:http';
import { GatewayError } from '../errors/catalogue.js';

export class ClientGoneError extends Error {
  constructor() {
    super('client went away before sending the whole body');
  }
}

/**
 * Reads the whole body into one buffer: the policy must see exactly the bytes
 * that will be forwarded. Refuses at once when the declared or received size
 * passes the limit, without buffering the excess.
 */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) {
    return Promise.reject(tooLarge(limit));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onGone);
      req.off('aborted', onGone);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        cleanup();
        req.pause();
        reject(tooLarge(limit));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
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

function tooLarge(limit: number): GatewayError {
  return new GatewayError('request_too_large', `request body is larger than the gateway's limit of ${limit} bytes`);
}
