import type { IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import type { Duplex } from 'node:stream';
import httpProxy from 'http-proxy';
import { sqliteTime } from '../store/sqlite-time.js';
import { GatewayError } from '../errors/catalogue.js';
import type { Operation } from '../facts/routes.js';
import { upstreamRequestHeaders } from '../proxy/forwarded-headers.js';
import type { ForwardErrorKind } from '../proxy/forward-request.js';
import { admit, apiRequestReader, type Admitted } from './admit.js';
import type { GatewayContext } from './context.js';
import { observeRequest } from './observe-request.js';
import { socketAnswer } from './refuse.js';
import { answerSocket } from './respond.js';

/** What became of one proxied handshake, for its outcome row, and the gateway's headers for its answer. */
interface Handshake {
  status: number | null;
  error: ForwardErrorKind | null;
  readonly headers: OutgoingHttpHeaders;
}

export interface UpgradeHandler {
  handler(req: IncomingMessage, socket: Duplex, head: Buffer, requestId: string, operation: Operation, pathname: string, search: string): Promise<void>;
  /** Cuts every upgraded socket still open, at the end of a drain. */
  close(): void;
}

/**
 * WebSocket upgrades (`/v1/realtime?model=…`): admitted like any request
 * (the model read from the query, where the provider reads it), then handed
 * to http-proxy, which relays frames both ways. The outcome row, written when
 * the client's socket closes, says whether the provider switched protocols
 * (101), answered otherwise, or could not be reached.
 */
export function createUpgradeHandler(ctx: GatewayContext): UpgradeHandler {
  const proxy = httpProxy.createProxyServer({ ws: true, changeOrigin: true, xfwd: false });
  const handshakes = new WeakMap<IncomingMessage, Handshake>();
  stampHandshakes(proxy, handshakes);
  // Upgraded sockets leave the HTTP server's bookkeeping, so shutdown must find them here.
  const open = new Set<Duplex>();

  const handler = async (req: IncomingMessage, socket: Duplex, head: Buffer, requestId: string, operation: Operation, pathname: string, search: string): Promise<void> => {
    const started = performance.now();
    socket.on('error', () => socket.destroy());
    const admitted = await admit(ctx, {
      kind: 'websocket', req, requestId, started, answer: socketAnswer(socket, requestId), operation: operation.name, read: apiRequestReader(ctx, operation, search),
    });
    if (!admitted) return;
    const { provider } = admitted.lease;
    const handshake: Handshake = { status: null, error: null, headers: { ...admitted.governed.headers, 'x-request-id': requestId } };
    handshakes.set(req, handshake);
    req.headers = upstreamRequestHeaders(req.headers, provider, requestId, { upgrade: true });
    req.url = provider.basePath + pathname.slice(3) + search;
    open.add(socket);
    socket.once('close', () => {
      open.delete(socket);
      recordClosed(ctx, admitted, handshake, requestId, started);
    });
    proxy.ws(req, socket, head, { target: provider.origin }, () => {
      if (handshake.status === null) {
        handshake.error = 'upstream_unavailable';
        const err = new GatewayError('upstream_unavailable', `provider ${provider.name} is unreachable`);
        ctx.reporter.serverError(err.code, err.status, requestId);
        answerSocket(socket, err, requestId);
      } else {
        handshake.error = 'upstream_reset';
        socket.destroy();
      }
    });
  };

  const close = () => {
    for (const socket of open) socket.destroy();
    proxy.close();
  };
  return { handler, close };
}

/** Records the provider's answer to each handshake and puts the gateway's headers on what http-proxy relays to the client. */
function stampHandshakes(proxy: httpProxy, handshakes: WeakMap<IncomingMessage, Handshake>): void {
  proxy.on('proxyReqWs', (proxyReq, req) => {
    const handshake = handshakes.get(req);
    if (!handshake) return;
    // These listeners run before http-proxy's own, so the headers it relays already carry the gateway's.
    const stamp = (res: IncomingMessage) => {
      handshake.status = res.statusCode ?? null;
      for (const [name, value] of Object.entries(handshake.headers)) res.headers[name] = String(value);
    };
    proxyReq.on('upgrade', stamp);
    proxyReq.on('response', stamp);
  });
}

/** The session is over: its lease goes back, its outcome row is written, and it is logged and counted once. */
function recordClosed(ctx: GatewayContext, admitted: Admitted, handshake: Handshake, requestId: string, started: number): void {
  const { lease, governed, question } = admitted;
  lease.release(0);
  ctx.audit.recordOutcome({
    log_id: governed.logId, status: handshake.status, duration_ms: performance.now() - started, upstream_ms: null,
    prompt_tokens: null, completion_tokens: null, total_tokens: null, error: handshake.error, created_at: sqliteTime(),
  });
  observeRequest(ctx, handshake.status ?? 502, {
    requestId, key: admitted.key, operation: question.operation, model: question.model, started, decision: 'allow', provider: lease.provider.name, error: handshake.error,
  });
}
