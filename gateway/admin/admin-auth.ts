import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { LoginThrottle } from './login-throttle.js';

export const SESSION_COOKIE = 'govgate_admin';
const SESSION_SECONDS = 12 * 60 * 60;
const SESSION_VALUE = /^(\d{1,12})\.([A-Za-z0-9_-]{43})$/;
/** 32 characters of hex carry 128 bits; anything shorter could be guessed even at five tries a minute. */
export const MIN_ADMIN_TOKEN_LENGTH = 32;

/**
 * Why the admin token in `variable` (admin.token_env) cannot be used, as one
 * line for the operator, or null when it can. Unset or empty is fine: it
 * means there is no dashboard.
 */
export function adminTokenProblem(token: string | undefined, variable: string): string | null {
  if (!token || token.length >= MIN_ADMIN_TOKEN_LENGTH) return null;
  return `${variable} must be at least ${MIN_ADMIN_TOKEN_LENGTH} characters long (it has ${token.length}); generate one with "openssl rand -hex 32", or unset it to turn the dashboard off`;
}

/** The outcome of presenting credentials; `throttled` means the token was not even compared. */
export type AdminVerdict =
  | { readonly result: 'granted' }
  | { readonly result: 'refused' }
  | { readonly result: 'throttled'; readonly retryAfterMs: number };

const GRANTED: AdminVerdict = { result: 'granted' };
const REFUSED: AdminVerdict = { result: 'refused' };

/**
 * Who may see the dashboard: holders of the admin token, presented as a
 * bearer token or exchanged once at the login form for a session cookie. The
 * cookie holds an expiry and an HMAC keyed by the token, never the token, so
 * a leaked cookie expires and rotating the token ends every session.
 *
 * Every comparison of a presented token goes through `checkToken`, which
 * consults the per-address throttle first, so no path can guess unthrottled.
 * Session cookies are not throttled: a 256-bit HMAC is not guessable, and an
 * expired cookie a browser keeps sending is not an attack.
 */
export class AdminAuth {
  private readonly tokenDigest: Buffer;

  constructor(
    private readonly token: string,
    private readonly throttle: LoginThrottle = new LoginThrottle(),
  ) {
    // Start-up refuses such a token with a readable line; this guards any other construction.
    const problem = token.length < MIN_ADMIN_TOKEN_LENGTH ? `the admin token must be at least ${MIN_ADMIN_TOKEN_LENGTH} characters long` : null;
    if (problem) throw new RangeError(problem);
    this.tokenDigest = digest(token);
  }

  /**
   * A token presented by `address`, at the login form or as a bearer token.
   * While the address is throttled the candidate is not compared at all, so
   * guesses sent then learn nothing and cost nothing.
   */
  checkToken(candidate: string, address: string): AdminVerdict {
    const wait = this.throttle.retryAfterMs(address);
    if (wait > 0) return { result: 'throttled', retryAfterMs: wait };
    if (this.tokenMatches(candidate)) {
      this.throttle.recordSuccess(address);
      return GRANTED;
    }
    this.throttle.recordFailure(address);
    return REFUSED;
  }

  /** Constant time whatever the candidate's length: both sides are compared as SHA-256 digests. Private: only `checkToken` may compare, after the throttle. */
  private tokenMatches(candidate: string): boolean {
    return timingSafeEqual(digest(candidate), this.tokenDigest);
  }

  /**
   * A request carrying the token as `Authorization: Bearer` or a session
   * cookie that is still valid. Any Authorization header is a presented
   * credential and counts against the address when wrong, malformed included.
   */
  authorize(req: IncomingMessage, now: Date = new Date()): AdminVerdict {
    const header = req.headers.authorization;
    if (header !== undefined) {
      const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
      return this.checkToken(match === null ? '' : match[1]!, clientAddress(req));
    }
    const session = cookieValue(req.headers.cookie, SESSION_COOKIE);
    return session !== null && this.sessionValid(session, now) ? GRANTED : REFUSED;
  }

  /** The `Set-Cookie` value that opens a session after a successful login. */
  sessionCookie(now: Date = new Date()): string {
    const expires = Math.floor(now.getTime() / 1000) + SESSION_SECONDS;
    return `${SESSION_COOKIE}=${expires}.${this.sign(expires)}; HttpOnly; SameSite=Strict; Path=/admin; Max-Age=${SESSION_SECONDS}`;
  }

  sessionValid(value: string, now: Date = new Date()): boolean {
    const match = SESSION_VALUE.exec(value);
    if (!match) return false;
    const expires = Number(match[1]);
    if (expires * 1000 <= now.getTime()) return false;
    const expected = Buffer.from(this.sign(expires));
    const given = Buffer.from(match[2]!);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }

  private sign(expires: number): string {
    return createHmac('sha256', this.token).update(`govgate-admin-session:${expires}`).digest('base64url');
  }
}

/** The cookie that ends the session in the browser. */
export const CLEARED_SESSION_COOKIE = `${SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/admin; Max-Age=0`;

/** The peer of the TCP connection: what the throttle counts by. A socket already gone has no address; they share one entry. */
export function clientAddress(req: IncomingMessage): string {
  return req.socket.remoteAddress ?? 'unknown';
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

function cookieValue(header: string | undefined, name: string): string | null {
  if (!header) return null;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq !== -1 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return null;
}
