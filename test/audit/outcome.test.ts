import test from 'ava';
import OpenAI from 'openai';
import { startHarness, type Harness } from '../helpers/gateway-harness.js';
import { newTag, startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { sqliteJson, sqliteRaw } from '../helpers/sqlite-cli.js';

interface OutcomeRow {
  log_id: string;
  status: number | null;
  duration_ms: number;
  upstream_ms: number | null;
  prompt_tokens: number | null;
  completion_tokens: number | null;
  total_tokens: number | null;
  error: string | null;
  created_at: string;
}

const OUTCOME_COLUMNS = ['log_id', 'status', 'duration_ms', 'upstream_ms', 'prompt_tokens', 'completion_tokens', 'total_tokens', 'error', 'created_at'];

let upstream: MockUpstream;
let gw: Harness;
let client: OpenAI;
let key: string;

test.before(async () => {
  upstream = await startMockUpstream();
  gw = await startHarness(upstream.url);
  key = gw.createKey('acme').key;
  client = gw.sdk(key);
  // Any UPDATE of a decision row, by anyone, leaves a trace here for the check once every test ran.
  const setup = sqliteRaw(
    gw.dbPath,
    `CREATE TABLE test_usagelog_updates (id TEXT);
     CREATE TRIGGER test_usagelog_no_update AFTER UPDATE ON usagelog BEGIN INSERT INTO test_usagelog_updates VALUES (old.id); END;`,
  );
  if (setup.status !== 0) throw new Error(setup.stderr);
});

test.after.always(async () => {
  await gw?.close();
  await upstream?.close();
});

function outcomeOf(logId: string): OutcomeRow | undefined {
  return sqliteJson<OutcomeRow>(gw.dbPath, `SELECT * FROM usagelog_outcome WHERE log_id = '${logId}'`)[0];
}

/** The outcome is appended once the response is over, so poll for it (bounded). */
async function waitForOutcome(logId: string, timeoutMs = 3000): Promise<OutcomeRow> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const row = outcomeOf(logId);
    if (row) return row;
    if (Date.now() > deadline) throw new Error(`no usagelog_outcome row for ${logId} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function usagelogSnapshot(): string {
  return JSON.stringify(sqliteJson(gw.dbPath, 'SELECT * FROM usagelog ORDER BY id'));
}

test('usagelog_outcome has the documented columns', (t) => {
  const cols = sqliteJson<{ name: string }>(gw.dbPath, 'PRAGMA table_info(usagelog_outcome)').map((c) => c.name);
  for (const col of OUTCOME_COLUMNS) t.true(cols.includes(col), `usagelog_outcome.${col}`);
});

test('non-streamed chat: status 200 and the provider usage', async (t) => {
  const { data, response } = await client.chat.completions
    .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] })
    .withResponse();
  t.is(data.usage?.total_tokens, 18);
  const logId = response.headers.get('x-governance-log-id')!;
  t.truthy(logId);
  const row = await waitForOutcome(logId);
  t.is(row.status, 200);
  t.is(row.prompt_tokens, 11);
  t.is(row.completion_tokens, 7);
  t.is(row.total_tokens, 18);
  t.is(row.error, null);
  t.true(typeof row.duration_ms === 'number' && row.duration_ms >= 0);
  t.true(typeof row.upstream_ms === 'number' && row.upstream_ms >= 0);
  t.true(row.duration_ms >= row.upstream_ms!, 'the whole request includes its upstream part');
  t.regex(row.created_at, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}$/);
});

// Serial, like the other tests that set the upstream's stream or answer: every request it gets would have them.
test.serial('streamed chat with include_usage: tokens from the last chunk', async (t) => {
  upstream.setStream(5, 0);
  t.teardown(() => upstream.reset());
  const { data: stream, response } = await client.chat.completions
    .create({ model: 'gpt-4o-mini', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'hello' }] })
    .withResponse();
  const logId = response.headers.get('x-governance-log-id')!;
  let usage: OpenAI.CompletionUsage | null | undefined;
  for await (const chunk of stream) if (chunk.usage) usage = chunk.usage;
  t.deepEqual(usage && [usage.prompt_tokens, usage.completion_tokens, usage.total_tokens], [11, 5, 16], 'the mock sent the usage chunk');

  const row = await waitForOutcome(logId);
  t.is(row.status, 200);
  t.is(row.prompt_tokens, 11);
  t.is(row.completion_tokens, 5);
  t.is(row.total_tokens, 16);
  t.is(row.error, null);
});

test('embeddings: prompt and total tokens', async (t) => {
  const { response } = await client.embeddings.create({ model: 'text-embedding-3-small', input: ['a', 'b'] }).withResponse();
  const row = await waitForOutcome(response.headers.get('x-governance-log-id')!);
  t.is(row.status, 200);
  t.is(row.prompt_tokens, 4);
  t.is(row.total_tokens, 4);
  t.is(row.completion_tokens, null);
});

test.serial('a provider error is passed to the client and recorded with its status', async (t) => {
  const providerError = { error: { message: 'The server had an error while processing your request.', type: 'server_error', param: null, code: null } };
  upstream.setStatus('/v1/chat/completions', 500, providerError);
  t.teardown(() => upstream.reset());
  const tag = newTag();
  const res = await fetch(`${gw.baseURL}/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...tag },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] }),
  });
  t.is(res.status, 500);
  t.deepEqual(await res.json(), providerError, "the provider's body reaches the client unchanged");
  t.is(upstream.tagged(tag).length, 1);
  const logId = res.headers.get('x-governance-log-id')!;
  t.truthy(logId);
  const row = await waitForOutcome(logId);
  t.is(row.status, 500);
  t.is(sqliteJson<{ allowed: number }>(gw.dbPath, `SELECT allowed FROM usagelog WHERE id = '${logId}'`)[0]?.allowed, 1, 'the decision was to forward');
});

test('a blocked request has a decision row (allowed 0) and no outcome row', async (t) => {
  const tag = newTag();
  const err = await t.throwsAsync(
    client.chat.completions.create(
      { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] },
      { headers: { 'X-Governance-Metadata': JSON.stringify({ data_classification: 'restricted' }), ...tag } },
    ),
    { instanceOf: OpenAI.PermissionDeniedError },
  );
  const logId = err?.headers?.get('x-governance-log-id');
  t.truthy(logId);
  t.deepEqual(sqliteJson(gw.dbPath, `SELECT allowed FROM usagelog WHERE id = '${logId}'`), [{ allowed: 0 }]);

  // A later request's outcome being there shows the writer has flushed past the blocked one.
  const { response } = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'y' }] }, { headers: tag }).withResponse();
  await waitForOutcome(response.headers.get('x-governance-log-id')!);
  await new Promise((r) => setTimeout(r, 200));
  t.is(outcomeOf(logId!), undefined);
  t.is(upstream.tagged(tag).length, 1, 'only the allowed request was forwarded');
});

test.serial('writing the outcome neither updates nor adds decision rows', async (t) => {
  // A slow stream keeps the request open, so the decision row can be seen before its outcome exists.
  upstream.setStream(4, 150);
  t.teardown(() => upstream.reset());
  const { data: stream, response } = await client.chat.completions
    .create({ model: 'gpt-4o-mini', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'hello' }] })
    .withResponse();
  const logId = response.headers.get('x-governance-log-id')!;
  const before = usagelogSnapshot();
  const countBefore = sqliteJson<{ n: number }>(gw.dbPath, 'SELECT count(*) AS n FROM usagelog')[0]!.n;
  t.true(before.includes(logId), 'the decision row exists while the response streams');
  t.is(outcomeOf(logId), undefined, 'and its outcome does not exist yet');

  for await (const chunk of stream) void chunk;
  const outcome = await waitForOutcome(logId);
  t.is(outcome.total_tokens, 15);

  t.is(sqliteJson<{ n: number }>(gw.dbPath, 'SELECT count(*) AS n FROM usagelog')[0]!.n, countBefore);
  t.is(usagelogSnapshot(), before, 'every decision row is byte-for-byte unchanged');
});

// Once every test has written what it writes: a row updated by any of them is found.
test.after('no decision row was ever updated during this file', (t) => {
  t.deepEqual(sqliteJson(gw.dbPath, 'SELECT id FROM test_usagelog_updates'), []);
  t.true(sqliteJson<{ n: number }>(gw.dbPath, 'SELECT count(*) AS n FROM usagelog_outcome')[0]!.n >= 6, 'outcomes were written meanwhile');
});
