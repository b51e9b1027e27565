import type { IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import type { Duplex } from 'node:stream';
import httpProxy from 'http-proxy';
import { authenticate, AuthenticationError } from '../auth/authenticate.js';
import type { ApiKeyRecord } from '../auth/key-store.js';
import { sqliteTime } from '../audit/database.js';
import { GatewayError } from '../errors/catalogue.js';
import { METADATA_HEADER, NO_METADATA, parseGovernanceMetadata, type Metadata } from '../facts/governance-metadata.js';
import { operationFromPath } from '../facts/operation.js';
import { upstreamRequestHeaders } from '../proxy/forwarded-headers.js';
import type { ForwardErrorKind } from '../proxy/forward-request.js';
import type { GatewayContext } from './context.js';
import { govern, NO_REQUEST_FACTS, recordRefusal, verdictOf } from './govern.js';
import { answerSocket } from './respond.js';

/** What became of one proxied handshake, for its outcome row, and the gateway's headers for its answer. */
interface Handshake {
  status: number | null;
  error: ForwardErrorKind | null;
  readonly headers: OutgoingHttpHeaders;
}

/**
 * WebSocket upgrades (`/v1/realtime?model=…`): authenticated, decided and
 * recorded like any request, then handed to http-proxy, which relays frames
 * both ways. The outcome row, written when the client's socket closes, says
 * whether the provider switched protocols (101), answered otherwise, or could
 * not be reached.
 */
export function createUpgradeHandler(ctx: GatewayContext) {
  const proxy = httpProxy.createProxyServer({ ws: true, changeOrigin: true, xfwd: false });
  const handshakes = new WeakMap<IncomingMessage, Handshake>();
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
  // Upgraded sockets leave the HTTP server's bookkeeping, so shutdown must find them here.
  const open = new Set<Duplex>();

  const handler = async (req: IncomingMessage, socket: Duplex, head: Buffer, requestId: string, pathname: string, search: string): Promise<void> => {
    const started = performance.now();
    socket.on('error', () => socket.destroy());
    const operation = operationFromPath(pathname);
    const model = new URLSearchParams(search).get('model');
    let key: ApiKeyRecord;
    let metadata: Metadata = NO_METADATA;
    try {
      key = authenticate(req.headers, ctx.keys);
    } catch (err) {
      if (!(err instanceof AuthenticationError)) throw err;
      ctx.reporter.authFailure(err.failure);
      ctx.metrics.authFailure(err.failure);
      answerSocket(socket, err, requestId);
      return;
    }
    try {
      metadata = parseGovernanceMetadata(req.headers[METADATA_HEADER]);
    } catch (err) {
      if (!(err instanceof GatewayError)) throw err;
      await recordRefusal(ctx, { requestId, kind: 'websocket', key, operation, model, metadata, request: NO_REQUEST_FACTS }, err);
      answerSocket(socket, err, requestId);
      return;
    }

    let governed;
    try {
      governed = await govern(ctx, { requestId, kind: 'websocket', key, operation, model, metadata, request: NO_REQUEST_FACTS });
    } catch (err) {
      if (!(err instanceof GatewayError)) throw err;
      ctx.reporter.serverError(err.code, err.status, requestId);
      answerSocket(socket, err, requestId);
      return;
    }
    const verdict = verdictOf(governed, model);
    if (verdict.refusal) {
      answerSocket(socket, verdict.refusal, requestId, governed.headers);
      return;
    }

    const { provider } = verdict;
    const handshake: Handshake = { status: null, error: null, headers: { ...governed.headers, 'x-request-id': requestId } };
    handshakes.set(req, handshake);
    req.headers = upstreamRequestHeaders(req.headers, provider.authorization, requestId, { upgrade: true });
    req.url = provider.basePath + pathname.slice(3) + search;
    open.add(socket);
    socket.once('close', () => {
      open.delete(socket);
      ctx.audit.recordOutcome({
        log_id: governed.logId, status: handshake.status, duration_ms: performance.now() - started, upstream_ms: null,
        prompt_tokens: null, completion_tokens: null, total_tokens: null, error: handshake.error, created_at: sqliteTime(),
      });
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
