import test from 'ava';
import { AuditHealth, PROBE_CACHE_MS } from '../../gateway/audit/audit-health.js';
import type { Db } from '../../gateway/store/connection.js';
import { startHarness, type Harness } from '../helpers/gateway-harness.js';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';

let upstream: MockUpstream;
let gw: Harness;

test.before(async () => {
  upstream = await startMockUpstream();
  gw = await startHarness(upstream.url);
});

test.after.always(async () => {
  await gw?.close();
  await upstream?.close();
});

async function ready(): Promise<{ status: number; writable: boolean }> {
  const res = await fetch(`${gw.url}/readyz`);
  const body = (await res.json()) as { audit_writable: boolean };
  return { status: res.status, writable: body.audit_writable };
}

async function until(want: number, withinMs: number): Promise<number> {
  const deadline = Date.now() + withinMs;
  let last = (await ready()).status;
  while (last !== want && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    last = (await ready()).status;
  }
  return last;
}

test('/readyz answers 503 when the connection cannot write although no commit has failed', async (t) => {
  t.deepEqual(await ready(), { status: 200, writable: true });
  // What SQLite does to a file it opened read-only: every write transaction fails with SQLITE_READONLY.
  gw.gateway.db.pragma('query_only = ON');
  try {
    t.false(gw.gateway.context.audit.failing, 'the writer has seen no failure: a flag would still say ready');
    t.is(await until(503, PROBE_CACHE_MS + 1000), 503);
    t.false((await ready()).writable);
  } finally {
    gw.gateway.db.pragma('query_only = OFF');
  }
  t.is(await until(200, PROBE_CACHE_MS + 1000), 200);
});

/** A connection whose write probe counts its calls and fails on demand. */
function fakeDb(state: { fail: boolean; probes: number }): Db {
  const db = {
    inTransaction: false,
    pragma: () => 0,
    exec(sql: string) {
      if (sql.startsWith('BEGIN')) {
        state.probes++;
        if (state.fail) throw new Error('attempt to write a readonly database');
      }
      return db;
    },
  };
  return db as unknown as Db;
}

test('a success is kept for PROBE_CACHE_MS; a failure is probed again at once, so recovery shows without waiting', (t) => {
  const state = { fail: false, probes: 0 };
  let now = 1_000_000;
  const health = new AuditHealth(fakeDb(state), { failing: false, failure: null }, { path: '/nonexistent/audit.db', assertWritable: () => {} }, () => now);
  t.true(health.writable());
  state.fail = true;
  now += PROBE_CACHE_MS - 1;
  t.true(health.writable(), 'cached');
  t.is(state.probes, 1);
  now += 1;
  t.false(health.writable(), 'probed again once the answer is a second old');
  t.is(state.probes, 2);
  state.fail = false;
  t.true(health.writable(), 'a failure is not cached');
  t.is(state.probes, 3);
});

test('a store that fails its file check is unavailable without a probe', (t) => {
  const state = { fail: false, probes: 0 };
  const health = new AuditHealth(fakeDb(state), { failing: false, failure: null }, {
    path: '/nonexistent/audit.db',
    assertWritable: () => {
      throw new Error('read-only');
    },
  });
  t.false(health.writable());
  t.is(state.probes, 0);
});
