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
  return new Promise((resolve) => new ResponseRelay(request, res, resolve).send());
}

/** One forwarded request's dispatch handler: what the provider answers goes to the client, chunk by chunk. */
class ResponseRelay implements Dispatcher.DispatchHandler {
  private readonly started = performance.now();
  private controller: Dispatcher.DispatchController | null = null;
  private status: number | null = null;
  private tap: UsageTap | null = null;
  private filter: UsageEventFilter | null = null;
  private captured: Buffer[] | null = null;
  private capturedBytes = 0;
  private settled = false;
  private retriesLeft: number;

  constructor(
    private readonly request: ForwardRequest,
    private readonly res: ServerResponse,
    private readonly resolve: (outcome: ForwardOutcome) => void,
  ) {
    this.retriesLeft = request.provider.config.retries;
    res.on('close', this.onClientClose);
  }

  send(): void {
    const { request } = this;
    request.provider.pool.dispatch({ path: request.path, method: request.method, headers: request.headers, body: request.body }, this);
  }

  onRequestStart(ctrl: Dispatcher.DispatchController): void {
    this.controller = ctrl;
    if (this.res.destroyed) ctrl.abort(new ClientAbort());
  }

  onResponseStart(_ctrl: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    const { request, res } = this;
    const contentType = headers['content-type'] ?? '';
    this.status = statusCode;
    if (wantsUsage(headers['content-type'])) this.tap = new UsageTap();
    if (request.beforeEnd && statusCode < 300 && contentType.includes('json')) this.captured = [];
    if (request.stripUsage && contentType.includes('text/event-stream')) this.filter = new UsageEventFilter();
    const downstream = downstreamResponseHeaders(headers, request.ownHeaders);
    // The filtered stream is shorter than the provider's; its length is the client's to find by the end of the stream.
    if (this.filter) delete downstream['content-length'];
    res.writeHead(statusCode, downstream);
    // Event streams must reach the client before the first event does.
    if (this.tap && contentType.includes('text/event-stream')) res.flushHeaders();
  }

  onResponseData(ctrl: Dispatcher.DispatchController, chunk: Buffer): void {
    this.tap?.push(chunk);
    if (this.captured) {
      this.capturedBytes += chunk.length;
      if (this.capturedBytes <= CAPTURE_MAX_BYTES) this.captured.push(chunk);
      else this.captured = null;
    }
    const out = this.filter ? this.filter.push(chunk) : chunk;
    if (out.length === 0) return;
    if (!this.res.write(out)) {
      ctrl.pause();
      this.res.once('drain', this.onDrain);
    }
  }

  onResponseEnd(): void {
    this.request.beforeEnd?.(this.captured ? parseObject(Buffer.concat(this.captured)) : null);
    this.res.end(this.filter?.end());
    this.finish(null);
  }

  onResponseError(_ctrl: Dispatcher.DispatchController, err: Error): void {
    const { request, res } = this;
    const kind = classify(err);
    if (kind === 'client_abort') {
      this.finish(kind);
    } else if (!res.headersSent && neverReachedProvider(err) && this.retriesLeft > 0) {
      // Only a request the provider cannot have seen is sent again: a reset after sending,
      // or a timeout, may mean the provider is still working on (and billing) the first one.
      const attempt = request.provider.config.retries - this.retriesLeft;
      this.retriesLeft--;
      setTimeout(() => this.send(), RETRY_BACKOFF_MS * 2 ** attempt);
    } else if (!res.headersSent) {
      const answer = kind === 'upstream_timeout'
        ? new GatewayError('upstream_timeout', `provider ${request.provider.name} did not answer in time`)
        : new GatewayError('upstream_unavailable', `provider ${request.provider.name} is unreachable`);
      this.finish(kind, answer);
    } else {
      // The status line is gone: the only honest signal left is a broken stream.
      res.destroy();
      this.finish(kind === 'upstream_timeout' ? 'upstream_idle_timeout' : 'upstream_reset');
    }
  }

  private readonly onClientClose = (): void => {
    if (!this.res.writableFinished) this.controller?.abort(new ClientAbort());
  };

  private readonly onDrain = (): void => this.controller?.resume();

  private finish(error: ForwardErrorKind | null, answeredWith: GatewayError | null = null): void {
    if (this.settled) return;
    this.settled = true;
    this.res.off('close', this.onClientClose);
    this.resolve({ status: this.status, upstreamMs: performance.now() - this.started, usage: this.tap?.usage() ?? null, error, answeredWith });
  }
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
