import test from 'ava';
import { AdminAuth, adminTokenProblem, MIN_ADMIN_TOKEN_LENGTH } from '../../gateway/admin/admin-auth.js';
import { LoginThrottle } from '../../gateway/admin/login-throttle.js';
import { ADMIN_TOKEN } from './support.js';

const MINUTE = 60_000;

/** A throttle of 5 failures a minute on a clock the test moves. */
function clocked(options: { maxFailures?: number; maxAddresses?: number } = {}) {
  const clock = { now: 0 };
  const throttle = new LoginThrottle({ maxFailures: options.maxFailures ?? 5, windowMs: MINUTE, maxAddresses: options.maxAddresses ?? 100, now: () => clock.now });
  return { clock, throttle };
}

test('five failures are heard; the sixth attempt waits until the first failure leaves the window, to the millisecond', (t) => {
  const { clock, throttle } = clocked();
  for (let i = 0; i < 5; i++) {
    t.is(throttle.retryAfterMs('10.0.0.1'), 0, `attempt ${i + 1} is heard`);
    throttle.recordFailure('10.0.0.1');
  }
  t.is(throttle.retryAfterMs('10.0.0.1'), MINUTE);
  clock.now = MINUTE - 1;
  t.is(throttle.retryAfterMs('10.0.0.1'), 1, 'one millisecond before the window frees');
  clock.now = MINUTE;
  t.is(throttle.retryAfterMs('10.0.0.1'), 0, 'a failure exactly one window old no longer counts');
  t.is(throttle.size, 0, 'an address with no failures left in the window is forgotten');
});

test('the window slides: each failure frees one attempt a window after it was made', (t) => {
  const { clock, throttle } = clocked();
  for (const at of [0, 10_000, 20_000, 30_000, 40_000]) {
    clock.now = at;
    throttle.recordFailure('10.0.0.1');
  }
  clock.now = 59_999;
  t.is(throttle.retryAfterMs('10.0.0.1'), 1);
  clock.now = MINUTE;
  t.is(throttle.retryAfterMs('10.0.0.1'), 0, 'the failure at 0 has left; four remain');
  throttle.recordFailure('10.0.0.1');
  t.is(throttle.retryAfterMs('10.0.0.1'), 10_000, 'now the failure at 10 s is the oldest that counts');
  clock.now = 69_999;
  t.is(throttle.retryAfterMs('10.0.0.1'), 1);
  clock.now = 70_000;
  t.is(throttle.retryAfterMs('10.0.0.1'), 0);
});

test('attempts refused while throttled do not extend the wait', (t) => {
  const { clock, throttle } = clocked();
  for (let i = 0; i < 5; i++) throttle.recordFailure('10.0.0.1');
  for (clock.now = 0; clock.now < MINUTE; clock.now += 1000) t.true(throttle.retryAfterMs('10.0.0.1') > 0);
  clock.now = MINUTE;
  t.is(throttle.retryAfterMs('10.0.0.1'), 0);
});

test('only the newest failures are kept: more than the limit never lengthens the wait beyond one window', (t) => {
  const { clock, throttle } = clocked({ maxFailures: 2 });
  for (const at of [0, 1000, 2000]) {
    clock.now = at;
    throttle.recordFailure('10.0.0.1');
  }
  t.is(throttle.retryAfterMs('10.0.0.1'), 1000 + MINUTE - 2000, 'decided by the second-newest failure, at 1 s');
});

test('addresses are counted apart; a success forgets its own address only', (t) => {
  const { throttle } = clocked();
  for (let i = 0; i < 5; i++) {
    throttle.recordFailure('10.0.0.1');
    throttle.recordFailure('2001:db8::1');
  }
  throttle.recordFailure('10.0.0.2');
  t.true(throttle.retryAfterMs('10.0.0.1') > 0);
  t.is(throttle.retryAfterMs('10.0.0.2'), 0, 'one failure of its own');
  t.is(throttle.retryAfterMs('10.0.0.3'), 0, 'never failed');

  throttle.recordSuccess('10.0.0.2');
  t.true(throttle.retryAfterMs('10.0.0.1') > 0, 'another address signing in does not reset this one');
  t.true(throttle.retryAfterMs('2001:db8::1') > 0);
  throttle.recordSuccess('10.0.0.1');
  t.is(throttle.retryAfterMs('10.0.0.1'), 0);
});

test('memory is bounded: past the cap the address whose last failure is oldest is dropped', (t) => {
  const { clock, throttle } = clocked({ maxFailures: 1, maxAddresses: 3 });
  for (const address of ['a', 'b', 'c']) {
    clock.now += 1;
    throttle.recordFailure(address);
  }
  clock.now += 1;
  throttle.recordFailure('a'); // a is now the newest; b the oldest
  clock.now += 1;
  throttle.recordFailure('d');
  t.is(throttle.size, 3);
  t.is(throttle.retryAfterMs('b'), 0, 'b was dropped');
  for (const address of ['a', 'c', 'd']) t.true(throttle.retryAfterMs(address) > 0, address);

  const many = clocked({ maxAddresses: 1000 }).throttle;
  for (let i = 0; i < 50_000; i++) many.recordFailure(`10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`);
  t.is(many.size, 1000);
});

test('AdminAuth compares no token while the address is throttled, and counts every wrong one', (t) => {
  let now = 0;
  const auth = new AdminAuth(ADMIN_TOKEN, new LoginThrottle({ now: () => now }));
  // The comparison is private; it is reached here only to count calls.
  const spied = auth as unknown as { tokenMatches(candidate: string): boolean };
  const compare = spied.tokenMatches.bind(auth);
  let compared = 0;
  spied.tokenMatches = (candidate) => (compared++, compare(candidate));

  for (let i = 0; i < 5; i++) t.deepEqual(auth.checkToken(`wrong-${i}`, '10.0.0.1'), { result: 'refused' });
  t.deepEqual(auth.checkToken(ADMIN_TOKEN, '10.0.0.1'), { result: 'throttled', retryAfterMs: MINUTE });
  t.deepEqual(auth.checkToken('wrong', '10.0.0.1'), { result: 'throttled', retryAfterMs: MINUTE });
  t.is(compared, 5);
  t.deepEqual(auth.checkToken(ADMIN_TOKEN, '10.0.0.2'), { result: 'granted' });
  now = MINUTE;
  t.deepEqual(auth.checkToken(ADMIN_TOKEN, '10.0.0.1'), { result: 'granted' });
  t.is(compared, 7);
});

test(`an admin token needs at least ${MIN_ADMIN_TOKEN_LENGTH} characters; unset or empty means no dashboard`, (t) => {
  t.is(MIN_ADMIN_TOKEN_LENGTH, 32);
  t.is(adminTokenProblem(undefined, 'GOVGATE_ADMIN_TOKEN'), null);
  t.is(adminTokenProblem('', 'GOVGATE_ADMIN_TOKEN'), null);
  t.is(adminTokenProblem('x'.repeat(32), 'GOVGATE_ADMIN_TOKEN'), null);
  t.is(adminTokenProblem('x', 'GOVGATE_ADMIN_TOKEN'), 'GOVGATE_ADMIN_TOKEN must be at least 32 characters long (it has 1); generate one with "openssl rand -hex 32", or unset it to turn the dashboard off');
  t.regex(adminTokenProblem('x'.repeat(31), 'DASHBOARD_TOKEN') ?? '', /^DASHBOARD_TOKEN must be at least 32 characters long \(it has 31\);/);
  t.throws(() => new AdminAuth('x'.repeat(31)), { instanceOf: RangeError, message: /at least 32/ });
  t.throws(() => new AdminAuth(''), { instanceOf: RangeError });
});
