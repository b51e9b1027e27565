import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { Provider } from './provider-router.js';

/** Hop-by-hop headers (RFC 9110 §7.6.1) belong to one connection and are never relayed. */
const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization',
  'te', 'trailer', 'transfer-encoding', 'upgrade', 'http2-settings',
]);

/**
 * Never sent upstream: the client's own credentials and cookies, the gateway's
 * governance headers, the provider-scoping headers, the host (undici sets the provider's), the length (the
 * same bytes go on, undici recomputes it) and accept-encoding, so that the
 * response arrives uncompressed and its `usage` can be read from it.
 */
const DROPPED_REQUEST = new Set([
  'host', 'authorization', 'api-key', 'cookie', 'content-length', 'accept-encoding', 'expect',
  // Headers that choose whose account, project or identity the provider acts for: that is the gateway's configuration,
  // never the client's (x-api-key is another provider's credential header and would carry the gateway key out).
  'openai-organization', 'openai-project', 'x-api-key', 'forwarded', 'x-real-ip',
]);

/**
 * The headers sent to the provider. A WebSocket handshake (`upgrade`) keeps
 * the two hop-by-hop headers that ask the provider to switch protocols.
 */
export function upstreamRequestHeaders(
  incoming: IncomingHttpHeaders,
  provider: Pick<Provider, 'authorization' | 'config'>,
  requestId: string,
  options: { upgrade?: boolean } = {},
): Record<string, string | string[]> {
  const named = connectionListed(incoming.connection);
  const out: Record<string, string | string[]> = {};
  for (const name in incoming) {
    const value = incoming[name];
    if (value === undefined || HOP_BY_HOP.has(name) || DROPPED_REQUEST.has(name) || name.startsWith('x-governance-') || name.startsWith('x-forwarded-')) continue;
    if (named && named.has(name)) continue;
    out[name] = value;
  }
  if (options.upgrade && incoming.upgrade !== undefined) {
    out.connection = 'Upgrade';
    out.upgrade = incoming.upgrade;
  }
  if (provider.authorization) out.authorization = provider.authorization;
  if (provider.config.organization) out['openai-organization'] = provider.config.organization;
  if (provider.config.project) out['openai-project'] = provider.config.project;
  // The provider's logs then share the id of the gateway's log line and audit row.
  out['x-request-id'] = requestId;
  return out;
}

/**
 * The provider's response headers minus hop-by-hop ones, plus the gateway's own.
 * The provider's request id moves to `x-upstream-request-id`: `x-request-id`
 * stays the gateway's, the one its logs and audit rows carry.
 */
export function downstreamResponseHeaders(upstream: IncomingHttpHeaders, own: OutgoingHttpHeaders): OutgoingHttpHeaders {
  const named = connectionListed(upstream.connection);
  const out: OutgoingHttpHeaders = {};
  for (const name in upstream) {
    const value = upstream[name];
    if (value === undefined || HOP_BY_HOP.has(name)) continue;
    if (named && named.has(name)) continue;
    out[name === 'x-request-id' ? 'x-upstream-request-id' : name] = value;
  }
  return Object.assign(out, own);
}

function connectionListed(connection: string | string[] | undefined): Set<string> | null {
  if (connection === undefined) return null;
  const names = (Array.isArray(connection) ? connection.join(',') : connection).split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
  return names.length > 0 ? new Set(names) : null;
}
