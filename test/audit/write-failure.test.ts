import test from 'ava';
import { startHarness, type Harness } from '../helpers/gateway-harness.js';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { sqliteJson } from '../helpers/sqlite-cli.js';
import { WriteLock } from '../helpers/write-lock.js';

let upstream: MockUpstream;
const harnesses: Harness[] = [];
const locks: WriteLock[] = [];

test.before(async () => {
  upstream = await startMockUpstream();
});

test.after.always(async () => {
  for (const lock of locks) lock.kill();
  for (const h of harnesses) await h.close();
  await upstream?.close();
});

async function chat(h: Harness, key: string, content: string): Promise<{ status: number; code: string | null; headers: Headers }> {
  const res = await fetch(`${h.baseURL}/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }] }),
  });
  const body = (await res.json()) as { error?: { code?: string } };
  return { status: res.status, code: body.error?.code ?? null, headers: res.headers };
}

function forwardedWith(content: string): number {
  return upstream.received.filter((r) => r.body.toString('utf8').includes(content)).length;
}

test('on_write_failure block: an unwritable audit log refuses with 503 and forwards nothing, then recovers', async (t) => {
  const h = await startHarness(upstream.url, { audit: { on_write_failure: 'block' } });
  harnesses.push(h);
  const { key } = h.createKey('acme');
  t.is((await chat(h, key, 'block-before')).status, 200, 'works before the lock');

  const lock = await WriteLock.take(h.dbPath);
  locks.push(lock);
  try {
    for (const content of ['block-locked-1', 'block-locked-2', 'block-locked-3']) {
      const r = await chat(h, key, content);
      t.is(r.status, 503, content);
      t.is(r.code, 'audit_unavailable');
      t.is(forwardedWith(content), 0, `${content} did not reach the provider`);
    }
    const check = await fetch(`${h.baseURL}/check`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', operation: 'chat.completions' }),
    });
    t.is(check.status, 503, 'a check whose row cannot be written is refused too');
    t.is(((await check.json()) as { error: { code: string } }).error.code, 'audit_unavailable');
  } finally {
    await lock.release();
  }
  // No restart, no reconnect: the very next request works and is recorded.
  const after = await chat(h, key, 'block-after');
  t.is(after.status, 200);
  t.is(forwardedWith('block-after'), 1);
  const logId = after.headers.get('x-governance-log-id');
  t.deepEqual(sqliteJson(h.dbPath, `SELECT allowed FROM usagelog WHERE id = '${logId}'`), [{ allowed: 1 }]);
  t.is(after.headers.get('x-governance-audit'), null);
});

test('on_write_failure allow: the request is forwarded and marked unrecorded', async (t) => {
  const h = await startHarness(upstream.url, { audit: { on_write_failure: 'allow' } });
  harnesses.push(h);
  const { key } = h.createKey('acme');

  const lock = await WriteLock.take(h.dbPath);
  locks.push(lock);
  try {
    const during = await chat(h, key, 'allow-locked');
    t.is(during.status, 200);
    t.is(forwardedWith('allow-locked'), 1, 'forwarded despite the unwritable audit log');
    t.is(during.headers.get('x-governance-audit'), 'unrecorded');
  } finally {
    await lock.release();
  }
  const after = await chat(h, key, 'allow-after');
  t.is(after.status, 200);
  t.is(after.headers.get('x-governance-audit'), null, 'recorded again once the database is writable');
  const logId = after.headers.get('x-governance-log-id');
  t.deepEqual(sqliteJson(h.dbPath, `SELECT allowed FROM usagelog WHERE id = '${logId}'`), [{ allowed: 1 }]);
});
