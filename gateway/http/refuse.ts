import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { AuthenticationError } from '../auth/authenticate.js';
import type { ApiKeyRecord } from '../auth/key-store.js';
import { GatewayError } from '../errors/catalogue.js';
import { applicableLimits } from '../policy/applicable-limits.js';
import type { GatewayContext } from './context.js';
import { recordRefusal, refusalHeaders, type GovernInput } from './govern.js';
import { observeRequest } from './observe-request.js';
import { BodyTooLargeError, ClientGoneError } from './read-body.js';
import { answerSocket, sendError } from './respond.js';

/** Where a refusal goes: an HTTP response, or the bare socket of a WebSocket handshake. */
export interface Answer {
  send(err: GatewayError, headers: OutgoingHttpHeaders): void;
  /** The status sent, for the log line and the metrics. */
  readonly status: number;
}

export function responseAnswer(res: ServerResponse): Answer {
  return {
    send: (err, headers) => sendError(res, err, headers),
    get status() {
      return res.statusCode;
    },
  };
}

export function socketAnswer(socket: Duplex, requestId: string): Answer {
  let status = 0;
  return {
    send(err, headers) {
      status = err.status;
      answerSocket(socket, err, requestId, headers);
    },
    get status() {
      return status;
    },
  };
}

/** One request on its way in: what every stage needs to answer it. */
export interface Arrival {
  readonly requestId: string;
  readonly started: number;
  readonly answer: Answer;
}

/**
 * What became of the refused request's audit row: written by the decision
 * (`written`), to be written now (`write`: refused before the policy ran), or
 * impossible (`failed`: the audit log cannot be written).
 */
export type RefusalRow = { readonly row: 'written'; readonly headers: OutgoingHttpHeaders } | { readonly row: 'write'; readonly input: GovernInput } | { readonly row: 'failed' };

/** Headers of a request refused because its row could not be written: it has no log id to show. */
const AUDIT_FAILURE_HEADERS: OutgoingHttpHeaders = Object.freeze({ 'x-governance-decision': 'block' });

/**
 * The one way out for an authenticated request that is not served: its row
 * (written once), its count against the key's limits, the answer, the
 * report of a server-side failure, one log line and one metrics sample.
 */
export async function refuse(ctx: GatewayContext, at: Arrival, key: ApiKeyRecord, caught: unknown, refusal: RefusalRow, model: string | null, operation: string): Promise<void> {
  const error = asGatewayError(caught);
  let headers: OutgoingHttpHeaders;
  if (refusal.row === 'write') {
    headers = refusalHeaders(await recordRefusal(ctx, refusal.input, error));
    ctx.limiter.charge(applicableLimits(ctx.policy.policy, key.customer_id, key.id));
  } else {
    headers = refusal.row === 'written' ? refusal.headers : AUDIT_FAILURE_HEADERS;
  }
  // A body left unread (too large to drain, or cut off) would be taken for the next request on this connection.
  if ((error instanceof BodyTooLargeError && !error.drained) || caught instanceof ClientGoneError) headers = { ...headers, connection: 'close' };
  at.answer.send(error, headers);
  if (error.status >= 500) ctx.reporter.serverError(error.code, error.status, at.requestId);
  observeRequest(ctx, at.answer.status, { requestId: at.requestId, key, operation, model, started: at.started, error: error.code });
}

/** The 401 answer: reported (rate-limited, without the key), counted and logged; anything else is rethrown. */
export function refuseUnauthenticated(ctx: GatewayContext, at: Arrival, err: unknown): void {
  if (!(err instanceof AuthenticationError)) throw err;
  ctx.reporter.authFailure(err.failure);
  ctx.metrics.authFailure(err.failure);
  ctx.logger.info({ req_id: at.requestId, status: 401, error: err.code, failure: err.failure }, 'request refused');
  at.answer.send(err, {});
}

/** A request that never arrived in full is a timeout to its row; anything that is not a refusal is a bug and rethrown. */
function asGatewayError(caught: unknown): GatewayError {
  if (caught instanceof ClientGoneError) {
    return new GatewayError('request_timeout', 'the request body did not arrive in full (the client disconnected or took longer than server.request_timeout_ms)');
  }
  if (caught instanceof GatewayError) return caught;
  throw caught;
}
