import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Dispatcher } from 'undici';
import { readBody } from '../../gateway/http/read-body.js';
import { upstreamRequestHeaders } from '../../gateway/proxy/forwarded-headers.js';
import { forwardRequest } from '../../gateway/proxy/forward-request.js';
import { ProviderRouter } from '../../gateway/proxy/provider-router.js';

/**
 * Arm B: a bare pass-through on the gateway's own undici setup (provider pool,
 * header rules, streaming relay), without authentication, policy or audit.
 * What G adds over B is what governance costs.
 */
const upstream = process.argv[2];
if (!upstream) throw new Error('usage: bare-proxy.ts UPSTREAM_BASE_URL');

const router = new ProviderRouter([{
  name: 'bench', baseUrl: new URL(upstream), apiKeyEnv: null, models: ['*'],
  connectTimeoutMs: 10_000, firstByteTimeoutMs: 600_000, idleTimeoutMs: 300_000, maxConnections: 1024, maxInFlight: 2048, retries: 0,
  organization: null, project: null, ephemeralCredentials: false,
}], {});
const provider = router.providers[0]!;
let ids = 0;

const server = createServer((req, res) => {
  void (async () => {
    const body = await readBody(req, 10 * 1024 * 1024, 'server.max_body_bytes');
    const url = req.url ?? '/';
    await forwardRequest({
      provider,
      method: req.method as Dispatcher.HttpMethod,
      path: provider.basePath + url.slice(3),
      headers: upstreamRequestHeaders(req.headers, provider, String(++ids)),
      body: body.length > 0 ? body : null,
      ownHeaders: {},
    }, res);
  })();
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${(server.address() as AddressInfo).port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
