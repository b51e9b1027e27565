import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import test from 'ava';
import { startHarness, type Harness } from '../helpers/gateway-harness.js';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { sqliteJson, sqliteRaw } from '../helpers/sqlite-cli.js';

const execFileAsync = promisify(execFile);

/**
 * The admin's plain `sqlite3 -json audit.db "SQL"`, run asynchronously so the in-process
 * gateway keeps serving (and writing) while the CLI reads. Deliberately no `.timeout`:
 * an admin's query must not need one, which is what WAL mode buys.
 */
/**
 * Runs a query exactly as an admin types it. A reader that opens while the
 * writer resets the WAL can, rarely, be told "database is locked" by SQLite
 * itself (seen once in CI with three CLIs opening at once under load); an admin
 * would press enter again, so the query is run at most twice. Any other error,
 * or a second refusal, fails the test.
 */
async function adminQuery<T = Record<string, unknown>>(dbPath: string, sql: string): Promise<T[]> {
  const run = () => execFileAsync('sqlite3', ['-json', '-bail', dbPath, sql], { maxBuffer: 64 * 1024 * 1024 });
  let result;
  try {
    result = await run();
  } catch (err) {
    if (!String((err as { stderr?: string }).stderr).includes('database is locked')) throw err;
    result = await run();
  }
  return result.stdout.trim() === '' ? [] : (JSON.parse(result.stdout) as T[]);
}

interface ColumnInfo {
  cid: number;
  name: string;
  type: string;
  notnull: number;
  dflt_value: unknown;
  pk: number;
}

interface UsageRow {
  id: string;
  customer_id: string;
  api_key_id: string;
  model: string | null;
  operation: string;
  meta: string;
  risk_score: number;
  allowed: number;
  reason: string;
  created_at: string;
}

const SQLITE_TIME = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}$/;

let upstream: MockUpstream;
let gw: Harness;

/** Log ids of the requests the fixed part of the test sent, by what they were. */
const sent = {
  acmeAllowed: [] as string[],
  acmeBlocked: [] as string[],
  globexAllowed: [] as string[],
  globexBlocked: [] as string[],
};
let acme: { key: string; id: string };
let globex: { key: string; id: string };

async function post(path: string, key: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${gw.baseURL}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

async function logIdOf(res: Response, expectedStatus: number): Promise<string> {
  await res.arrayBuffer();
  if (res.status !== expectedStatus) throw new Error(`expected ${expectedStatus}, got ${res.status}`);
  const id = res.headers.get('x-governance-log-id');
  if (!id) throw new Error('response without x-governance-log-id');
  return id;
}

const pii = { 'x-governance-metadata': JSON.stringify({ contains_pii: true }) };
const msgs = [{ role: 'user', content: 'hi' }];

test.before(async () => {
  upstream = await startMockUpstream();
  gw = await startHarness(upstream.url);
  acme = gw.createKey('acme');
  globex = gw.createKey('globex');

  // Risk scores chosen so that each (model, operation) group has a known average:
  // gpt-4o-mini chat: 0, 30 (long completion) and 90 (PII to openai, blocked) → 40;
  // gpt-4o chat: PII + long completion = min(100, 120) → 100, blocked.
  sent.acmeAllowed.push(await logIdOf(await post('/chat/completions', acme.key, { model: 'gpt-4o-mini', messages: msgs }), 200));
  sent.acmeAllowed.push(await logIdOf(await post('/chat/completions', acme.key, { model: 'gpt-4o-mini', max_tokens: 9000, messages: msgs }), 200));
  sent.acmeBlocked.push(await logIdOf(await post('/chat/completions', acme.key, { model: 'gpt-4o-mini', messages: msgs }, pii), 403));
  sent.acmeBlocked.push(await logIdOf(await post('/chat/completions', acme.key, { model: 'gpt-4o', max_tokens: 9000, messages: msgs }, pii), 403));
  sent.globexAllowed.push(await logIdOf(await post('/embeddings', globex.key, { model: 'text-embedding-3-small', input: 'a' }), 200));
  sent.globexAllowed.push(await logIdOf(await post('/embeddings', globex.key, { model: 'text-embedding-3-small', input: ['b', 'c'] }), 200));
  sent.globexBlocked.push(
    await logIdOf(
      await post('/embeddings', globex.key, { model: 'text-embedding-3-large', input: 'd' }, { 'x-governance-metadata': JSON.stringify({ data_classification: 'secret' }) }),
      403,
    ),
  );
});

test.after.always(async () => {
  await gw?.close();
  await upstream?.close();
});

test('usagelog has the contract columns, in order, with their types and id as primary key, then the hash chain and the provenance', (t) => {
  const cols = sqliteJson<ColumnInfo>(gw.dbPath, 'PRAGMA table_info(usagelog)');
  t.deepEqual(
    cols.map((c) => [c.name, c.type.toUpperCase()]),
    [
      ['id', 'TEXT'],
      ['customer_id', 'TEXT'],
      ['api_key_id', 'TEXT'],
      ['model', 'TEXT'],
      ['operation', 'TEXT'],
      ['meta', 'TEXT'],
      ['risk_score', 'REAL'],
      ['allowed', 'INTEGER'],
      ['reason', 'TEXT'],
      ['created_at', 'TEXT'],
      ['prev_hash', 'TEXT'],
      ['hash', 'TEXT'],
      ['policy_hash', 'TEXT'],
      ['causes', 'TEXT'],
    ],
  );
  t.deepEqual(
    cols.filter((c) => c.pk > 0).map((c) => c.name),
    ['id'],
    'id alone is the primary key',
  );
});

test('indexes exist on customer_id, created_at and api_key_id', (t) => {
  const indexes = sqliteJson<{ name: string }>(gw.dbPath, 'PRAGMA index_list(usagelog)');
  // The leading column is what makes an index usable for `WHERE col = …` / range scans.
  const leading = new Set<string>();
  for (const { name } of indexes) {
    const info = sqliteJson<{ seqno: number; name: string }>(gw.dbPath, `PRAGMA index_info('${name.replaceAll("'", "''")}')`);
    const first = info.find((c) => c.seqno === 0);
    if (first) leading.add(first.name);
  }
  for (const col of ['customer_id', 'created_at', 'api_key_id']) t.true(leading.has(col), `an index leads with ${col}`);

  // And SQLite really uses them for the admin's filters.
  for (const where of ["customer_id = 'acme'", "api_key_id = 'key_x'", "created_at > datetime('now','-1 day')"]) {
    const plan = sqliteRaw(gw.dbPath, `EXPLAIN QUERY PLAN SELECT * FROM usagelog WHERE ${where}`);
    t.is(plan.status, 0, plan.stderr);
    t.regex(plan.stdout, /USING (COVERING )?INDEX/, where);
  }
});

test('the database is in WAL mode', (t) => {
  t.deepEqual(sqliteJson(gw.dbPath, 'PRAGMA journal_mode'), [{ journal_mode: 'wal' }]);
});

test('the contract queries run as written in the sqlite3 CLI while the gateway is serving', async (t) => {
  const traffic = gw.createKey('traffic');
  let stop = false;
  const trafficStatuses: number[] = [];
  // Several clients writing continuously, so the queries meet commits in flight.
  const workers = Array.from({ length: 4 }, async () => {
    while (!stop) {
      const res = await post('/chat/completions', traffic.key, { model: 'gpt-traffic', messages: msgs });
      await res.arrayBuffer();
      trafficStatuses.push(res.status);
    }
  });

  try {
    const trafficRows = async () =>
      (await adminQuery<{ n: number }>(gw.dbPath, "SELECT count(*) AS n FROM usagelog WHERE customer_id = 'traffic'"))[0]!.n;
    while ((await trafficRows()) < 10) await new Promise((r) => setTimeout(r, 20));
    const before = await trafficRows();

    for (let round = 0; round < 5; round++) {
      const [byCustomer, blocked, averages] = await Promise.all([
        adminQuery<UsageRow>(gw.dbPath, "SELECT * FROM usagelog WHERE customer_id = 'acme';"),
        adminQuery<UsageRow>(gw.dbPath, 'SELECT * FROM usagelog WHERE allowed = false;'),
        adminQuery<Record<string, unknown>>(gw.dbPath, 'SELECT model, operation, AVG(risk_score) FROM usagelog GROUP BY model, operation;'),
      ]);

      t.deepEqual(byCustomer.map((r) => r.id).sort(), [...sent.acmeAllowed, ...sent.acmeBlocked].sort(), 'acme rows, exactly');
      for (const r of byCustomer) {
        t.is(r.customer_id, 'acme');
        t.is(r.api_key_id, acme.id);
      }

      t.deepEqual(blocked.map((r) => r.id).sort(), [...sent.acmeBlocked, ...sent.globexBlocked].sort(), 'blocked rows, exactly');
      for (const r of blocked) t.is(r.allowed, 0);

      const avg = (model: string, operation: string) =>
        averages.find((g) => g.model === model && g.operation === operation)?.['AVG(risk_score)'];
      t.is(avg('gpt-4o-mini', 'chat.completions'), 40);
      t.is(avg('gpt-4o', 'chat.completions'), 100);
      t.is(avg('text-embedding-3-small', 'embeddings'), 0);
      t.is(avg('gpt-traffic', 'chat.completions'), 0);
    }

    t.true((await trafficRows()) > before, 'the gateway kept committing rows while the queries ran');
  } finally {
    stop = true;
    await Promise.all(workers);
  }
  t.true(trafficStatuses.length > 0 && trafficStatuses.every((s) => s === 200), `traffic statuses: ${[...new Set(trafficStatuses)].join(',')}`);
});

test("created_at is UTC text in SQLite's own format, comparable with datetime()", (t) => {
  // One statement, so rows the other tests add meanwhile are either all in it or not at all.
  const rows = sqliteJson<{ id: string; created_at: string; age_s: number; fresh: number; future: number }>(
    gw.dbPath,
    `SELECT id, created_at, (julianday('now') - julianday(created_at)) * 86400 AS age_s,
            created_at > datetime('now','-1 day') AS fresh, created_at > datetime('now','+1 minute') AS future FROM usagelog`,
  );
  t.true(rows.length >= 7);
  for (const r of rows) {
    t.regex(r.created_at, SQLITE_TIME);
    // UTC: a local-time stamp would be hours off from SQLite's 'now' on a non-UTC machine.
    t.true(Math.abs(r.age_s) < 300, `${r.created_at} is recent in UTC`);
  }
  t.deepEqual(rows.filter((r) => r.fresh !== 1).map((r) => r.created_at), [], "every fresh row matches created_at > datetime('now','-1 day')");
  // Guards against a format that sorts after SQLite's (e.g. ISO with 'T'), which would also match the line above.
  t.deepEqual(rows.filter((r) => r.future !== 0).map((r) => r.created_at), []);
});

const META_MODEL = 'gpt-meta-check';

test('meta holds the governance metadata and derived facts, and nothing from the content', async (t) => {
  const secretWords = {
    system: `system-text-${randomUUID()}`,
    user: `user-text-${randomUUID()}`,
    tool: `tool_name_${randomUUID().replaceAll('-', '')}`,
    toolDescription: `tool-description-${randomUUID()}`,
  };
  const metadata = { contains_pii: false, data_classification: 'internal', team: 'search', priority: 3 };
  const body = JSON.stringify({
    model: META_MODEL,
    max_tokens: 50,
    messages: [
      { role: 'system', content: secretWords.system },
      { role: 'user', content: secretWords.user },
    ],
    tools: [
      {
        type: 'function',
        function: { name: secretWords.tool, description: secretWords.toolDescription, parameters: { type: 'object', properties: {} } },
      },
    ],
  });
  // Its own customer and model, so the contract-query test's rows for acme and its averages per model stay exact.
  const { key } = gw.createKey('meta-check');
  const logId = await logIdOf(await post('/chat/completions', key, body, { 'x-governance-metadata': JSON.stringify(metadata) }), 200);
  const received = upstream.received.find((r) => r.body.toString('utf8') === body);
  t.truthy(received, 'the provider got the exact body (so the content was there to be leaked)');

  const [row] = sqliteJson<UsageRow>(gw.dbPath, `SELECT * FROM usagelog WHERE id = '${logId}'`);
  t.truthy(row);
  const meta = JSON.parse(row!.meta) as Record<string, unknown>;
  t.deepEqual(meta.metadata, metadata);
  const fact = (name: string): unknown => meta[name] ?? (meta.request as Record<string, unknown> | undefined)?.[name];
  t.is(fact('stream'), false);
  t.is(fact('max_tokens'), 50);
  t.is(fact('messages'), 2);
  t.is(fact('tools'), 1);
  t.is(fact('body_bytes'), Buffer.byteLength(body));

  const whole = JSON.stringify(row);
  for (const word of Object.values(secretWords)) t.false(whole.includes(word), `the row does not contain ${word}`);

  const streamed = await post('/chat/completions', key, { model: META_MODEL, stream: true, messages: [{ role: 'user', content: secretWords.user }] });
  const streamedId = await logIdOf(streamed, 200);
  const [streamedRow] = sqliteJson<UsageRow>(gw.dbPath, `SELECT meta FROM usagelog WHERE id = '${streamedId}'`);
  const streamedMeta = JSON.parse(streamedRow!.meta) as Record<string, unknown>;
  t.is(streamedMeta.stream ?? (streamedMeta.request as Record<string, unknown> | undefined)?.stream, true);
  t.is(streamedMeta.messages ?? (streamedMeta.request as Record<string, unknown> | undefined)?.messages, 1);
  t.false(streamedRow!.meta.includes(secretWords.user));
});
