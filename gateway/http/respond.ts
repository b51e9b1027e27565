import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { AuthenticationError } from '../auth/authenticate.js';
import type { GatewayError } from '../errors/catalogue.js';
import type { GatewayContext } from './context.js';

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: OutgoingHttpHeaders = {}): void {
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

/** The 401 answer: reported (rate-limited, without the key) and logged, then sent. Rethrows anything else. */
export function refuseUnauthenticated(ctx: GatewayContext, res: ServerResponse, err: unknown, requestId: string): void {
  if (!(err instanceof AuthenticationError)) throw err;
  ctx.reporter.authFailure(err.failure);
  ctx.metrics.authFailure(err.failure);
  ctx.logger.info({ req_id: requestId, status: 401, error: err.code, failure: err.failure }, 'request refused');
  sendError(res, err);
}
