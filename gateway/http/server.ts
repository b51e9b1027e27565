import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { GatewayError } from '../errors/catalogue.js';
import type { GatewayContext } from './context.js';
import { handleCheck } from './handle-check.js';
import { handleProxy } from './handle-proxy.js';
import { createUpgradeHandler } from './handle-upgrade.js';
import { sendError, sendJson } from './respond.js';

/** A client's own request id is kept when it is a sane token, so traces line up across services. */
const CLIENT_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
/** Dot segments and encoded slashes or dots could walk out of the provider's base path. */
const UNSAFE_PATH = /(?:^|\/)\.{1,2}(?:\/|$)|%2e|%2f|%5c|\\/i;

function requestIdOf(req: IncomingMessage): string {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && CLIENT_REQUEST_ID.test(given) ? given : randomUUID();
}

function splitUrl(url: string): { pathname: string; search: string } {
  const q = url.indexOf('?');
  return q === -1 ? { pathname: url, search: '' } : { pathname: url.slice(0, q), search: url.slice(q) };
}

/** Routes: health, the check endpoint, and the governed OpenAI surface under /v1. */
export function createGatewayServer(ctx: GatewayContext): { server: Server; closeUpgrades: () => void } {
  const upgrades = createUpgradeHandler(ctx);

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const requestId = requestIdOf(req);
    res.setHeader('x-request-id', requestId);
    const { pathname, search } = splitUrl(req.url ?? '/');
    const handled = route(req, res, requestId, pathname, search);
    if (handled) {
      handled.catch((err: unknown) => {
        ctx.logger.error({ req_id: requestId, err: errorSummary(err) }, 'request failed');
        ctx.reporter.exception(err, { request_id: requestId });
        sendError(res, new GatewayError('internal_error', 'the gateway failed to handle the request'));
      });
    }
  };

  const route = (req: IncomingMessage, res: ServerResponse, requestId: string, pathname: string, search: string): Promise<void> | undefined => {
    if (pathname === '/healthz') {
      sendJson(res, 200, { status: 'ok' });
      return undefined;
    }
    if (!pathname.startsWith('/v1/') || UNSAFE_PATH.test(pathname)) {
      sendError(res, new GatewayError('route_not_found', `No route for ${req.method} ${pathname.slice(0, 200)}`));
      return undefined;
    }
    if (pathname === '/v1/check' && req.method === 'POST') return handleCheck(ctx, req, res, requestId);
    return handleProxy(ctx, req, res, requestId, pathname, search);
  };

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const requestId = requestIdOf(req);
    const { pathname, search } = splitUrl(req.url ?? '/');
    if (!pathname.startsWith('/v1/') || UNSAFE_PATH.test(pathname)) {
      socket.destroy();
      return;
    }
    upgrades.handler(req, socket, head, requestId, pathname, search).catch((err: unknown) => {
      ctx.logger.error({ req_id: requestId, err: errorSummary(err) }, 'upgrade failed');
      ctx.reporter.exception(err, { request_id: requestId });
      socket.destroy();
    });
  };

  const server = createServer(onRequest);
  server.on('upgrade', onUpgrade);
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    else socket.destroy();
  });
  return { server, closeUpgrades: upgrades.close };
}

/** Errors are logged by type and code only: messages of foreign errors may quote input. */
export function errorSummary(err: unknown): { type: string; code?: string } {
  if (err instanceof Error) return { type: err.name, code: (err as { code?: string }).code };
  return { type: typeof err };
}
