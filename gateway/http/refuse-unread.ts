import type { ServerResponse } from 'node:http';
import { GatewayError } from '../errors/catalogue.js';
import type { GatewayContext } from './context.js';
import { recordRefusal, refusalHeaders, type GovernInput } from './govern.js';
import { observeRequest } from './observe-request.js';
import { ClientGoneError } from './read-body.js';
import { sendError } from './respond.js';

/**
 * Refuses an authenticated request whose input could not be read (bad body,
 * bad metadata, too large, never arrived in full) before the policy ran. It
 * still leaves its audit row. Anything that is not a refusal is rethrown.
 */
export async function refuseUnread(ctx: GatewayContext, res: ServerResponse, input: GovernInput, caught: unknown, started: number): Promise<void> {
  // The client hung up or outstayed request_timeout_ms mid-body: nobody may be listening, but the row is owed.
  const err = caught instanceof ClientGoneError
    ? new GatewayError('request_timeout', 'the request body did not arrive in full (the client disconnected or took longer than server.request_timeout_ms)')
    : caught;
  if (!(err instanceof GatewayError)) throw err;
  const logId = await recordRefusal(ctx, input, err);
  // An oversized body is left unread: closing the connection is the only way to stop it.
  if (err.code === 'request_too_large') res.setHeader('connection', 'close');
  sendError(res, err, refusalHeaders(logId));
  observeRequest(ctx, res, { requestId: input.requestId, key: input.key, operation: input.operation, model: input.model, started, error: err.code });
}
