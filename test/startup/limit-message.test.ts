import test from 'ava';
import type { AppliedLimit, LimitKind } from '../../gateway/policy/limit-kinds.js';
import { refusalMessage } from '../../gateway/limits/limiter.js';

function limit(kind: LimitKind, n: number): AppliedLimit {
  return { scope: 'customer', id: 'acme', kind, limit: n };
}

test('a full request window says what it holds and when one frees', (t) => {
  t.is(
    refusalMessage({ limit: limit('requests_per_minute', 2), used: 1, held: 2, requested: 1, retryAfterMs: 22_100 }),
    'Rate limit reached for customer acme on requests per minute: 2 requests in the last minute already use the limit of 2; one frees in 23s.',
  );
});

test('never "Used 1" of 2 while refusing: the weighted count is what the caller passes as held', (t) => {
  const m = refusalMessage({ limit: limit('requests_per_minute', 2), used: 1, held: 2, requested: 1, retryAfterMs: 5000 });
  t.false(/\b1 request\b/.test(m), m);
  t.false(m.includes('Limit 2, Used 1'));
});

test('a token window with some room left says how much and what the request needs', (t) => {
  t.is(
    refusalMessage({ limit: limit('tokens_per_minute', 1000), used: 950, held: 951, requested: 100, retryAfterMs: 40_000 }),
    'Rate limit reached for customer acme on tokens per minute: 951 tokens in the last minute leave 49 of the limit of 1000, and this request needs 100; enough frees in 40s.',
  );
});

test('a budget says when it resets, in hours once the wait is long', (t) => {
  t.is(
    refusalMessage({ limit: limit('tokens_per_day', 100), used: 100, held: 100, requested: 30, retryAfterMs: (5 * 60 + 20) * 60_000 }),
    'Token budget exhausted for customer acme on tokens per day: 100 tokens today (UTC) already use the limit of 100; the budget resets in 5h 20m.',
  );
});

test('a request bigger than the whole limit says lower max_tokens', (t) => {
  t.regex(refusalMessage({ limit: limit('tokens_per_minute', 100), used: 0, held: 0, requested: 500, retryAfterMs: 60_000 }), /needs 500 tokens, more than the whole limit of 100, and will never fit; lower max_tokens\.$/);
});
