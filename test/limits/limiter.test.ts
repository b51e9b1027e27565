import test from 'ava';
import { Limiter, type Admission, type TokenEstimate } from '../../gateway/limits/limiter.js';
import type { AppliedLimit, LimitKind } from '../../gateway/policy/limit-kinds.js';
import { MemoryStore } from '../../gateway/limits/memory-store.js';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** A Limiter over a MemoryStore, both on a clock the test moves; settlement failures are collected, not thrown. */
function clocked(start: number, defaultTokenReservation = 100) {
  const clock = { now: start };
  const failures: unknown[] = [];
  const limiter = new Limiter(new MemoryStore(() => clock.now), defaultTokenReservation, (err) => failures.push(err), () => clock.now);
  return { clock, limiter, failures };
}

function limit(kind: LimitKind, value: number, id = 'acme'): AppliedLimit {
  return { kind, scope: 'customer', id, limit: value };
}

/** A request whose estimate is exactly `tokens`: no body bytes beyond 4 and the rest as max_tokens. */
function costing(tokens: number): TokenEstimate {
  return { bodyBytes: 4, maxTokens: tokens - 1 };
}

const NO_TOKENS: TokenEstimate = { bodyBytes: 0, maxTokens: null };

function kindOf(a: Admission): Admission['kind'] {
  return a.kind;
}

function refusal(t: { fail(message: string): void }, a: Admission) {
  if (a.kind !== 'refused') {
    t.fail(`expected a refusal, got ${a.kind}`);
    throw new Error('not refused');
  }
  return a.refusal;
}

function reservation(t: { fail(message: string): void }, a: Admission) {
  if (a.kind !== 'admitted') {
    t.fail(`expected an admission, got ${a.kind}`);
    throw new Error('not admitted');
  }
  return a.reservation;
}

/** The first instant of a UTC minute, far from any day or month edge. */
const MINUTE_START = Date.UTC(2026, 5, 10, 12, 0, 0);

test('no limits: unlimited, and nothing is counted', async (t) => {
  const { limiter } = clocked(MINUTE_START);
  t.deepEqual(await limiter.admit([], costing(10)), { kind: 'unlimited' });
  await limiter.close();
});

test('estimate: a quarter token per body byte, rounded up, plus max_tokens or the default; no body reserves nothing', (t) => {
  const { limiter } = clocked(MINUTE_START, 256);
  t.is(limiter.estimate({ bodyBytes: 0, maxTokens: 1000 }), 0);
  t.is(limiter.estimate({ bodyBytes: 1, maxTokens: 0 }), 1);
  t.is(limiter.estimate({ bodyBytes: 400, maxTokens: 50 }), 150);
  t.is(limiter.estimate({ bodyBytes: 401, maxTokens: 50.5 }), 152);
  t.is(limiter.estimate({ bodyBytes: 400, maxTokens: null }), 356);
  t.is(limiter.estimate(costing(77)), 77);
});

test('requests_per_minute: the limit fills within the minute and the last millisecond of it is still the same bucket', async (t) => {
  const { clock, limiter } = clocked(MINUTE_START);
  const limits = [limit('requests_per_minute', 3)];
  for (let i = 0; i < 3; i++) t.is(kindOf(await limiter.admit(limits, NO_TOKENS)), 'admitted', `request ${i + 1}`);
  const refused = refusal(t, await limiter.admit(limits, NO_TOKENS));
  t.like(refused, { limit: limits[0], used: 3, requested: 1 });
  clock.now = MINUTE_START + MINUTE - 1;
  t.is(kindOf(await limiter.admit(limits, NO_TOKENS)), 'refused', 'still inside the minute the requests were made in');
  // At the next minute the previous bucket counts whole and slides out linearly.
  clock.now = MINUTE_START + MINUTE;
  t.is(kindOf(await limiter.admit(limits, NO_TOKENS)), 'refused', 'the sliding minute still holds all three');
});

test('requests_per_minute slides: Retry-After is the first instant a request fits, to the millisecond', async (t) => {
  const { clock, limiter } = clocked(MINUTE_START);
  const limits = [limit('requests_per_minute', 3)];
  for (let i = 0; i < 3; i++) await limiter.admit(limits, NO_TOKENS);
  const { retryAfterMs } = refusal(t, await limiter.admit(limits, NO_TOKENS));
  // Three at the start of a minute: one fits once a third of them has slid out, 20 s into the next minute.
  t.is(retryAfterMs, MINUTE + 20_000);
  clock.now = MINUTE_START + retryAfterMs - 1;
  t.is(kindOf(await limiter.admit(limits, NO_TOKENS)), 'refused', 'one millisecond early');
  clock.now = MINUTE_START + retryAfterMs;
  t.is(kindOf(await limiter.admit(limits, NO_TOKENS)), 'admitted', 'on time');
});

test('requests_per_minute: requests made late in a minute weigh on the next one by the share still inside the sliding minute', async (t) => {
  const { clock, limiter } = clocked(MINUTE_START + 45_000);
  const limits = [limit('requests_per_minute', 4)];
  for (let i = 0; i < 4; i++) t.is(kindOf(await limiter.admit(limits, NO_TOKENS)), 'admitted');
  // 30 s into the next minute half of the previous one still counts: 2 of 4, so two more fit and a third does not.
  clock.now = MINUTE_START + MINUTE + 30_000;
  t.is(kindOf(await limiter.admit(limits, NO_TOKENS)), 'admitted');
  t.is(kindOf(await limiter.admit(limits, NO_TOKENS)), 'admitted');
  const refused = refusal(t, await limiter.admit(limits, NO_TOKENS));
  t.is(refused.used, 4, 'two of the previous minute plus two of this one');
  t.true(refused.retryAfterMs > 0);
  // Two minutes on, nothing of the first minute is left.
  clock.now = MINUTE_START + 3 * MINUTE;
  for (let i = 0; i < 4; i++) t.is(kindOf(await limiter.admit(limits, NO_TOKENS)), 'admitted', `request ${i + 1} two minutes on`);
});

test('requests and tokens are reserved atomically: a refusal by one limit takes nothing from the others', async (t) => {
  const { limiter } = clocked(MINUTE_START);
  const limits = [limit('requests_per_minute', 10), limit('tokens_per_minute', 100)];
  t.is(kindOf(await limiter.admit(limits, costing(60))), 'admitted');
  const refused = refusal(t, await limiter.admit(limits, costing(60)));
  t.is(refused.limit.kind, 'tokens_per_minute');
  // Had the refused request taken a request from the first limit, only 8 would fit now.
  for (let i = 0; i < 9; i++) t.is(kindOf(await limiter.admit(limits, costing(1))), 'admitted', `request ${i + 2}`);
  t.is(refusal(t, await limiter.admit(limits, costing(1))).limit.kind, 'requests_per_minute');
});

test('tokens_per_day is a UTC calendar day: refused until midnight, then whole again with nothing carried over', async (t) => {
  const lastMs = Date.UTC(2026, 0, 31, 23, 59, 59, 999);
  const { clock, limiter } = clocked(lastMs - 10 * HOUR);
  const limits = [limit('tokens_per_day', 1000)];
  t.is(kindOf(await limiter.admit(limits, costing(600))), 'admitted');
  clock.now = lastMs;
  const refused = refusal(t, await limiter.admit(limits, costing(600)));
  t.like(refused, { used: 600, requested: 600, retryAfterMs: 1 });
  t.is(kindOf(await limiter.admit(limits, costing(400))), 'admitted', 'what is left of the day still fits');
  clock.now = lastMs + 1;
  t.is(kindOf(await limiter.admit(limits, costing(1000))), 'admitted', 'the new day starts empty');
  t.is(refusal(t, await limiter.admit(limits, costing(1))).retryAfterMs, DAY, 'and is full until its own end');
});

test('tokens_per_month is a UTC calendar month of its own length', async (t) => {
  const cases = [
    { at: Date.UTC(2027, 1, 28, 12), end: Date.UTC(2027, 2, 1) },
    { at: Date.UTC(2028, 1, 28, 12), end: Date.UTC(2028, 2, 1), note: 'a leap February' },
    { at: Date.UTC(2026, 11, 31, 23, 59, 59, 999), end: Date.UTC(2027, 0, 1), note: 'the turn of the year' },
  ];
  for (const { at, end, note } of cases) {
    const { clock, limiter } = clocked(at);
    const limits = [limit('tokens_per_month', 500)];
    t.is(kindOf(await limiter.admit(limits, costing(500))), 'admitted');
    t.is(refusal(t, await limiter.admit(limits, costing(1))).retryAfterMs, end - at, note ?? new Date(at).toISOString());
    clock.now = end - 1;
    t.is(kindOf(await limiter.admit(limits, costing(1))), 'refused');
    clock.now = end;
    t.is(kindOf(await limiter.admit(limits, costing(500))), 'admitted', `a new month at ${new Date(end).toISOString()}`);
  }
});

test('a request alone above the limit is refused until the window ends, however empty it is', async (t) => {
  const { limiter } = clocked(MINUTE_START + 15_000);
  const refused = refusal(t, await limiter.admit([limit('tokens_per_minute', 100)], costing(101)));
  t.like(refused, { used: 0, requested: 101, retryAfterMs: 45_000 });
});

test('settle down: tokens reserved but not used go back at once', async (t) => {
  const { limiter, failures } = clocked(MINUTE_START);
  const limits = [limit('tokens_per_minute', 1000)];
  const held = reservation(t, await limiter.admit(limits, costing(800)));
  t.is(held.tokens, 800);
  t.is(kindOf(await limiter.admit(limits, costing(300))), 'refused', '800 reserved leaves 200');
  limiter.settle(held, 100);
  t.is(kindOf(await limiter.admit(limits, costing(900))), 'admitted', '100 used leaves 900');
  t.is(kindOf(await limiter.admit(limits, costing(1))), 'refused');
  t.deepEqual(failures, []);
});

test('settle up: usage beyond the reservation is counted, and 0 releases a request that used nothing', async (t) => {
  const { limiter } = clocked(MINUTE_START);
  const limits = [limit('tokens_per_minute', 1000)];
  const held = reservation(t, await limiter.admit(limits, costing(200)));
  limiter.settle(held, 900);
  t.is(refusal(t, await limiter.admit(limits, costing(101))).used, 900);
  const more = reservation(t, await limiter.admit(limits, costing(100)));
  limiter.settle(more, 0);
  t.is(kindOf(await limiter.admit(limits, costing(100))), 'admitted', 'the released 100 fit again');
});

test('settle with unknown usage keeps the reservation as the best guess', async (t) => {
  const { limiter } = clocked(MINUTE_START);
  const limits = [limit('tokens_per_minute', 1000)];
  limiter.settle(reservation(t, await limiter.admit(limits, costing(600))), null);
  t.is(refusal(t, await limiter.admit(limits, costing(401))).used, 600);
});

test('settle touches token counters only: the request stays counted', async (t) => {
  const { limiter } = clocked(MINUTE_START);
  const limits = [limit('requests_per_minute', 1), limit('tokens_per_minute', 1000)];
  const held = reservation(t, await limiter.admit(limits, costing(500)));
  t.is(held.tokenKeys.length, 1);
  limiter.settle(held, 0);
  t.is(refusal(t, await limiter.admit(limits, costing(1))).limit.kind, 'requests_per_minute');
});

test('a request-only reservation holds no tokens, and settling it changes nothing', async (t) => {
  const { limiter } = clocked(MINUTE_START);
  const limits = [limit('requests_per_minute', 2)];
  const held = reservation(t, await limiter.admit(limits, costing(500)));
  t.deepEqual(held, { tokens: 0, tokenKeys: [] });
  limiter.settle(held, 10_000);
  t.is(kindOf(await limiter.admit(limits, costing(500))), 'admitted');
});

test('settling after the window has ended leaves the new window alone', async (t) => {
  const { clock, limiter } = clocked(Date.UTC(2026, 0, 31, 23, 0));
  const limits = [limit('tokens_per_day', 1000)];
  const held = reservation(t, await limiter.admit(limits, costing(100)));
  clock.now = Date.UTC(2026, 1, 1, 0, 30);
  limiter.settle(held, 5000);
  t.is(kindOf(await limiter.admit(limits, costing(1000))), 'admitted', "yesterday's usage is not charged to today");
});

test('charge counts a request against every request limit without ever refusing, and leaves token limits alone', async (t) => {
  const { limiter, failures } = clocked(MINUTE_START);
  const limits = [limit('requests_per_minute', 2), limit('tokens_per_minute', 100)];
  for (let i = 0; i < 5; i++) limiter.charge(limits);
  const refused = refusal(t, await limiter.admit(limits, costing(1)));
  t.like(refused, { used: 5 });
  t.is(refused.limit.kind, 'requests_per_minute');
  t.is(kindOf(await limiter.admit([limit('tokens_per_minute', 100)], costing(100))), 'admitted', 'no tokens were charged');
  t.deepEqual(failures, []);
});

test('charge counts in the current minute: it weighs on the next minute as admitted requests do', async (t) => {
  const { clock, limiter } = clocked(MINUTE_START);
  const limits = [limit('requests_per_minute', 2)];
  limiter.charge(limits);
  limiter.charge(limits);
  clock.now = MINUTE_START + MINUTE + 30_000;
  t.is(kindOf(await limiter.admit(limits, NO_TOKENS)), 'admitted', 'half of two is one');
  t.is(kindOf(await limiter.admit(limits, NO_TOKENS)), 'refused');
  clock.now = MINUTE_START + 2 * MINUTE;
  t.is(kindOf(await limiter.admit(limits, NO_TOKENS)), 'admitted');
});

test('charge and settle report store failures to the callback instead of throwing', async (t) => {
  const failures: unknown[] = [];
  const broken = {
    reserve: () => Promise.reject(new Error('reserve down')),
    adjust: () => Promise.reject(new Error('adjust down')),
    close: () => Promise.resolve(),
  };
  const limiter = new Limiter(broken, 100, (err) => failures.push(err), () => MINUTE_START);
  limiter.charge([limit('requests_per_minute', 1)]);
  limiter.settle({ tokens: 10, tokenKeys: ['k'] }, 20);
  await new Promise((resolve) => setImmediate(resolve));
  t.deepEqual(failures.map((e) => (e as Error).message), ['reserve down', 'adjust down']);
});
