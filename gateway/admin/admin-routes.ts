import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { GatewayError } from '../errors/catalogue.js';
import type { Logger } from '../observability/logger.js';
import type { PolicyWatcher } from '../policy/policy-watcher.js';
import { displayPath } from '../config/gateway-config.js';
import { AdminAuth, CLEARED_SESSION_COOKIE, clientAddress, type AdminVerdict } from './admin-auth.js';
import { loadAdminAssets, type Asset } from './admin-assets.js';
import { AdminQueries } from './admin-queries.js';
import { dashboardPage, loginPage } from './admin-pages.js';
import { DashboardData } from './dashboard-data.js';
import { DashboardUnavailable, type DashboardSource, type FleetDashboardSource } from './dashboard-source.js';
import type { LoginThrottle } from './login-throttle.js';

const LATEST_DECISIONS = 100;
/** A login form is one short field; anything longer is not a login. */
const MAX_LOGIN_BYTES = 4096;

/** Nothing the dashboard serves may be framed, cached, sniffed or run inline script. */
const SECURITY_HEADERS: OutgoingHttpHeaders = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cross-origin-resource-policy': 'same-origin',
};
const NO_STORE: OutgoingHttpHeaders = { 'cache-control': 'no-store' };

export interface AdminOptions {
  readonly token: string;
  readonly auditPath: string;
  readonly policy: PolicyWatcher;
  readonly policyPath: string;
  readonly logger: Logger;
  /** Counts wrong tokens per client address; tests inject one with their own clock. */
  readonly throttle?: LoginThrottle;
  /** A login form was checked: the control log records who signed in, or tried to. */
  readonly onLogin?: (address: string, accepted: boolean) => void;
  /**
   * Fleet mode: the central tables, read instead of the local file, so the
   * dashboard shows every gateway. Its creator closes it.
   */
  readonly central?: FleetDashboardSource;
}

/**
 * `/admin`: the read-only dashboard, its login and its JSON API. It only
 * exists when the variable admin.token_env names is set; it reads the audit database through
 * its own read-only connection, or in fleet mode the central tables, where
 * `?gateway=ID` narrows the summary and the decisions to one gateway.
 */
export class AdminRoutes {
  private readonly auth: AdminAuth;
  /** The local file's queries, opened (and closed) here in single-node mode only. */
  private readonly local: AdminQueries | null;
  private readonly source: DashboardSource;
  /** One per scope (null: every gateway), so each keeps its own hour caches; created only for gateways that exist. */
  private readonly data = new Map<string | null, DashboardData>();
  private readonly assets = loadAdminAssets();

  constructor(private readonly options: AdminOptions) {
    this.auth = new AdminAuth(options.token, options.throttle);
    this.local = options.central ? null : new AdminQueries(options.auditPath);
    this.source = options.central ?? this.local!;
  }

  handle(req: IncomingMessage, res: ServerResponse, pathname: string, requestId: string): Promise<void> | undefined {
    const asset = this.assets.get(pathname);
    if (asset) return this.serveAsset(req, res, asset);
    if (pathname === '/admin/login') return this.login(req, res, requestId);
    if (pathname === '/admin/logout') return this.logout(req, res);

    const isApi = pathname.startsWith('/admin/api/');
    if (pathname !== '/admin' && pathname !== '/admin/' && !isApi) {
      return sendJsonError(res, new GatewayError('route_not_found', `No route for ${req.method} ${pathname.slice(0, 200)}`));
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return sendJsonError(res, new GatewayError('method_not_allowed', 'the admin dashboard is read-only'));
    }
    const verdict = this.auth.authorize(req);
    if (verdict.result === 'throttled') return this.throttled(res, verdict, requestId, pathname);
    if (verdict.result === 'refused') {
      this.options.logger.info({ req_id: requestId, path: pathname, status: 401 }, 'admin request refused');
      if (isApi) return sendJsonError(res, new GatewayError('invalid_admin_token', 'a valid admin token or session is required'));
      return sendHtml(res, 401, loginPage(req.headers.authorization !== undefined));
    }
    if (!isApi) return sendHtml(res, 200, dashboardPage(this.options.central !== undefined));
    return this.api(req, res, pathname, requestId);
  }

  close(): void {
    this.local?.close();
  }

  private async api(req: IncomingMessage, res: ServerResponse, pathname: string, requestId: string): Promise<void> {
    try {
      switch (pathname) {
        case '/admin/api/summary':
        case '/admin/api/decisions': {
          const scope = await this.scope(req);
          if (scope instanceof GatewayError) return sendJsonError(res, scope);
          if (pathname === '/admin/api/decisions') return sendData(res, { decisions: await this.source.latest(LATEST_DECISIONS, scope) });
          return sendData(res, await this.dataFor(scope).summary());
        }
        case '/admin/api/gateways':
          // Single-node mode has no fleet to list: the route does not exist there.
          if (this.options.central) return sendData(res, { gateways: await this.options.central.gateways() });
          break;
        case '/admin/api/policy':
          return sendData(res, this.policyInForce());
      }
    } catch (err) {
      if (!(err instanceof DashboardUnavailable)) throw err;
      // Fails closed: no figures rather than a partial fleet or this gateway's file passed off as the fleet.
      this.options.logger.error({ req_id: requestId, path: pathname, problem: err.message }, 'admin dashboard cannot read the central tables');
      return sendJsonError(res, new GatewayError('audit_unavailable', 'the dashboard cannot read the fleet database; try again when it is reachable'));
    }
    return sendJsonError(res, new GatewayError('route_not_found', `No admin API ${pathname.slice(0, 200)}`));
  }

  /**
   * The gateway `?gateway=ID` asks for, or null for all. Refused rather than
   * ignored where it cannot apply, so a narrowed view is never the whole
   * one: without fleet mode (one gateway's file), and for an id that has not
   * shipped (which also bounds the caches to the fleet's gateways).
   */
  private async scope(req: IncomingMessage): Promise<string | null | GatewayError> {
    const gateway = new URL(req.url ?? '/', 'http://admin').searchParams.get('gateway');
    if (gateway === null || gateway === '') return null;
    if (!this.options.central) return new GatewayError('invalid_request', 'the gateway filter needs fleet mode: this dashboard shows this gateway only');
    const known = await this.options.central.gateways();
    if (!known.some((g) => g.gateway === gateway)) {
      return new GatewayError('route_not_found', `no gateway ${JSON.stringify(gateway.slice(0, 64))} has shipped to the fleet database`);
    }
    return gateway;
  }

  private dataFor(gateway: string | null): DashboardData {
    let data = this.data.get(gateway);
    if (!data) this.data.set(gateway, (data = new DashboardData(this.source, gateway)));
    return data;
  }

  private policyInForce() {
    const { policy, loadedAt, lastRejected } = this.options.policy;
    return {
      hash: policy.hash,
      file: displayPath(this.options.policyPath),
      mode: policy.mode,
      block_threshold: policy.blockThreshold,
      rules: policy.rules.length,
      loaded_at: loadedAt.toISOString(),
      last_rejected: lastRejected && { ...lastRejected, at: lastRejected.at.toISOString() },
    };
  }

  private async login(req: IncomingMessage, res: ServerResponse, requestId: string): Promise<void> {
    if (req.method !== 'POST') {
      res.setHeader('allow', 'POST');
      return sendJsonError(res, new GatewayError('method_not_allowed', '/admin/login only answers POST'));
    }
    const body = await readForm(req);
    if (body === null) return sendJsonError(res, new GatewayError('request_too_large', 'the login form is too large'));
    const token = new URLSearchParams(body).get('token') ?? '';
    const address = clientAddress(req);
    const verdict = this.auth.checkToken(token, address);
    if (verdict.result === 'throttled') return this.throttled(res, verdict, requestId, '/admin/login');
    if (verdict.result === 'refused') {
      this.options.logger.info({ req_id: requestId, status: 401 }, 'admin login refused');
      this.options.onLogin?.(address, false);
      return sendHtml(res, 401, loginPage(true));
    }
    this.options.logger.info({ req_id: requestId }, 'admin signed in');
    this.options.onLogin?.(address, true);
    res.writeHead(303, { ...SECURITY_HEADERS, ...NO_STORE, location: '/admin', 'set-cookie': this.auth.sessionCookie(), 'content-length': 0 });
    res.end();
  }

  /** JSON for page, API and form alike: the catalogue's code is what clients match on, and six wrong tokens a minute is rarely a person typing. */
  private throttled(res: ServerResponse, verdict: Extract<AdminVerdict, { result: 'throttled' }>, requestId: string, pathname: string): Promise<void> {
    const seconds = Math.max(1, Math.ceil(verdict.retryAfterMs / 1000));
    this.options.logger.warn({ req_id: requestId, path: pathname, status: 429, retry_after_s: seconds }, 'admin token refused unread: too many wrong tokens from this address');
    res.setHeader('retry-after', String(seconds));
    return sendJsonError(res, new GatewayError('rate_limit_exceeded', `too many wrong admin tokens from this address; try again in ${seconds} s`));
  }

  private async logout(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== 'POST') {
      res.setHeader('allow', 'POST');
      return sendJsonError(res, new GatewayError('method_not_allowed', '/admin/logout only answers POST'));
    }
    req.resume();
    res.writeHead(303, { ...SECURITY_HEADERS, ...NO_STORE, location: '/admin', 'set-cookie': CLEARED_SESSION_COOKIE, 'content-length': 0 });
    res.end();
  }

  private async serveAsset(req: IncomingMessage, res: ServerResponse, asset: Asset): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return sendJsonError(res, new GatewayError('method_not_allowed', 'assets are read-only'));
    }
    res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': asset.type, 'content-length': asset.body.length, 'cache-control': 'no-cache' });
    res.end(req.method === 'HEAD' ? undefined : asset.body);
  }
}

async function sendHtml(res: ServerResponse, status: number, html: string): Promise<void> {
  const body = Buffer.from(html);
  res.writeHead(status, { ...SECURITY_HEADERS, ...NO_STORE, 'content-type': 'text/html; charset=utf-8', 'content-length': body.length });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

async function sendData(res: ServerResponse, data: unknown): Promise<void> {
  const body = Buffer.from(JSON.stringify(data));
  res.writeHead(200, { ...SECURITY_HEADERS, ...NO_STORE, 'content-type': 'application/json', 'content-length': body.length });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

async function sendJsonError(res: ServerResponse, err: GatewayError): Promise<void> {
  const body = Buffer.from(JSON.stringify(err.toBody()));
  res.writeHead(err.status, { ...SECURITY_HEADERS, ...NO_STORE, 'content-type': 'application/json', 'content-length': body.length });
  res.end(body);
}

/** The form body as text, or null when it is larger than a login can be. */
async function readForm(req: IncomingMessage): Promise<string | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  // Read to the end even past the limit, so the refusal can still be sent on this connection.
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size <= MAX_LOGIN_BYTES) chunks.push(chunk);
  }
  return size > MAX_LOGIN_BYTES ? null : Buffer.concat(chunks).toString('utf8');
}
