import { STATUS_CODES, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { GatewayError } from '../errors/catalogue.js';

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: OutgoingHttpHeaders = {}): void {
  // A client that is gone cannot be answered; a response already under way can only be broken off.
  if (res.destroyed) return;
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const payload = JSON.stringify(body);
  res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) });
  res.end(payload);
}

/** Every refusal goes out in the OpenAI error shape with its catalogue status. */
export function sendError(res: ServerResponse, err: GatewayError, headers: OutgoingHttpHeaders = {}): void {
  sendJson(res, err.status, err.toBody(), headers);
}

/**
 * Answers on a bare socket, in the OpenAI error shape, and closes it: for
 * handshakes that will not be upgraded and requests Node could not parse.
 */
export function answerSocket(socket: Duplex, err: GatewayError, requestId: string, headers: OutgoingHttpHeaders = {}, options: { head?: boolean } = {}): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const body = JSON.stringify(err.toBody());
  const extra = Object.entries(headers).map(([name, value]) => `${name}: ${String(value)}\r\n`).join('');
  // A response to HEAD has the headers of the answer and no body.
  socket.end(
    `HTTP/1.1 ${err.status} ${STATUS_CODES[err.status]}\r\n` +
      `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
      `x-request-id: ${requestId}\r\n${extra}connection: close\r\n\r\n${options.head ? '' : body}`,
  );
}
