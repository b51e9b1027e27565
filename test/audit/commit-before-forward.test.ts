import { randomUUID } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import Database from 'better-sqlite3';
import { startServe, type ServeProcess } from '../helpers/cli.js';
import { makeGatewayDir, FIXTURE_POLICY, UPSTREAM_SECRET, writeGatewayYaml } from '../helpers/gateway-harness.js';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { seedKeys } from '../helpers/seed-keys.js';
import { sqliteJson } from '../helpers/sqlite-cli.js';

/**
 * The gateway runs as its own process: in-process, the mock and the gateway would share one
 * event loop, and a gateway that forwarded first and committed a tick later would still look
 * correct, because the mock could not run before that tick.
 */
let upstream: MockUpstream;
let serve: ServeProcess;
let dir: string;
let dbPath: string;
let reader: Database.Database | undefined;
let keys: { acme: string; blocked: string };
let rowsByRequestId: Database.Statement<[string], { n: number }> | undefined;

/** What the audit log held, per request id, at the moment the provider received that request. */
const rowsSeenOnArrival = new Map<string, number>();

test.before(async () => {
  upstream = await startMockUpstream({
    onRequest({ headers }) {
      const id = headers['x-request-id'];
      if (typeof id !== 'string') return;
      if (!rowsByRequestId) throw new Error('reader not open yet');
      rowsSeenOnArrival.set(id, rowsByRequestId.get(id)!.n);
    },
  });
  dir = makeGatewayDir();
  writeGatewayYaml(dir, upstream.url);
  writeFileSync(path.join(dir, 'config/policy.yaml'), FIXTURE_POLICY);
  dbPath = path.join(dir, 'data/audit.db');
  const [acme, blocked] = seedKeys(dir, ['acme', 'acme-blocked']);
  keys = { acme: acme!.key, blocked: blocked!.key };
  serve = await startServe({ cwd: dir, env: { OPENAI_API_KEY: UPSTREAM_SECRET, SENTRY_DSN: '' } });
  reader = new Database(dbPath, { readonly: true, fileMustExist: true });
  rowsByRequestId = reader.prepare<[string], { n: number }>("SELECT count(*) AS n FROM usagelog WHERE json_extract(meta, '$.request_id') = ?");
});

test.after.always(async () => {
  reader?.close();
  await serve?.stop();
  await upstream?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('each forwarded request finds its own committed audit row when it reaches the provider', async (t) => {
  const key = keys.acme;

  // One prefix for this test's ids, so the rows counted below are its own and not the blocked test's.
  const prefix = `cbf-${randomUUID().slice(0, 8)}`;
  const ids = Array.from({ length: 50 }, (_, i) => `${prefix}-${i}`);
  // All at once, so the gateway groups many rows into one commit.
  const results = await Promise.all(
    ids.map(async (id, i) => {
      const res = await fetch(`${serve.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'x-request-id': id },
        body: JSON.stringify({ model: 'gpt-4o-mini', stream: i % 2 === 1, messages: [{ role: 'user', content: `hello ${i}` }] }),
      });
      await res.arrayBuffer();
      return { id, status: res.status, echoedId: res.headers.get('x-request-id') };
    }),
  );

  t.is(upstream.hookErrors.length, 0, String(upstream.hookErrors[0]));
  for (const r of results) {
    t.is(r.status, 200, r.id);
    t.is(r.echoedId, r.id, 'the client request id is kept');
    const forwarded = upstream.received.filter((got) => got.headers['x-request-id'] === r.id);
    t.is(forwarded.length, 1, `${r.id} reached the provider once, with its request id`);
    t.is(rowsSeenOnArrival.get(r.id), 1, `${r.id} had its audit row committed before it reached the provider`);
  }

  const perRequest = sqliteJson<{ rid: string; n: number }>(
    dbPath,
    `SELECT json_extract(meta, '$.request_id') AS rid, count(*) AS n FROM usagelog WHERE rid LIKE '${prefix}-%' GROUP BY rid`,
  );
  t.is(perRequest.length, ids.length, 'every request has a row');
  t.true(perRequest.every((r) => r.n === 1), 'and exactly one');
  t.deepEqual(perRequest.map((r) => r.rid).sort(), [...ids].sort());
});

test('a blocked request also leaves exactly one row and reaches no provider', async (t) => {
  const key = keys.blocked;
  const id = `cbf-blocked-${randomUUID()}`;
  const res = await fetch(`${serve.url}/v1/chat/completions`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${key}`,
      'content-type': 'application/json',
      'x-request-id': id,
      'x-governance-metadata': JSON.stringify({ data_classification: 'restricted' }),
    },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }),
  });
  await res.arrayBuffer();
  t.is(res.status, 403);
  t.false(rowsSeenOnArrival.has(id));
  const rows = sqliteJson<{ allowed: number }>(dbPath, `SELECT allowed FROM usagelog WHERE json_extract(meta, '$.request_id') = '${id}'`);
  t.deepEqual(rows, [{ allowed: 0 }]);
});
