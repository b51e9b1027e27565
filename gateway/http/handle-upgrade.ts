import type { IncomingMessage } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import httpProxy from 'http-proxy';
import { authenticate, AuthenticationError } from '../auth/authenticate.js';
import { sqliteTime } from '../audit/database.js';
import { GatewayError } from '../errors/catalogue.js';
import { METADATA_HEADER, parseGovernanceMetadata } from '../facts/governance-metadata.js';
import { operationFromPath } from '../facts/operation.js';
import type { GatewayContext } from './context.js';
import { govern, NO_REQUEST_FACTS } from './govern.js';

/** Headers of the client that never reach the provider on an upgraded connection either. */
function stripClientCredentials(req: IncomingMessage): void {
  for (const name of Object.keys(req.headers)) {
    if (name === 'authorization' || name === 'api-key' || name === 'cookie' || name.startsWith('x-governance-')) delete req.headers[name];
  }
}

/**
 * WebSocket upgrades (`/v1/realtime?model=…`): authenticated, decided and
 * recorded like any request, then handed to http-proxy, which relays frames
 * both ways. The outcome row is written when the connection closes.
 */
export function createUpgradeHandler(ctx: GatewayContext) {
  const proxy = httpProxy.createProxyServer({ ws: true, changeOrigin: true, xfwd: false });
  proxy.on('error', (_err, _req, target) => {
    if ('destroy' in target) (target as Duplex).destroy();
  });
  // Upgraded sockets leave the HTTP server's bookkeeping, so shutdown must find them here.
  const open = new Set<Duplex>();

  const handler = async (req: IncomingMessage, socket: Duplex, head: Buffer, requestId: string, pathname: string, search: string): Promise<void> => {
    const started = performance.now();
    socket.on('error', () => socket.destroy());
    try {
      const key = authenticate(req.headers, ctx.keys);
      const metadata = parseGovernanceMetadata(req.headers[METADATA_HEADER]);
      const model = new URLSearchParams(search).get('model');
      const { provider, decision, logId } = await govern(ctx, {
        requestId, kind: 'websocket', key, operation: operationFromPath(pathname), model, metadata, request: NO_REQUEST_FACTS,
      });
      if (!provider) throw new GatewayError('model_not_found', `The model \`${model}\` is not served by any provider of this gateway`, { param: 'model' });
      if (!decision.allowed) throw new GatewayError('policy_blocked', `Request blocked by governance policy: ${decision.reason}`);

      stripClientCredentials(req);
      if (provider.authorization) req.headers.authorization = provider.authorization;
      req.url = provider.basePath + pathname.slice(3) + search;
      open.add(socket);
      socket.once('close', () => {
        open.delete(socket);
        ctx.audit.recordOutcome({
          log_id: logId, status: 101, duration_ms: performance.now() - started, upstream_ms: null,
          prompt_tokens: null, completion_tokens: null, total_tokens: null, error: null, created_at: sqliteTime(),
        });
      });
      proxy.ws(req, socket, head, { target: provider.origin });
    } catch (err) {
      if (!(err instanceof GatewayError)) throw err;
      if (err instanceof AuthenticationError) ctx.reporter.authFailure(err.failure);
      else if (err.status >= 500) ctx.reporter.serverError(err.code, err.status, requestId);
      refuseUpgrade(socket, err, requestId);
    }
  };
  const close = () => {
    for (const socket of open) socket.destroy();
    proxy.close();
  };
  return { handler, close };
}

function refuseUpgrade(socket: Duplex, err: GatewayError, requestId: string): void {
  const body = JSON.stringify(err.toBody());
  socket.end(
    `HTTP/1.1 ${err.status} ${STATUS_CODES[err.status]}\r\n` +
      `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
      `x-request-id: ${requestId}\r\nconnection: close\r\n\r\n${body}`,
  );
}
