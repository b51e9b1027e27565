import type { IncomingHttpHeaders, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import { GatewayError } from '../errors/catalogue.js';
import { downstreamResponseHeaders } from './forwarded-headers.js';
import type { Provider } from './provider-router.js';
import { UsageEventFilter } from './stream-usage.js';
import { UsageTap, type TokenUsage } from './usage-tap.js';

export type ForwardErrorKind = 'client_abort' | 'upstream_unavailable' | 'upstream_timeout' | 'upstream_reset' | 'upstream_idle_timeout' | 'overloaded';

export interface ForwardOutcome {
  readonly status: number | null;
  /** From dispatch to the end of the response. */
  readonly upstreamMs: number;
  readonly usage: TokenUsage | null;
  readonly error: ForwardErrorKind | null;
  /** Set when the failure was answered with a gateway error (nothing had been sent yet). */
  readonly answeredWith: GatewayError | null;
}

export interface ForwardRequest {
  readonly provider: Provider;
  readonly method: Dispatcher.HttpMethod;
  /** Path and query on the provider, already joined with its base path. */
  readonly path: string;
  readonly headers: Record<string, string | string[]>;
  readonly body: Buffer | null;
  /** The gateway's headers for the client's response (request id, decision …). */
  readonly ownHeaders: OutgoingHttpHeaders;
  /** Set when the gateway asked for stream usage the client did not: the usage events are kept from the client. */
  readonly stripUsage?: boolean;
  /**
   * Called with the provider's JSON answer (when it is a small JSON object; else
   * null) before the client's response ends, so what it records is in place
   * before the client can act on the answer.
   */
  readonly beforeEnd?: (json: Readonly<Record<string, unknown>> | null) => void;
}

/** Answers read for `beforeEnd` are file objects and the like; a larger one is not read. */
const CAPTURE_MAX_BYTES = 64 * 1024;

class ClientAbort extends Error {
  constructor() {
    super('client closed the connection');
  }
}

/**
 * Forwards one request with undici's dispatcher and relays the response as it
 * arrives: each chunk is written to the client as soon as the provider sends
 * it (SSE included), with backpressure from the client pausing the upstream.
 * A client that goes away aborts the upstream request.
 */
export function forwardRequest(request: ForwardRequest, res: ServerResponse): Promise<ForwardOutcome> {
  const started = performance.now();
  return new Promise((resolve) => {
    let controller: Dispatcher.DispatchController | null = null;
    let status: number | null = null;
    let tap: UsageTap | null = null;
    let filter: UsageEventFilter | null = null;
    let captured: Buffer[] | null = null;
    let capturedBytes = 0;
    let settled = false;
    let retriesLeft = request.provider.config.retries;

    const finish = (error: ForwardErrorKind | null, answeredWith: GatewayError | null = null) => {
      if (settled) return;
      settled = true;
      res.off('close', onClientClose);
      resolve({ status, upstreamMs: performance.now() - started, usage: tap?.usage() ?? null, error, answeredWith });
    };
    const onClientClose = () => {
      if (!res.writableFinished) controller?.abort(new ClientAbort());
    };
    const onDrain = () => controller?.resume();
    res.on('close', onClientClose);

    const handler: Dispatcher.DispatchHandler = {
      onRequestStart(ctrl) {
        controller = ctrl;
        if (res.destroyed) ctrl.abort(new ClientAbort());
      },
      onResponseStart(_ctrl, statusCode: number, headers: IncomingHttpHeaders) {
        status = statusCode;
        if (wantsUsage(headers['content-type'])) tap = new UsageTap();
        if (request.beforeEnd && statusCode < 300 && (headers['content-type'] ?? '').includes('json')) captured = [];
        if (request.stripUsage && (headers['content-type'] ?? '').includes('text/event-stream')) filter = new UsageEventFilter();
        const downstream = downstreamResponseHeaders(headers, request.ownHeaders);
        // The filtered stream is shorter than the provider's; its length is the client's to find by the end of the stream.
        if (filter) delete downstream['content-length'];
        res.writeHead(statusCode, downstream);
        // Event streams must reach the client before the first event does.
        if (tap && (headers['content-type'] ?? '').includes('text/event-stream')) res.flushHeaders();
      },
      onResponseData(ctrl, chunk: Buffer) {
        tap?.push(chunk);
        if (captured) {
          capturedBytes += chunk.length;
          if (capturedBytes <= CAPTURE_MAX_BYTES) captured.push(chunk);
          else captured = null;
        }
        const out = filter ? filter.push(chunk) : chunk;
        if (out.length === 0) return;
        if (!res.write(out)) {
          ctrl.pause();
          res.once('drain', onDrain);
        }
      },
      onResponseEnd() {
        request.beforeEnd?.(captured ? parseObject(Buffer.concat(captured)) : null);
        res.end(filter?.end());
        finish(null);
      },
      onResponseError(_ctrl, err: Error) {
        const kind = classify(err);
        if (kind === 'client_abort') {
          finish(kind);
        } else if (!res.headersSent && neverReachedProvider(err) && retriesLeft > 0) {
          // Only a request the provider cannot have seen is sent again: a reset after sending,
          // or a timeout, may mean the provider is still working on (and billing) the first one.
          const attempt = request.provider.config.retries - retriesLeft;
          retriesLeft--;
          setTimeout(send, RETRY_BACKOFF_MS * 2 ** attempt);
        } else if (!res.headersSent) {
          const answer = kind === 'upstream_timeout'
            ? new GatewayError('upstream_timeout', `provider ${request.provider.name} did not answer in time`)
            : new GatewayError('upstream_unavailable', `provider ${request.provider.name} is unreachable`);
          finish(kind, answer);
        } else {
          // The status line is gone: the only honest signal left is a broken stream.
          res.destroy();
          finish(kind === 'upstream_timeout' ? 'upstream_idle_timeout' : 'upstream_reset');
        }
      },
    };

    const send = () => {
      request.provider.pool.dispatch({ path: request.path, method: request.method, headers: request.headers, body: request.body }, handler);
    };
    send();
  });
}

function parseObject(body: Buffer): Readonly<Record<string, unknown>> | null {
  try {
    const parsed: unknown = JSON.parse(body.toString('utf8'));
    return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

function wantsUsage(contentType: string | undefined): boolean {
  return contentType !== undefined && (contentType.includes('json') || contentType.includes('text/event-stream'));
}

/** Failures before a connection existed: the request cannot have reached the provider. */
const CONNECT_FAILURES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT']);
const RETRY_BACKOFF_MS = 100;

function neverReachedProvider(err: Error): boolean {
  return CONNECT_FAILURES.has((err as { code?: string }).code ?? '');
}

function classify(err: Error): ForwardErrorKind {
  if (err instanceof ClientAbort) return 'client_abort';
  const code = (err as { code?: string }).code;
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') return 'upstream_timeout';
  return 'upstream_unavailable';
}
