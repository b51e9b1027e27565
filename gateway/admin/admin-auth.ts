import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

export const SESSION_COOKIE = 'govgate_admin';
const SESSION_SECONDS = 12 * 60 * 60;
const SESSION_VALUE = /^(\d{1,12})\.([A-Za-z0-9_-]{43})$/;

/**
 * Who may see the dashboard: holders of `GOVGATE_ADMIN_TOKEN`, presented as a
 * bearer token or exchanged once at the login form for a session cookie. The
 * cookie holds an expiry and an HMAC keyed by the token, never the token, so
 * a leaked cookie expires and rotating the token ends every session.
 */
export class AdminAuth {
  private readonly tokenDigest: Buffer;

  constructor(private readonly token: string) {
    this.tokenDigest = digest(token);
  }

  /** Constant time whatever the candidate's length: both sides are compared as SHA-256 digests. */
  tokenMatches(candidate: string): boolean {
    return timingSafeEqual(digest(candidate), this.tokenDigest);
  }

  /** A request carrying the token as `Authorization: Bearer` or a session cookie that is still valid. */
  authorized(req: IncomingMessage, now: Date = new Date()): boolean {
    const header = req.headers.authorization;
    if (header !== undefined) {
      const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
      return match !== null && this.tokenMatches(match[1]!);
    }
    const session = cookieValue(req.headers.cookie, SESSION_COOKIE);
    return session !== null && this.sessionValid(session, now);
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
