import { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import test from 'ava';
import { AdminAuth, SESSION_COOKIE } from '../../gateway/admin/admin-auth.js';
import { LoginThrottle } from '../../gateway/admin/login-throttle.js';
import { ADMIN_TOKEN } from './support.js';

// login-throttle.test.ts covers checkToken and the throttle; admin-http.test.ts covers the cookie over HTTP.
// Here: session expiry to the second on a given clock, token rotation, and how authorize reads a request.

const NOW = new Date(Date.UTC(2026, 5, 10, 12, 0, 0));
const SESSION_SECONDS = 12 * 60 * 60;

function request(headers: Record<string, string>, address = '10.0.0.1'): IncomingMessage {
  const socket = new Socket();
  Object.defineProperty(socket, 'remoteAddress', { value: address });
  const req = new IncomingMessage(socket);
  req.headers = headers;
  return req;
}

function sessionOf(auth: AdminAuth, now: Date): string {
  const cookie = auth.sessionCookie(now);
  const value = /^govgate_admin=([^;]+);/.exec(cookie)?.[1];
  if (value === undefined) throw new Error(`no session in ${cookie}`);
  return value;
}

test('a session lasts twelve hours to the second, and its expiry and signature cannot be edited', (t) => {
  const auth = new AdminAuth(ADMIN_TOKEN);
  const cookie = auth.sessionCookie(NOW);
  const expires = NOW.getTime() / 1000 + SESSION_SECONDS;
  t.regex(cookie, new RegExp(`^${SESSION_COOKIE}=${expires}\\.[A-Za-z0-9_-]{43}; HttpOnly; SameSite=Strict; Path=/admin; Max-Age=${SESSION_SECONDS}$`));
  const session = sessionOf(auth, NOW);
  t.true(auth.sessionValid(session, NOW));
  t.true(auth.sessionValid(session, new Date(expires * 1000 - 1)), 'valid until the last millisecond');
  t.false(auth.sessionValid(session, new Date(expires * 1000)), 'expired at its expiry');
  t.false(auth.sessionValid(session.replace(/^\d+/, String(expires + 3600)), NOW), 'the expiry is signed');
  t.false(auth.sessionValid(session.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A')), NOW));
  for (const malformed of ['', '.', `${expires}`, `${expires}.`, `${expires}.short`, `x${session}`, `${session}x`, `1234567890123.${session.split('.')[1]!}`]) {
    t.false(auth.sessionValid(malformed, NOW), JSON.stringify(malformed));
  }
});

test('rotating the admin token ends every session', (t) => {
  const session = sessionOf(new AdminAuth(ADMIN_TOKEN), NOW);
  t.false(new AdminAuth(`${ADMIN_TOKEN}-rotated`).sessionValid(session, NOW));
  t.true(new AdminAuth(ADMIN_TOKEN).sessionValid(session, NOW), 'the same token signs the same way in another process');
});

test('authorize: a bearer token in any case of "Bearer" and spacing; a session cookie among others', (t) => {
  const auth = new AdminAuth(ADMIN_TOKEN);
  for (const authorization of [`Bearer ${ADMIN_TOKEN}`, `bearer ${ADMIN_TOKEN}`, `BEARER   ${ADMIN_TOKEN}  `]) {
    t.deepEqual(auth.authorize(request({ authorization }), NOW), { result: 'granted' }, authorization);
  }
  const session = sessionOf(auth, NOW);
  t.deepEqual(auth.authorize(request({ cookie: `theme=dark; ${SESSION_COOKIE}=${session}; other=1` }), NOW), { result: 'granted' });
  t.deepEqual(auth.authorize(request({ cookie: `x${SESSION_COOKIE}=${session}` }), NOW), { result: 'refused' }, 'a cookie that only ends with the name');
  t.deepEqual(auth.authorize(request({}), NOW), { result: 'refused' });
});

test('authorize: any Authorization header is a presented token, counted when wrong, and it outranks a valid cookie', (t) => {
  const auth = new AdminAuth(ADMIN_TOKEN, new LoginThrottle({ now: () => NOW.getTime() }));
  const session = sessionOf(auth, NOW);
  const wrong = ['Bearer nope', `Basic ${ADMIN_TOKEN}`, `Bearer Bearer ${ADMIN_TOKEN}`, ADMIN_TOKEN, 'Bearer '];
  for (const authorization of wrong) {
    t.deepEqual(auth.authorize(request({ authorization, cookie: `${SESSION_COOKIE}=${session}` }), NOW), { result: 'refused' }, authorization);
  }
  t.like(auth.authorize(request({ authorization: `Bearer ${ADMIN_TOKEN}` }), NOW), { result: 'throttled' }, 'the five wrong ones counted');
  t.deepEqual(auth.authorize(request({ cookie: `${SESSION_COOKIE}=${session}` }), NOW), { result: 'granted' }, 'a session is not throttled');
  t.deepEqual(auth.authorize(request({ authorization: `Bearer ${ADMIN_TOKEN}` }, '10.0.0.2'), NOW), { result: 'granted' }, 'other addresses are not');
});

test('authorize: expired or forged cookies are refused without counting against the address', (t) => {
  const auth = new AdminAuth(ADMIN_TOKEN, new LoginThrottle({ now: () => NOW.getTime() }));
  const stale = sessionOf(auth, new Date(NOW.getTime() - SESSION_SECONDS * 1000));
  for (let i = 0; i < 10; i++) {
    t.deepEqual(auth.authorize(request({ cookie: `${SESSION_COOKIE}=${stale}` }), NOW), { result: 'refused' });
    t.deepEqual(auth.authorize(request({ cookie: `${SESSION_COOKIE}=${i}.forged` }), NOW), { result: 'refused' });
  }
  t.deepEqual(auth.authorize(request({ authorization: `Bearer ${ADMIN_TOKEN}` }), NOW), { result: 'granted' });
});
