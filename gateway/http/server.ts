import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { v7 as uuidv7 } from 'uuid';
import { GatewayError } from '../errors/catalogue.js';
import type { AdminRoutes } from '../admin/admin-routes.js';
import type { GatewayContext } from './context.js';
import { matchRoute } from '../facts/routes.js';
import { handleCheck } from './handle-check.js';
import { handleProxy } from './handle-proxy.js';
import { createUpgradeHandler, type UpgradeHandler } from './handle-upgrade.js';
import { errorSummary } from '../observability/error-summary.js';
import { handleHealth, handleMetrics, handleReady } from './handle-health.js';
import { answerSocket, sendError } from './respond.js';

/** A client's own request id is kept when it is a sane token, so traces line up across services. */
const CLIENT_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
/**
 * The only paths the gateway forwards: `/v1/` and segments of unreserved
 * characters (`:` for fine-tuned model ids). Percent-encoding, dot segments and
 * `;` parameters are refused because the provider may decode or normalise them
 * into a route other than the one the policy judged.
 */
const FORWARDABLE_PATH = /^\/v1(?:\/[A-Za-z0-9._~:-]+)+\/?$/;
const DOT_SEGMENT = /\/\.{1,2}(?:\/|$)/;

function isForwardable(pathname: string): boolean {
  return FORWARDABLE_PATH.test(pathname) && !DOT_SEGMENT.test(pathname);
}

function requestIdOf(req: IncomingMessage): string {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && CLIENT_REQUEST_ID.test(given) ? given : uuidv7();
}

function clientErrorOf(err: NodeJS.ErrnoException): GatewayError {
  if (err.code === 'HPE_HEADER_OVERFLOW') return new GatewayError('headers_too_large', 'request headers are larger than the gateway accepts');
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') return new GatewayError('request_timeout', 'the request was not received in time');
  return new GatewayError('invalid_request', 'malformed HTTP request');
}

function splitUrl(url: string): { pathname: string; search: string } {
  const q = url.indexOf('?');
  return q === -1 ? { pathname: url, search: '' } : { pathname: url.slice(0, q), search: url.slice(q) };
}

/** Routes: health, the check endpoint, the governed OpenAI surface under /v1, and /admin when it is enabled. */
export function createGatewayServer(ctx: GatewayContext, admin: AdminRoutes | null = null): { server: Server; closeUpgrades: () => void; settled: () => Promise<void> } {
  const upgrades = createUpgradeHandler(ctx);
  // Handlers still running (recording an outcome after their connection closed), so shutdown can wait for them:
  // a count, not a set of promises, so that a request costs no promise only for the shutdown's sake.
  let running = 0;
  let onIdle: (() => void) | null = null;
  const finished = () => {
    if (--running === 0) onIdle?.();
  };

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const requestId = requestIdOf(req);
    res.setHeader('x-request-id', requestId);
    // Node's own check would answer with a bare 400; HTTP/1.1 requires Host (RFC 9112 §3.2).
    if (req.httpVersionMajor === 1 && req.httpVersionMinor === 1 && req.headers.host === undefined) {
      sendError(res, new GatewayError('invalid_request', 'HTTP/1.1 requests must carry a Host header'));
      return;
    }
    const { pathname, search } = splitUrl(req.url ?? '/');
    const handled = route(ctx, admin, req, res, requestId, pathname, search);
    if (handled) {
      running++;
      handled.then(finished, (err: unknown) => {
        try {
          ctx.logger.error({ req_id: requestId, err: errorSummary(err) }, 'request failed');
          ctx.reporter.exception(err, { request_id: requestId });
          sendError(res, new GatewayError('internal_error', 'the gateway failed to handle the request'));
        } finally {
          finished();
        }
      });
    }
  };

  const { headersTimeoutMs, requestTimeoutMs } = ctx.config.server;
  const server = createServer({
    requireHostHeader: false,
    headersTimeout: headersTimeoutMs,
    requestTimeout: requestTimeoutMs,
    // Node checks these timeouts on this interval (30 s by default), which would let a slow client outstay a short limit.
    connectionsCheckingInterval: Math.min(1000, Math.max(100, Math.floor(headersTimeoutMs / 2))),
  }, onRequest);
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => routeUpgrade(ctx, upgrades.handler, req, socket, head));
  // An expectation other than 100-continue is ignored (RFC 9110 §10.1.1 lets a server do so): the request goes
  // through authentication and the policy like any other, and Expect is never forwarded.
  server.on('checkExpectation', onRequest);
  answerWhatNoHandlerSees(server, ctx.config.server.maxConnections);
  const settled = () => new Promise<void>((resolve) => {
    if (running === 0) return resolve();
    const before = onIdle;
    onIdle = () => {
      before?.();
      resolve();
    };
  });
  return { server, closeUpgrades: upgrades.close, settled };
}

/** Which handler answers a request; undefined when it was answered here. */
function route(
  ctx: GatewayContext, admin: AdminRoutes | null, req: IncomingMessage, res: ServerResponse,
  requestId: string, pathname: string, search: string,
): Promise<void> | undefined {
  if (req.method === 'GET' || req.method === 'HEAD') {
    if (pathname === '/metrics') return handleMetrics(ctx, res);
    if (pathname === '/healthz' || pathname === '/readyz') {
      if (pathname === '/healthz') handleHealth(res);
      else handleReady(ctx, res);
      return undefined;
    }
  }
  if (admin && (pathname === '/admin' || pathname.startsWith('/admin/'))) return admin.handle(req, res, pathname, requestId);
  if (!isForwardable(pathname)) {
    sendError(res, new GatewayError('route_not_found', `No route for ${req.method} ${pathname.slice(0, 200)}`));
    return undefined;
  }
  if (pathname === '/v1/check' || pathname === '/v1/check/') {
    if (req.method === 'POST') return handleCheck(ctx, req, res, requestId);
    res.setHeader('allow', 'POST');
    sendError(res, new GatewayError('method_not_allowed', '/v1/check only answers POST'));
    return undefined;
  }
  const match = matchRoute(req.method ?? '', pathname);
  if (match.kind === 'unknown') {
    sendError(res, new GatewayError('route_not_found', `No route for ${req.method} ${pathname.slice(0, 200)}: not an API route the gateway governs (routes are case-sensitive)`));
    return undefined;
  }
  if (match.kind === 'method_not_allowed') {
    res.setHeader('allow', match.allow.join(', '));
    sendError(res, new GatewayError('method_not_allowed', `${pathname.slice(0, 200)} does not answer ${req.method}`));
    return undefined;
  }
  if (match.operation.websocket) {
    sendError(res, new GatewayError('invalid_request', `${pathname.slice(0, 200)} is a WebSocket endpoint: connect with Upgrade: websocket`));
    return undefined;
  }
  return handleProxy(ctx, req, res, requestId, match.operation, pathname, search);
}

/** Only WebSocket handshakes on a WebSocket route are upgraded; anything else (h2c, a POST with Upgrade) is refused, never half-served. */
function routeUpgrade(ctx: GatewayContext, handler: UpgradeHandler['handler'], req: IncomingMessage, socket: Duplex, head: Buffer): void {
  const requestId = requestIdOf(req);
  const { pathname, search } = splitUrl(req.url ?? '/');
  const isWebSocket = req.method === 'GET' && String(req.headers.upgrade).toLowerCase() === 'websocket';
  if (!isWebSocket) {
    answerSocket(socket, new GatewayError('invalid_request', 'only WebSocket upgrades (GET with Upgrade: websocket) are supported'), requestId);
    return;
  }
  const match = isForwardable(pathname) ? matchRoute('GET', pathname) : null;
  if (match?.kind !== 'operation' || !match.operation.websocket) {
    answerSocket(socket, new GatewayError('route_not_found', `No WebSocket route for ${pathname.slice(0, 200)}`), requestId);
    return;
  }
  handler(req, socket, head, requestId, match.operation, pathname, search).catch((err: unknown) => {
    ctx.logger.error({ req_id: requestId, err: errorSummary(err) }, 'upgrade failed');
    ctx.reporter.exception(err, { request_id: requestId });
    socket.destroy();
  });
}

/** Connections past the limit, requests Node could not parse or that timed out, and CONNECT: answered in the OpenAI error shape on the socket. */
function answerWhatNoHandlerSees(server: Server, maxConnections: number): void {
  let openConnections = 0;
  server.on('connection', (socket: Socket) => {
    openConnections++;
    socket.once('close', () => openConnections--);
    // Past the limit a connection is told to come back rather than dropped without a word.
    if (openConnections > maxConnections) {
      answerSocket(socket, new GatewayError('overloaded', 'the gateway has too many open connections; retry shortly'), uuidv7(), { 'retry-after': '1' });
    }
  });
  server.on('clientError', (err: NodeJS.ErrnoException & { rawPacket?: Buffer }, socket) => {
    const head = err.rawPacket?.subarray(0, 5).toString('latin1') === 'HEAD ';
    answerSocket(socket, clientErrorOf(err), uuidv7(), {}, { head });
  });
  server.on('connect', (req: IncomingMessage, socket: Duplex) => {
    answerSocket(socket, new GatewayError('method_not_allowed', 'CONNECT is not supported: the gateway is not a forward proxy'), requestIdOf(req));
  });
}
